"""Pair-stage and end-to-end speed of daskreg against a port of the reference loop.

Run from the repository root (takes about a minute; the reference loop dominates)::

    python benchmarks/bench_pairs.py              # 40 x 512^2, gf, and the cost table
    python benchmarks/bench_pairs.py --frames 20 --no-table

Everything runs in this one process, one after the other, so the ratios hold even on a
noisy machine. Prints:

1. the reference port (full complex FFT + curve_fit per candidate, per pair) on all
   N(N-1)/2 pairs; daskreg's pair stage (band-limited and full-size paths); the ratio;
2. end to end: the reference loop plus its averaging vs ``daskreg.register`` (numpy
   engine: spectra, pairs, outliers, correction, shifts, average), and the same on
   daskreg's own ``LocalCluster`` (``engine="dask"``; the cluster's start reported apart);
3. the registered average (:func:`daskreg.kernels.shift.registered_sum`, as the numpy
   engine runs it) against the pair stage's forward transforms of the same frames;
4. a table of daskreg's cost per pair by frame size and mask cutoff ``n``, next to
   this machine's time for one real inverse FFT of the same size on every core (the
   full-size path's floor).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.fft
from dask.system import CPU_COUNT

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_port import reference_pair_loop  # noqa: E402

import daskreg  # noqa: E402
from daskreg.kernels.shift import registered_sum  # noqa: E402
from daskreg.method.pairs import measure_pairs, pair_indices, pair_setup  # noqa: E402
from daskreg.params import RegistrationParams  # noqa: E402
from daskreg.synthetic import lattice_series  # noqa: E402


def _time(func, *args, repeat: int = 1, **kwargs):
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = func(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, out


def pair_stage(stack: np.ndarray, params: RegistrationParams, band_limited: bool | None):
    """Spectra + all pairs with the numpy kernels on every core, as the numpy engine
    runs them (spectra with multi-threaded transforms, pairs in one thread per core);
    returns the PeakResult."""
    setup = pair_setup(params, stack.shape[1:], band_limited=band_limited)
    with scipy.fft.set_workers(-1):
        spectra = setup.spectra(stack)
    i, j = pair_indices(len(stack))
    return measure_pairs(spectra, spectra, i, j, setup, threads=CPU_COUNT)


def reference_end_to_end(stack: np.ndarray) -> np.ndarray:
    """Reference loop, row-mean shifts and Fourier-shift average (its |.| included)."""
    matrix = reference_pair_loop(stack)
    shifts = matrix.mean(axis=1)
    ny, nx = stack.shape[1:]
    ry, rx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    total = np.zeros((ny, nx))
    for frame, (sy, sx) in zip(stack, shifts, strict=True):
        ramp = -np.exp(-2j * np.pi * (sy * ry / ny + sx * rx / nx))
        spec = np.fft.fftshift(np.fft.fft2(frame))
        total += np.abs(np.fft.ifft2(np.fft.ifftshift(spec * ramp)))
    return total / len(stack)


def comparison(n_frames: int, size: int) -> None:
    series = lattice_series(n_frames, (size, size), dose=20, seed=1)
    stack = series.stack.astype(np.float64)
    # The reference's mask and fit window (the pair kernels timed since issue 3).
    params = RegistrationParams.reference(find_maxima="gf")
    n_pairs = n_frames * (n_frames - 1) // 2
    print(f"# {n_frames} frames of {size}^2, {n_pairs} pairs, mask bandpass n=4, find_maxima gf")

    t_ref, ref_matrix = _time(reference_pair_loop, stack)
    t_band, band = _time(pair_stage, stack, params, None, repeat=3)
    t_full, full = _time(pair_stage, stack, params, False)
    i, j = pair_indices(n_frames)
    agree = np.abs(band.shifts - full.shifts).max()
    true = series.shifts[j] - series.shifts[i]
    print("pair stage (spectra + every pair)")
    print(f"  reference port          {t_ref:8.3f} s  {t_ref / n_pairs * 1e3:7.2f} ms/pair")
    print(f"  daskreg full-size path  {t_full:8.3f} s  {t_full / n_pairs * 1e3:7.3f} ms/pair"
          f"  ratio {t_ref / t_full:6.1f}x")
    print(f"  daskreg band-limited    {t_band:8.3f} s  {t_band / n_pairs * 1e3:7.3f} ms/pair"
          f"  ratio {t_ref / t_band:6.1f}x")
    print(f"  band vs full max |diff| {agree:.2e} px; median |error| vs truth: daskreg "
          f"{np.median(np.abs(band.shifts - true)):.3f} px, reference "
          f"{np.median(np.abs(ref_matrix[i, j] - true)):.3f} px")

    average_vs_transforms(series.stack, series.shifts, params)

    t_ref_all, _ = _time(reference_end_to_end, stack)
    same = {"mask": "bandpass", "n": 4, "sigma_guess": 2.0, "window_radius": 6}
    t_same, result = _time(daskreg.register, stack, repeat=3, **same)
    t_dr, chosen = _time(daskreg.register, stack, repeat=3)
    print("end to end (registration + average, in memory, no cluster)")
    print(f"  reference port          {t_ref_all:8.3f} s")
    print(f"  daskreg.register, the reference's mask and fit window {t_same:8.3f} s  ratio "
          f"{t_ref_all / t_same:6.1f}x")
    print(f"  daskreg.register, defaults (chosen from the data) {t_dr:8.3f} s  ratio "
          f"{t_ref_all / t_dr:6.1f}x  ({chosen.params.mask} n={chosen.params.n:.3g})")
    print(f"  daskreg stages: {result.dataset.attrs['timings']}")
    t_start, t_cluster = _on_local_cluster(stack)
    print(f"  daskreg.register on a LocalCluster (engine='dask') {t_cluster:8.3f} s  ratio "
          f"{t_ref_all / t_cluster:6.1f}x  (starting the cluster: {t_start:.1f} s, excluded)")


def average_vs_transforms(
    stack: np.ndarray, shifts: np.ndarray, params: RegistrationParams, repeat: int = 7
) -> None:
    """The registered average of every frame against the pair stage's forward transforms
    of the same frames (windowed, band-limited where the mask allows), both on every
    core as the numpy engine runs them; best of ``repeat``, the two interleaved."""
    setup = pair_setup(params, stack.shape[1:])
    t_spectra, t_average = np.inf, np.inf
    with scipy.fft.set_workers(-1):
        for _ in range(repeat):
            t_spectra = min(t_spectra, _time(setup.spectra, stack)[0])
            t_average = min(t_average, _time(registered_sum, stack, shifts)[0])
    path = "band-limited" if setup.band is not None else "full-size"
    print("registered average vs the frames' forward transforms")
    print(f"  {'pair-stage spectra (' + path + ')':<34}{t_spectra * 1e3:8.1f} ms")
    print(f"  {'registered average':<34}{t_average * 1e3:8.1f} ms  ratio "
          f"{t_average / t_spectra:5.2f}")


def _on_local_cluster(stack: np.ndarray) -> tuple[float, float]:
    """Start of daskreg's own LocalCluster, and the best of three registrations on it
    after a first one (in which each worker loads the compiled kernels)."""
    from distributed import Client

    from daskreg.parallel.cluster import local_cluster

    start = time.perf_counter()
    with local_cluster() as cluster, Client(cluster):
        t_start = time.perf_counter() - start
        daskreg.register(stack, engine="dask", progress=False)
        t_cluster, _ = _time(daskreg.register, stack, engine="dask", progress=False, repeat=3)
    return t_start, t_cluster


def cost_table(sizes: list[int], cutoffs: list[float], n_frames: int = 24) -> None:
    print(f"# daskreg pair cost (gf, bandpass), {n_frames} frames -> "
          f"{n_frames * (n_frames - 1) // 2} pairs per cell")
    print("| frame | n | path | us/pair | one irfft2 (us) | pair / irfft2 |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        stack = lattice_series(n_frames, (size, size), dose=20, seed=2).stack
        spectrum = scipy.fft.rfft2(stack[0])
        t_fft, _ = _time(scipy.fft.irfft2, spectrum, s=(size, size), workers=-1, repeat=20)
        for n in cutoffs:
            params = RegistrationParams.reference(n=n)
            setup = pair_setup(params, (size, size))
            path = "band" if setup.band is not None else "full"
            n_pairs = n_frames * (n_frames - 1) // 2
            t_pairs, _ = _time(pair_stage, stack, params, None, repeat=2)
            per_pair = t_pairs / n_pairs * 1e6
            print(f"| {size}^2 | {n:g} | {path} | {per_pair:.0f} | {t_fft * 1e6:.0f} | "
                  f"{per_pair / (t_fft * 1e6):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-table", action="store_true", help="skip the cost table")
    args = parser.parse_args()
    comparison(args.frames, args.size)
    if not args.no_table:
        cost_table([256, 512, 1024], [2, 4, 8])


if __name__ == "__main__":
    main()
