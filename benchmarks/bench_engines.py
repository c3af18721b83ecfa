"""The Dask engine against the in-process engine on the same whole stack (issue 19).

Run from the repository root::

    python benchmarks/bench_engines.py 400 512 all    # frames, frame size, band or "all"
    python benchmarks/bench_engines.py 2000 256 32

Writes a synthetic stack to a temporary Zarr store (``bench_dask_data.synthetic_zarr``),
registers it whole with ``engine="numpy"`` (in this process, every core) and on a
``LocalCluster`` of 2 single-threaded workers (the store read by the workers), both after
a warm-up run, and prints the two wall times, their ratio and the largest difference of
the shifts. Unlike ``bench_dask.py``'s ratio, nothing is extrapolated from a few frames.
Then each engine's stage timings (the result's ``timings``) and the CPU seconds of its
processes (this one; and the workers'): on a shared machine those move less than the
wall times.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dask_data import synthetic_zarr  # noqa: E402

import daskreg  # noqa: E402
from daskreg.errors import RegistrationWarning  # noqa: E402
from daskreg.parallel import cluster  # noqa: E402


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=int)
    parser.add_argument("size", type=int, help="frames are size x size")
    parser.add_argument("band", help='pairs with |i - j| <= band, or "all"')
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    band = None if args.band == "all" else int(args.band)
    warnings.simplefilter("ignore", RegistrationWarning)
    from distributed import Client

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stack.zarr"
        synthetic_zarr(path, args.frames, (args.size, args.size), chunk=32)
        stack = daskreg.open_stack(path)
        # The numpy engine registers the values in memory: reading the store (which
        # the Dask workers do inside their timing) is timed apart.
        start = time.perf_counter()
        values = stack.values
        read_seconds = time.perf_counter() - start
        warm = values[: 2 * (band or 10) + 2]
        daskreg.register(warm, engine="numpy", band=band, progress=False)
        start, cpu = time.perf_counter(), time.process_time()
        here = daskreg.register(values, engine="numpy", band=band, progress=False)
        numpy_seconds = time.perf_counter() - start
        numpy_cpu = time.process_time() - cpu
        with (
            cluster.local_cluster(args.workers, None) as local,
            Client(local) as client,
        ):
            daskreg.register(warm, client=client, band=band, progress=False)
            start, cpu = time.perf_counter(), _cpu(client)
            there = daskreg.register(stack, client=client, band=band, progress=False)
            dask_seconds = time.perf_counter() - start
            dask_cpu = [b - a for a, b in zip(cpu, _cpu(client), strict=True)]
    difference = np.nanmax(np.abs(here.shifts.values - there.shifts.values))
    print(
        f"{args.frames} x {args.size}^2, band {args.band}: numpy {numpy_seconds:.1f} s, "
        f"dask ({args.workers} workers) {dask_seconds:.1f} s, ratio "
        f"{dask_seconds / numpy_seconds:.2f}, largest shift difference {difference:.1e} px"
    )
    for name, result in (("numpy", here), ("dask", there)):
        stages = json.loads(result.dataset.attrs["timings"])
        print(f"  {name} stages: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    print(f"  numpy's read of the store, outside its time: {read_seconds:.1f} s")
    print(
        f"  CPU s: numpy {numpy_cpu:.1f}; dask {sum(dask_cpu):.1f} (client and scheduler "
        f"{dask_cpu[0]:.1f}, workers {sum(dask_cpu[1:]):.1f})"
    )


def _process_cpu() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def _cpu(client) -> list[float]:
    """CPU seconds so far of this process (client and scheduler), then of each worker."""
    workers = client.run(_process_cpu)
    return [time.process_time(), *(workers[k] for k in sorted(workers))]


if __name__ == "__main__":
    main()
