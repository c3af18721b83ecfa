"""Accuracy on low-dose series: daskreg's defaults, its best hand setting, and peers.

Run from the repository root (about 15 minutes on a busy 2-core machine; the
all-pairs peer dominates, about 10 s per 256^2 series and minutes at 1024^2)::

    python benchmarks/bench_accuracy.py                 # the table of benchmarks/README.md
    python benchmarks/bench_accuracy.py --fast          # the test's fast subset only

Scenarios, metrics and the hand-tuned grid come from ``tests/accuracy.py``, the module
``tests/test_accuracy.py`` asserts with, so the table and the tests measure the same
thing. Prints one Markdown row per scenario and method, pooled over seeds:

- ``RMS``: 2-D RMS error (px) against the truth, mean removed, over the frames the
  method used (truly bad frames excluded);
- ``hops``: frames off by more than a quarter of the shortest lattice translation /
  frames scored;
- ``dropped``: good frames the method left out;
- ``s/run``: seconds per series (the grid's best: one measurement plus one analysis).

Methods: daskreg with no parameters; the best of the hand grid (fewest hops, then
fewest dropped, then lowest RMS); scikit-image's ``phase_cross_correlation`` on every
pair (``upsample_factor=20``, Hann-windowed frames, plain cross-correlation: its phase
normalisation misplaces even noise-free lattice pairs by a pixel) and a least-squares
solve of the pair graph; pystackreg (translation) against the previous frame and
against the mean. A peer not installed is skipped with a note. Peers have no hook for
injected hops, so that scenario shows daskreg only.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.accuracy import (  # noqa: E402
    FAST_SCENARIOS,
    FAST_SEEDS,
    FAST_SWEEP,
    Run,
    Scenario,
    best_hand_setting,
    calibration,
    outcomes_for,
    pooled,
    score,
)

# The all-pairs peer recomputes three full transforms per pair: minutes per series
# above 512^2 on this machine, so larger frames leave it out (a note says so).
SKIMAGE_MAX = 512 * 512
# Pair shifts to 1/20 px: the rounding (0.014 px RMS per axis and pair, averaged over a
# frame's 19 pairs) is far below the peer's own RMS in every row (>= 0.2 px).
UPSAMPLE = 20


def _larger() -> tuple[tuple[Scenario, tuple[int, ...]], ...]:
    hexagonal, perovskite = FAST_SWEEP[0], FAST_SWEEP[1]
    return (
        (replace(hexagonal, name=f"{hexagonal.name} 384x512", shape=(384, 512)), (0, 1)),
        (replace(perovskite, name=f"{perovskite.name} 384x512", shape=(384, 512)), (0, 1)),
        (replace(perovskite, name=f"{perovskite.name} 1024^2", shape=(1024, 1024)), (0,)),
    )


def skimage_all_pairs(stack: np.ndarray) -> np.ndarray:
    """Every pair by ``phase_cross_correlation``, then least squares over the pair graph.

    ``phase_cross_correlation(reference=i, moving=j)`` returns the shift that registers
    ``j`` onto ``i``, ``s_i - s_j``; the solve finds ``s`` with ``s_j - s_i = r_ij`` and
    zero mean (for the complete graph that is the row mean of the matrix).
    """
    from skimage.filters import window
    from skimage.registration import phase_cross_correlation

    frames = stack - stack.mean(axis=(1, 2), keepdims=True)
    frames = frames * window("hann", stack.shape[1:])
    n = len(frames)
    rows, rhs = [], []
    for i in range(n):
        for j in range(i + 1, n):
            found, _, _ = phase_cross_correlation(
                frames[i], frames[j], upsample_factor=UPSAMPLE, normalization=None
            )
            row = np.zeros(n)
            row[i], row[j] = -1.0, 1.0
            rows.append(row)
            rhs.append(-found)
    rows.append(np.ones(n))
    rhs.append(np.zeros(2))
    shifts, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return shifts


def pystackreg(stack: np.ndarray, reference: str) -> np.ndarray:
    """pystackreg's translation registration; ``tmat[:2, 2]`` is ``(dx, dy)`` with the
    same sign as the specimen's displacement (checked on a noise-free series)."""
    from pystackreg import StackReg

    with warnings.catch_warnings():
        # It guesses the time axis from the variance and warns that a lattice's frames
        # vary less along x than along the frames; axis 0 is right.
        warnings.simplefilter("ignore", UserWarning)
        tmats = StackReg(StackReg.TRANSLATION).register_stack(stack, axis=0, reference=reference)
    return tmats[:, [1, 0], 2]


def _peer_outcomes(scenario, seeds, solve):
    outcomes = []
    for seed in seeds:
        series = scenario.series(seed)
        start = time.perf_counter()
        shifts = solve(series.stack.astype(np.float64))
        run = Run(
            shifts=np.asarray(shifts, dtype=np.float64),
            sigma=np.full(shifts.shape, np.nan),
            bad=frozenset(),
            seconds=time.perf_counter() - start,
        )
        outcomes.append(score(run, series, scenario.hop_length))
    return outcomes


def _peers() -> tuple[dict, list[str]]:
    peers, notes = {}, []
    try:
        import skimage  # noqa: F401
    except ImportError:
        notes.append("scikit-image not installed: its all-pairs peer is skipped")
    else:
        peers["skimage all pairs + lstsq"] = skimage_all_pairs
    try:
        import pystackreg as _  # noqa: F401
    except ImportError:
        notes.append("pystackreg not installed: its peer is skipped")
    else:
        peers["pystackreg previous"] = lambda stack: pystackreg(stack, "previous")
        peers["pystackreg mean"] = lambda stack: pystackreg(stack, "mean")
    return peers, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="the test's fast subset only")
    args = parser.parse_args()

    cases = [(s, FAST_SEEDS) for s in FAST_SCENARIOS]
    if not args.fast:
        cases += list(_larger())
    peers, notes = _peers()
    notes.append(f"skimage all pairs not run above {SKIMAGE_MAX} pixels per frame (too slow)")
    for note in notes:
        print("note:", note)
    print("| scenario (20 frames, seeds) | method | RMS (px) | hops / frames | dropped | s/run |")
    print("|---|---|---|---|---|---|")
    for scenario, seeds in cases:
        name = f"{scenario.name} ({len(seeds)})"
        defaults = outcomes_for(scenario, seeds)
        coverage, ratio = calibration(defaults)
        rows = [
            (f"daskreg defaults (3σ cover {coverage:.0%}, σ ratio {ratio:.2f})", pooled(defaults))
        ]
        label, best = best_hand_setting(scenario, seeds)
        rows.append((f"daskreg best hand: {label}", best))
        if not scenario.inject:
            rows += [
                (peer, pooled(_peer_outcomes(scenario, seeds, solve)))
                for peer, solve in peers.items()
                if not (peer.startswith("skimage") and np.prod(scenario.shape) > SKIMAGE_MAX)
            ]
        for method, p in rows:
            print(
                f"| {name} | {method} | {p.rms:.3f} | {p.hops}/{p.frames} | {p.dropped} | "
                f"{p.seconds:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
