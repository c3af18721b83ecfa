"""Register a stack with Dask running inside one MPI job (dask-mpi).

MPI rank 0 runs the scheduler, rank 1 runs this script (the client), every other rank
is a worker; the job needs at least 3 ranks:

    mpirun -n 8 python workflows/mpi_register.py stack.zarr out/ --band 32

Use it where a batch allocation is the unit of work (``srun``/``mpirun`` inside an
sbatch script) instead of dask-jobqueue's one job per worker. ``--synthetic N`` registers
a synthetic N-frame series instead of a file (a smoke test of the MPI setup).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dask_mpi import initialize
from distributed import Client


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="input stack, or 'synthetic' with --synthetic")
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--band", type=int, default=None)
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--synthetic", type=int, default=None, help="frames of a test series")
    parser.add_argument("--memory-limit", default="auto", help="per worker rank")
    args = parser.parse_args(argv)

    # Ranks other than 1 stay inside initialize() as scheduler/workers and exit at the end.
    initialize(nthreads=1, memory_limit=args.memory_limit, dashboard=False)

    import daskreg
    from daskreg.synthetic import lattice_series

    stack = args.stack
    if args.synthetic:
        stack = lattice_series(args.synthetic, (64, 64), seed=0).to_xarray()
    with Client() as client:
        result = daskreg.register(
            stack, client=client, band=args.band, chunks=args.chunks, progress=False
        )
    args.out.mkdir(parents=True, exist_ok=True)
    result.dataset.to_netcdf(args.out / "result.nc")
    print(result)


if __name__ == "__main__":
    main()
