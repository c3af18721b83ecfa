"""Synthetic drifting series rendered chunk by chunk into a Zarr store (for bench_dask.py).

One noise-free lattice canvas, a little larger than a frame, is rendered once with
:func:`daskreg.synthetic.lattice_series`; each frame is that canvas shifted by the
Fourier shift theorem to the frame's known sub-pixel position, cropped, and given
Poisson noise from its own seed. A Dask task renders each chunk, so series far larger
than memory are written with a few chunks in flight.
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr

from daskreg.kernels.shift import fourier_shift_frames
from daskreg.synthetic import lattice_series

# Canvas border beyond the frame, pixels: larger than the largest excursion of the drift.
MARGIN = 16


def trajectory(n_frames: int) -> np.ndarray:
    """Smooth, bounded drift ``(n_frames, 2)`` in pixels (within +-12 px, ~0.1 px/frame)."""
    f = np.arange(n_frames)[:, None]
    slow = np.array([7.0, 6.0]) * np.sin(2 * np.pi * f / np.array([700.0, 900.0]) + [0.3, 1.1])
    wobble = np.array([0.4, 0.3]) * np.sin(2 * np.pi * f / np.array([37.0, 53.0]))
    return slow + wobble


def _render(block_info, canvas, shifts, shape, dose, seed):
    (start, stop), *_ = block_info[None]["array-location"]
    ny, nx = shape
    frames = np.empty((stop - start, ny, nx), np.float32)
    rng = np.random.default_rng([seed, start])
    for k, shift in enumerate(shifts[start:stop]):
        whole = np.floor(shift).astype(int)
        moved = fourier_shift_frames(canvas, shift - whole)
        y0, x0 = MARGIN - whole
        frames[k] = rng.poisson(np.clip(moved[y0 : y0 + ny, x0 : x0 + nx], 0, None) * dose)
    return frames


def synthetic_zarr(
    path: str | Path,
    n_frames: int,
    shape: tuple[int, int],
    *,
    chunk: int = 32,
    dose: float = 50.0,
    seed: int = 0,
) -> np.ndarray:
    """Write ``n_frames`` drifting noisy frames to a Zarr v3 store; returns the true shifts.

    The store is what :func:`daskreg.io.open_stack` reads: a group with the array
    ``stack`` (dims frame, y, x, chunked along frames) and its coordinates.
    """
    ny, nx = shape
    canvas = (
        lattice_series(
            1,
            (ny + 2 * MARGIN, nx + 2 * MARGIN),
            dose=np.inf,
            drift_step=(0, 0),
            drift_jitter=0.0,
            seed=seed,
        )
        .stack[0]
        .astype(np.float64)
    )
    shifts = trajectory(n_frames)
    frames = da.map_blocks(
        _render,
        canvas=canvas,
        shifts=shifts,
        shape=shape,
        dose=dose,
        seed=seed,
        chunks=(
            (chunk,) * (n_frames // chunk) + ((n_frames % chunk,) if n_frames % chunk else ()),
            (ny,),
            (nx,),
        ),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    stack = xr.DataArray(
        frames,
        dims=("frame", "y", "x"),
        coords={"frame": np.arange(n_frames), "y": np.arange(ny), "x": np.arange(nx)},
        name="stack",
    )
    with dask.config.set(scheduler="threads"):
        stack.to_dataset().to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return shifts
