"""What a new user's first run costs: ``daskreg demo`` with numba's cache empty, then warm.

Each run is a fresh ``python -m daskreg.cli demo`` subprocess (interpreter start, imports,
the 16 x 256^2 demo series, registration, outputs and PDF report), with
``NUMBA_CACHE_DIR`` pointing to a new empty folder for the cold run and to the same
folder, now filled, for the warm one. The cold minus warm difference is the compile a
new install pays once. CPU seconds (user + system of the subprocess and its children)
are given beside wall time: on a shared machine they move less.

Usage (the daskreg imported is the one on ``PYTHONPATH``)::

    python benchmarks/bench_first_run.py [--repeat 2] [demo flags, e.g. --engine numpy]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_demo(cache: Path, out: Path, extra: list[str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one ``daskreg demo``, and its stderr."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    before, start = _children_cpu(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "daskreg.cli", "demo", "--out", str(out), "--overwrite", *extra],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, _children_cpu() - before, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="cold/warm pairs to run")
    args, extra = parser.parse_known_args()  # the others go to daskreg demo
    print(f"{'run':<6}{'wall s':>9}{'cpu s':>9}  note")
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            for label in ("cold", "warm"):
                wall, cpu, err = run_demo(Path(cache), Path(out) / "demo", extra)
                note = "compile note printed" if "compiling kernels" in err else ""
                print(f"{label:<6}{wall:>9.1f}{cpu:>9.1f}  {note}", flush=True)


if __name__ == "__main__":
    main()
