"""Multi-frame 4D-STEM drift correction out of core: a few hundred MB in Zarr, small workers.

Run from the repository root::

    python benchmarks/bench_4dstem.py                        # 12 x 96^2 x 32^2 float32
    python benchmarks/bench_4dstem.py --frames 24 --memory-limit 768MiB

A synthetic series (the lattice of :mod:`daskreg.synthetic` as the virtual image, every
scan position's diffraction pattern a bright-field disc scaled by it, plus Poisson
noise) is written frame chunk by frame chunk to a Zarr store; then
:func:`daskreg.parallel.fourd.register_4dstem` registers it from its virtual annular
dark-field image and averages the full 4D data on a ``LocalCluster`` whose workers may
hold only a fraction of it. Prints the time, the peak resident memory of every process
and the shift error against the truth.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dask import PeakMemory  # noqa: E402

from daskreg.parallel.fourd import register_4dstem  # noqa: E402
from daskreg.synthetic import lattice_series  # noqa: E402


def _patterns(q: int) -> tuple[np.ndarray, np.ndarray]:
    """A bright-field disc and the annular detector around it, shape (q, q)."""
    qy, qx = np.mgrid[:q, :q] - (q - 1) / 2
    radius = np.hypot(qy, qx)
    disc = (radius < q / 6).astype(np.float32) + 0.02
    ring = ((radius > q / 5) & (radius < q / 2.2)).astype(float)
    return disc, ring


def _render(block: np.ndarray, disc: np.ndarray, seed: int, block_info=None) -> np.ndarray:
    start = block_info[0]["array-location"][0][0]
    rng = np.random.default_rng([seed, start])
    # Dark-field signal where the lattice columns are: the ring sees the columns.
    signal = block[..., None, None] * (1.0 - disc / disc.max() + 0.05)
    return rng.poisson(np.clip(signal, 0, None) * 4).astype(np.float32)


def write_series(path: Path, n_frames: int, scan: int, q: int, seed: int = 3):
    series = lattice_series(n_frames, (scan, scan), dose=np.inf, spacing=12, seed=seed,
                            drift_step=(0.7, -0.4))
    disc, ring = _patterns(q)
    frames = da.from_array(series.stack.astype(np.float32), chunks=(2, scan, scan))
    data = frames.map_blocks(
        _render, disc=disc, seed=seed, new_axis=[3, 4],
        chunks=(2, scan, scan, q, q), dtype=np.float32,
    )
    stack = xr.DataArray(data, dims=("frame", "y", "x", "qy", "qx"), name="stack")
    with dask.config.set(scheduler="threads"):
        stack.to_dataset().to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return series.shifts, ring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--scan", type=int, default=96)
    parser.add_argument("--q", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1GiB")
    args = parser.parse_args()
    from distributed import Client

    from daskreg.parallel.cluster import local_cluster

    nbytes = args.frames * args.scan**2 * args.q**2 * 4
    print(f"# 4D-STEM: {args.frames} frames x {args.scan}^2 scan x {args.q}^2 detector float32 "
          f"({nbytes / 2**20:.0f} MiB), {args.workers} workers x {args.memory_limit}")
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        path = Path(tmp) / "fourd.zarr"
        start = time.perf_counter()
        truth, ring = write_series(path, args.frames, args.scan, args.q)
        print(f"  write the series            {time.perf_counter() - start:8.1f} s")
        # xarray keeps the stored (frame, y, x, qy, qx) order and chunks; open_stack would
        # put the detector axes first as series of 2-D stacks.
        data = xr.open_zarr(path, consolidated=False)["stack"]
        with local_cluster(args.workers, args.memory_limit) as cluster, Client(cluster):
            with PeakMemory() as peak:
                start = time.perf_counter()
                result = register_4dstem(data, ring, chunks=2, progress=False)
                elapsed = time.perf_counter() - start
        err = result.shifts.values - (truth - truth.mean(axis=0))
        print(f"  register_4dstem             {elapsed:8.1f} s")
        print(f"  shift error vs truth: rms {np.sqrt((err**2).sum(axis=1).mean()):.3f} px, "
              f"max {np.abs(err).max():.3f} px")
        average = result.dataset["average_4d"]
        print(f"  average_4d {average.dims} {average.shape}, "
              f"{average.nbytes / 2**20:.0f} MiB, finite: {bool(np.isfinite(average).all())}")
        for pid, (kind, rss) in sorted(peak.peaks.items(), key=lambda kv: kv[1][0]):
            print(f"  peak RSS {kind:17s} pid {pid:7d} {rss / 2**30:6.2f} GiB")


if __name__ == "__main__":
    main()
