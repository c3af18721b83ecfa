"""Peak memory of ``daskreg ingest`` on a TIFF stack larger than the memory it may use.

Generates a BigTIFF stack of ``--size-gib`` GiB (uint16 frames written one by one, so
the generator itself never holds more than a frame), runs ``daskreg ingest`` on it in a
subprocess, samples the resident memory of that process and its children every 20 ms,
and prints the file size, wall time, peak memory and peak memory / file size.

Run::

    python benchmarks/bench_ingest.py --size-gib 4

The target is a peak below 1 GiB for a 4 GiB stack. The stack and the store go to a
temporary folder (``--dir`` to choose it), deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import tifffile

GIB = 2**30
SAMPLE_SECONDS = 0.02


def frames(n_frames: int, shape: tuple[int, int]) -> Iterator[np.ndarray]:
    """A drifting noisy pattern, one frame at a time (compressible like real data)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[: shape[0], : shape[1]]
    base = 1000 + 500 * np.sin(2 * np.pi * y / 16) * np.sin(2 * np.pi * x / 16)
    for k in range(n_frames):
        noise = rng.poisson(20, size=shape)
        yield (np.roll(base, (k % 16, k % 13), axis=(0, 1)) + noise).astype(np.uint16)


def write_stack(path: Path, size_gib: float, shape: tuple[int, int]) -> int:
    """Write a uint16 BigTIFF stack of about ``size_gib`` GiB; returns its frame count."""
    n_frames = max(3, round(size_gib * GIB / (shape[0] * shape[1] * 2)))
    tifffile.imwrite(
        path,
        frames(n_frames, shape),
        shape=(n_frames, *shape),
        dtype=np.uint16,
        bigtiff=True,
        metadata={"axes": "TYX"},
    )
    return n_frames


def peak_rss(command: list[str]) -> tuple[int, float, int]:
    """Run ``command``; returns (exit code, wall seconds, peak RSS in bytes incl. children)."""
    start = time.perf_counter()
    process = subprocess.Popen(command)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.NoSuchProcess:
            pass
        time.sleep(SAMPLE_SECONDS)
    return process.returncode, time.perf_counter() - start, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=4.0, help="stack size, GiB")
    parser.add_argument("--frame", type=int, default=1024, help="frame side, px")
    parser.add_argument("--chunks", type=int, help="frames per chunk, passed to ingest")
    parser.add_argument("--dir", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the stack and the store")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=args.dir))
    try:
        stack, store = folder / "stack.tif", folder / "stack.zarr"
        started = time.perf_counter()
        n_frames = write_stack(stack, args.size_gib, (args.frame, args.frame))
        written = time.perf_counter() - started
        size = stack.stat().st_size
        command = [sys.executable, "-m", "daskreg.cli", "ingest", str(stack), str(store)]
        if args.chunks:
            command += ["--chunks", str(args.chunks)]
        code, seconds, peak = peak_rss(command)
        print(f"stack       {n_frames} x {args.frame} x {args.frame} uint16, {size / GIB:.2f} GiB")
        print(f"generated   {written:.1f} s")
        print(f"command     {' '.join(command)}")
        print(f"exit code   {code}")
        print(f"ingest      {seconds:.1f} s ({size / 2**20 / seconds:.0f} MiB/s)")
        print(f"peak RSS    {peak / 2**20:.0f} MiB ({peak / size:.3f} of the file size)")
        return code
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
