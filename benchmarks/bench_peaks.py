"""Accuracy and cost of the peak estimators (``find_maxima`` pixel / gf / upsampled).

Run from the repository root (the full grid takes about 20 minutes on one core)::

    python benchmarks/bench_peaks.py                  # full grid, table on stdout
    python benchmarks/bench_peaks.py --quick          # one seed, 256^2 only

For each synthetic series (:func:`daskreg.synthetic.lattice_series`: lattices
perovskite / hexagonal / anisotropic; spacing 12, 24 px with columns of ``spacing / 8``,
30 and 40 px with broad columns of ``spacing / 3``; doses 2, 10, 50 counts at a column
peak with read noise 1; 256^2 and 512^2; seeds 0-2; 12 frames), every pair is measured
with each estimator on the default (band-limited, bandpass n=4) path and the default
analysis gives the final shifts. Per row: the RMS of the pair errors that are not unit-cell
hops (|error| <= 1 px), the shrinkage slope ``sum(e r) / sum(r^2)`` of those errors
against the true pair shift ``r`` (x 1e3; negative: pulled towards zero), the share of
hopped pairs, the RMS of the final shifts (frames off by more than 1 px left out and
counted, with the frames the analysis dropped, as bad frames), and the pair stage's time
per pair.
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np

from daskreg.method.analyse import analyse_shift_matrix
from daskreg.method.measurements import assemble_pairs
from daskreg.method.pairs import measure_pairs, pair_indices, pair_setup
from daskreg.params import RegistrationParams
from daskreg.synthetic import lattice_series

METHODS = ("pixel", "gf", "upsampled")
N_FRAMES = 12
# (spacing, column_sigma); None is the generator's spacing / 8.
GEOMETRIES = ((12, None), (24, None), (30, 10.0), (40, 40 / 3))


def measure(series, method: str) -> dict[str, float]:
    """Pair and final errors of one series with one estimator."""
    shape = series.stack.shape[1:]
    params = RegistrationParams(find_maxima=method)
    setup = pair_setup(params, shape)
    spectra = setup.spectra(series.stack)
    i, j = pair_indices(len(series.stack))
    start = time.perf_counter()
    found = measure_pairs(spectra, spectra, i, j, setup)
    per_pair = (time.perf_counter() - start) / len(i)
    truth = series.shifts[j] - series.shifts[i]
    error = found.shifts - truth
    good = np.hypot(*error.T) <= 1.0
    pairs = assemble_pairs(len(series.stack), i, j, found, setup.energy(spectra))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = analyse_shift_matrix(pairs, params)
    final = analysis.shifts[analysis.used] - series.shifts[analysis.used]
    final -= np.median(final, axis=0)
    kept = np.hypot(*final.T) <= 1.0
    final = final[kept] - final[kept].mean(axis=0) if kept.sum() > 1 else np.full((1, 2), np.nan)
    return {
        "pair_rms": float(np.sqrt((error[good] ** 2).sum(axis=1).mean())),
        "slope": float((error[good] * truth[good]).sum() / (truth[good] ** 2).sum()),
        "hops": float(1 - good.mean()),
        "final_rms": float(np.sqrt((final**2).sum(axis=1).mean())),
        "bad_frames": int((~kept).sum() + (~analysis.used).sum()),
        "ms_per_pair": 1e3 * per_pair,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 256^2 only")
    args = parser.parse_args()
    sizes, seeds = ((256,), (0,)) if args.quick else ((256, 512), (0, 1, 2))
    lattices = ("perovskite", "hexagonal", "anisotropic")
    print(
        "spacing sigma dose size lattice | "
        + " | ".join(f"{m}: pair_rms slope*1e3 hops% final_rms bad ms/pair" for m in METHODS)
    )
    for (spacing, sigma), dose, size, lattice in itertools.product(
        GEOMETRIES, (2, 10, 50), sizes, lattices
    ):
        rows = {m: [] for m in METHODS}
        for seed in seeds:
            series = lattice_series(
                N_FRAMES, (size, size), lattice=lattice, spacing=spacing,
                column_sigma=sigma, dose=dose, read_noise=1.0, seed=seed,
            )
            for method in METHODS:
                rows[method].append(measure(series, method))
        cells = []
        for method in METHODS:
            with warnings.catch_warnings():  # every seed hopped: nan, not a warning
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = {k: np.nanmean([r[k] for r in rows[method]]) for k in rows[method][0]}
            cells.append(
                f"{mean['pair_rms']:.3f} {1e3 * mean['slope']:+.1f} {100 * mean['hops']:.0f} "
                f"{mean['final_rms']:.3f} {sum(r['bad_frames'] for r in rows[method])} "
                f"{mean['ms_per_pair']:.2f}"
            )
        sigma_shown = spacing / 8 if sigma is None else sigma
        print(f"{spacing} {sigma_shown:.1f} {dose} {size} {lattice[:5]} | " + " | ".join(cells),
              flush=True)


if __name__ == "__main__":
    main()
