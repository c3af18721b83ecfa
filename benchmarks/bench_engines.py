"""The Dask engine against the in-process engine on the same whole stack (issue 19).

Run from the repository root::

    python benchmarks/bench_engines.py 400 512 all    # frames, frame size, band or "all"
    python benchmarks/bench_engines.py 2000 256 32

Writes a synthetic stack to a temporary Zarr store (``bench_dask_data.synthetic_zarr``),
registers it whole with ``engine="numpy"`` (in this process, every core) and on a
``LocalCluster`` of 2 single-threaded workers (the store read by the workers), both after
a warm-up run, and prints the two wall times, their ratio and the largest difference of
the shifts. Unlike ``bench_dask.py``'s ratio, nothing is extrapolated from a few frames.
"""

from __future__ import annotations

import argparse
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
        values = stack.values
        warm = values[: 2 * (band or 10) + 2]
        daskreg.register(warm, engine="numpy", band=band, progress=False)
        start = time.perf_counter()
        here = daskreg.register(values, engine="numpy", band=band, progress=False)
        numpy_seconds = time.perf_counter() - start
        with (
            cluster.local_cluster(args.workers, None) as local,
            Client(local) as client,
        ):
            daskreg.register(warm, client=client, band=band, progress=False)
            start = time.perf_counter()
            there = daskreg.register(stack, client=client, band=band, progress=False)
            dask_seconds = time.perf_counter() - start
    difference = np.nanmax(np.abs(here.shifts.values - there.shifts.values))
    print(
        f"{args.frames} x {args.size}^2, band {args.band}: numpy {numpy_seconds:.1f} s, "
        f"dask ({args.workers} workers) {dask_seconds:.1f} s, ratio "
        f"{dask_seconds / numpy_seconds:.2f}, largest shift difference {difference:.1e} px"
    )


if __name__ == "__main__":
    main()
