"""Small Dask workers: peak memory of every process, pauses, restarts, and the outcome.

Run from the repository root::

    python benchmarks/bench_memory.py                  # 500 x 256^2, band 16: 512 and 300 MiB
    python benchmarks/bench_memory.py --limits 448MiB  # one limit only
    python benchmarks/bench_memory.py --chunks 32      # the store in 32-frame chunks

The stack is written once to a Zarr store in 16-frame chunks (temporary folder, deleted
at the end). For each memory limit a fresh ``LocalCluster`` of two single-threaded
worker processes (daskreg's own, :func:`daskreg.parallel.cluster.local_cluster`)
registers it through :func:`daskreg.register` with ``band=16``. Printed per limit: the
outcome (the seconds taken and the shift error against the truth, or the error and how
long it took to come), the peak resident memory of every process (the client, which
also hosts the scheduler, and each worker) sampled every 20 ms, the workers' pause
lines in their logs, and how many worker processes were started beyond the first two
(a nanny restarts a worker it killed for passing its limit).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dask import PeakMemory  # noqa: E402  (the same per-process sampler)
from bench_dask_data import synthetic_zarr  # noqa: E402

import daskreg  # noqa: E402
from daskreg.errors import DaskregError  # noqa: E402


def run(path: Path, truth: np.ndarray, limit: str, band: int) -> None:
    from distributed import Client

    from daskreg.parallel.cluster import local_cluster

    stack = daskreg.open_stack(path)
    print(f"# 2 workers x {limit}, chunks {stack.data.chunks[0][0]} frames in the store")
    with local_cluster(2, limit) as cluster, Client(cluster) as client:
        with PeakMemory() as peak:
            start = time.perf_counter()
            try:
                result = daskreg.register(stack, band=band, progress=False, client=client)
                outcome = None
            except DaskregError as err:
                outcome = err
            elapsed = time.perf_counter() - start
        logs = client.get_worker_logs()
        pauses = sum("Pausing worker" in line for lines in logs.values() for _, line in lines)
    if outcome is None:
        err = result.shifts.values - truth
        used = np.isfinite(err).all(axis=1)
        err = err[used] - err[used].mean(axis=0)
        print(
            f"  registered in {elapsed:.1f} s; shift error rms "
            f"{np.sqrt((err**2).sum(axis=1).mean()):.3f} px, max {np.abs(err).max():.3f} px"
        )
    else:
        print(f"  {type(outcome).__name__} after {elapsed:.1f} s: {outcome}")
    workers = [(pid, rss) for pid, (kind, rss) in peak.peaks.items() if kind == "worker"]
    for kind in ("client+scheduler", "worker"):
        for pid, (k, rss) in sorted(peak.peaks.items()):
            if k == kind:
                print(f"  peak RSS {kind:17s} pid {pid:7d} {rss / 2**20:7.0f} MiB")
    print(
        f"  pause lines in the workers' logs: {pauses}; worker processes started beyond "
        f"the first two (restarts): {max(len(workers) - 2, 0)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--band", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=16, help="frames per chunk of the store")
    parser.add_argument("--limits", nargs="+", default=["512MiB", "300MiB"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        path = Path(tmp) / "stack.zarr"
        truth = synthetic_zarr(path, args.frames, (args.size, args.size), chunk=args.chunks)
        print(f"# {args.frames} x {args.size}^2 float32, band {args.band}")
        for limit in args.limits:
            run(path, truth, limit, args.band)


if __name__ == "__main__":
    main()
