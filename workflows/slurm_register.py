"""Register a stack on a SLURM (or PBS) cluster through dask-jobqueue.

Run it on a login node or inside a small driver job (see slurm_register.sbatch); it
submits ``--jobs`` worker jobs from the settings in ``--config`` (see jobqueue.yaml),
registers the stack on them, writes the average and the result, then releases the jobs.

    python workflows/slurm_register.py stack.zarr out/ --config workflows/jobqueue.yaml \
        --jobs 4 --band 32 --chunks 64
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distributed import Client

import daskreg
from daskreg.parallel import hpc_cluster


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="input stack (Zarr store or any daskreg format)")
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--config", default=None, help="dask-jobqueue YAML (jobqueue.yaml)")
    parser.add_argument("--kind", choices=["slurm", "pbs"], default="slurm")
    parser.add_argument("--jobs", type=int, default=2, help="worker jobs to submit")
    parser.add_argument("--band", type=int, default=None, help="pairs with |i - j| <= band")
    parser.add_argument("--chunks", type=int, default=None, help="frames per chunk")
    parser.add_argument("--save-stack", action="store_true", help="also write aligned.zarr")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    with hpc_cluster(args.kind, config=args.config) as cluster, Client(cluster) as client:
        cluster.scale(jobs=args.jobs)
        client.wait_for_workers(1)
        result = daskreg.register(
            args.stack,
            client=client,
            band=args.band,
            chunks=args.chunks,
            save_stack=str(args.out / "aligned.zarr") if args.save_stack else None,
            # Spilled spectra must be on a file system every node sees.
            temp_dir=str(args.out),
        )
    result.save_tif(args.out / "average.tif")
    result.dataset.to_netcdf(args.out / "result.nc")
    print(result)


if __name__ == "__main__":
    main()
