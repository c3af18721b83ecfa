"""daskreg's defaults over issue 17's sweep: every lattice and dose of one frame size.

Run from the repository root (256^2: about a minute; 384x512: about 3; 1024^2: about
20 on this 2-core machine)::

    python benchmarks/bench_sweep.py 256x256
    python benchmarks/bench_sweep.py 384x512 --seeds 5

Scenarios and metrics are ``tests/accuracy.py``'s ``SLOW`` sweep (the slow part of
``tests/test_accuracy.py``), with no parameters given to ``daskreg.register``. One line
per scenario, pooled over the seeds: frames off by a unit cell (``hops``), RMS error
(px), good frames left out (``dropped``), truly bad frames not flagged (``missed``),
the fraction of per-axis errors within 3 sigma (``cover``) and median sigma over the
true error (``sigma ratio``). The hand-tuned grid the tests compare with is not run
here (``bench_accuracy.py`` runs it for the fast scenarios).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.accuracy import SLOW, SLOW_SEEDS, calibration, outcomes_for, pooled  # noqa: E402


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", help='frame size as in the scenario names, e.g. "256x256"')
    parser.add_argument("--seeds", type=int, default=len(SLOW_SEEDS))
    args = parser.parse_args()
    names = [name for name in SLOW if name.endswith(" " + args.size)]
    if not names:
        sizes = sorted({name.rsplit(" ", 1)[1] for name in SLOW})
        parser.error(f"no scenario of size {args.size!r}; sizes: {', '.join(sizes)}")
    seeds = SLOW_SEEDS[: args.seeds]
    print("| scenario | hops / frames | RMS (px) | dropped | missed | cover | sigma ratio |")
    print("|---|---|---|---|---|---|---|")
    warnings.simplefilter("ignore")
    for name in names:
        outcomes = outcomes_for(SLOW[name], seeds)
        p = pooled(outcomes)
        cover, ratio = calibration(outcomes)
        print(
            f"| {name} ({len(seeds)}) | {p.hops}/{p.frames} | {p.rms:.3f} | {p.dropped} | "
            f"{p.missed} | {cover:.0%} | {ratio:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
