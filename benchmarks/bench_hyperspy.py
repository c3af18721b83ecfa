"""HyperSpy's ``align2D`` against daskreg's HyperSpy route on the same lattice series.

Run from the repository root (about 7 minutes on the shared 2-core machine, most of it
HyperSpy's)::

    python benchmarks/bench_hyperspy.py              # the table of benchmarks/README.md
    python benchmarks/bench_hyperspy.py --seeds 1    # one seed per scenario

Each series (``daskreg.synthetic.lattice_series`` with 1 count of read noise, as
``tests/accuracy.py``) is a ``hyperspy.signals.Signal2D`` and goes through:

- ``hs stat``: ``s.align2D(reference="stat")``, HyperSpy's all-pairs mode
  (``estimate_shift2D``; Sobel, median filter and Hann window on, its defaults), whole
  pixels (``sub_pixel_factor=1``, its default). In HyperSpy 2.5.0 it measures only the
  first frame's pairs (see :func:`_integer_check` and benchmarks/README.md);
- ``hs stat sub10``: the same with ``sub_pixel_factor=10``;
- ``hs current sub10``: the default reference (every frame against the first) at 1/10 px;
- ``daskreg``: ``daskreg.hyperspy.align2D(s)`` with no other parameter.

Scored with ``tests.accuracy.score`` (the accuracy table's metrics): RMS of the 2-D
error against the truth (mean removed, frames used), frames off by more than a quarter
of the shortest lattice translation ("hops", about the median error), good frames left
out, and seconds per series (estimate and in-place alignment together; daskreg's
kernels compiled beforehand).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import daskreg.hyperspy as dh  # noqa: E402
from tests.accuracy import Run, Scenario, pooled, score  # noqa: E402

SCENARIOS = (
    Scenario("perovskite a14 dose2", lattice="perovskite", spacing=14.0, dose=2.0, n_frames=24),
    Scenario("perovskite a14 dose10", lattice="perovskite", spacing=14.0, dose=10.0, n_frames=24),
    Scenario("hexagonal a12 dose5", lattice="hexagonal", spacing=12.0, dose=5.0, n_frames=24),
    Scenario("perovskite a14 dose50", lattice="perovskite", spacing=14.0, dose=50.0, n_frames=24),
)


def _hyperspy(reference: str, sub_pixel_factor: int):
    def run(signal) -> np.ndarray:
        return signal.align2D(
            reference=reference, sub_pixel_factor=sub_pixel_factor, show_progressbar=False
        )

    return run


def _daskreg(signal) -> np.ndarray:
    return dh.align2D(signal, progress=False)


METHODS = {
    "hs stat": _hyperspy("stat", 1),
    "hs stat sub10": _hyperspy("stat", 10),
    "hs current sub10": _hyperspy("current", 10),
    "daskreg": _daskreg,
}


def _timed(method, stack: np.ndarray) -> Run:
    import hyperspy.api as hs

    signal = hs.signals.Signal2D(stack.copy())
    messages: list[str] = []
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            shifts = np.asarray(method(signal), dtype=np.float64)
        except ValueError as exc:
            # HyperSpy refuses to crop when a shift exceeds the frame: no result.
            messages.append(f"{type(exc).__name__}: {exc}")
            shifts = np.full((len(stack), 2), np.nan)
    seconds = time.perf_counter() - start
    messages += [str(w.message) for w in caught]
    bad = frozenset(np.flatnonzero(~np.isfinite(shifts).all(axis=1)).tolist())
    return Run(shifts, np.full_like(shifts, np.nan), bad, seconds, tuple(messages))


def _integer_check() -> str:
    """HyperSpy's ``stat`` on noise-free integer shifts (the pair shifts are exact)."""
    import hyperspy.api as hs

    from daskreg.synthetic import lattice_series

    base = lattice_series(1, (128, 128), dose=1e4, seed=0).stack[0]
    truth = np.array([[0, 0], [3, -5], [-2, 7], [6, 1], [1, -3]])
    frames = np.stack([np.roll(base, tuple(s), axis=(0, 1)) for s in truth])
    found = {
        ref: hs.signals.Signal2D(frames).estimate_shift2D(
            reference=ref, sub_pixel_factor=10, show_progressbar=False
        )
        for ref in ("current", "stat")
    }
    ours = dh.align2D(hs.signals.Signal2D(frames), progress=False)
    return (
        f"integer rolls {truth.tolist()}: hs current {np.round(found['current'], 2).tolist()}, "
        f"hs stat {np.round(np.asarray(found['stat'], float), 2).tolist()}, "
        f"daskreg {np.round(ours, 2).tolist()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scenario")
    args = parser.parse_args()
    seeds = tuple(range(args.seeds))
    # Compile daskreg's kernels outside the timings.
    _timed(_daskreg, SCENARIOS[0].series(99).stack)
    print(_integer_check())
    print(
        "| scenario (24 frames 256², seeds) | method | RMS (px) | hops / frames | dropped | s/run |"
    )
    print("|---|---|---|---|---|---|")
    for scenario in SCENARIOS:
        for name, method in METHODS.items():
            outcomes = []
            for seed in seeds:
                series = scenario.series(seed)
                outcomes.append(score(_timed(method, series.stack), series, scenario.hop_length))
            p = pooled(outcomes)
            print(
                f"| {scenario.name} ({len(seeds)}) | {name} | {p.rms:.3f} | "
                f"{p.hops}/{p.frames} | {p.dropped} | {p.seconds:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
