"""The registered average (a Dask reduction over frame chunks) and the registered stack.

Inside each chunk the used frames are aligned by the Fourier shift theorem and summed
(:func:`daskreg.kernels.shift.registered_sum`); the partial sums are
added in a tree and divided by the number of used frames. The frames may carry
trailing axes after ``(y, x)`` (the detector axes of 4D-STEM): they are shifted along
``(y, x)`` only.
"""

from __future__ import annotations

from collections.abc import Iterator

import dask.array as da
import numpy as np

from daskreg._pieces import frame_slices
from daskreg.kernels.shift import fourier_shift_frames, registered_sum

__all__ = ["registered_average", "registered_frames"]

# Partial sums added together per reduction task: up to this many, fewer when each is
# large (a 4D-STEM partial sum holds a diffraction pattern per scan position) so that a
# task holds at most about _COMBINE_BYTES of them.
_SPLIT_EVERY = 8
_COMBINE_BYTES = 128 * 2**20
# Frames are shifted a piece at a time: the Fourier shift holds about eight float64-sized
# copies of what it shifts, so a whole 64 MiB chunk (or one 4D-STEM frame of a few
# hundred MB) at once would need gigabytes.
_BATCH_BYTES = 16 * 2**20


def _aligned(block: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Frames ``(F, y, x, ...)`` shifted by ``-shifts`` along (y, x); NaN for NaN shifts."""
    moved = np.moveaxis(np.asarray(block), (1, 2), (-2, -1))
    per_frame = shifts.reshape(len(shifts), *(1,) * (moved.ndim - 3), 2)
    return np.moveaxis(fourier_shift_frames(moved, -per_frame), (-2, -1), (1, 2))


def _pieces(shape: tuple[int, ...]) -> Iterator[tuple[slice, slice]]:
    """Frame and trailing-element slices of a ``(F, y, x, T)`` block, each piece at most
    about ``_BATCH_BYTES`` as float64: several frames, or part of one 4D-STEM frame."""
    n_frames, ny, nx, n_trailing = shape
    if not n_frames:
        return
    t_step = max(1, min(n_trailing, _BATCH_BYTES // (8 * ny * nx)))
    for f in frame_slices(n_frames, ny * nx * t_step, _BATCH_BYTES):
        for t in range(0, n_trailing, t_step):
            yield f, slice(t, t + t_step)


def _columns(block: np.ndarray) -> np.ndarray:
    """``block`` as ``(F, y, x, T)``, the trailing axes flattened."""
    block = np.asarray(block)
    return block.reshape(*block.shape[:3], -1)


def _aligned_sum(block: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Sum of the aligned frames of a chunk with finite shifts, shape (1, y, x, ...)."""
    frames = _columns(block)
    total = np.zeros(frames.shape[1:])
    for f, t in _pieces(frames.shape):
        # (F, y, x, T) -> (F, T, y, x): the trailing elements ride along as images.
        moved = np.moveaxis(frames[f, ..., t], 3, 1)
        total[..., t] += np.moveaxis(registered_sum(moved, shifts[f]), 0, -1)
    return total.reshape(1, *block.shape[1:])


def _indices(ndim: int) -> str:
    return "fyx" + "abcdefgh"[: ndim - 3]


def registered_average(data: da.Array, shifts: da.Array, n_used: da.Array) -> da.Array:
    """Average of the used frames after alignment, lazily.

    Parameters
    ----------
    data : dask.array.Array, shape (N, ny, nx, ...)
        Frames, chunked along the frame axis (and optionally trailing axes), whole
        along y and x.
    shifts : dask.array.Array, shape (N, 2)
        Displacement of each frame, chunked like ``data`` along frames; NaN rows are
        left out.
    n_used : dask.array.Array, shape ()
        Number of used frames.

    Returns
    -------
    dask.array.Array of float64, shape (ny, nx, ...)
    """
    index = _indices(data.ndim)
    partial = da.blockwise(
        _aligned_sum,
        index,
        data,
        index,
        shifts,
        "fz",
        dtype=np.float64,
        adjust_chunks={"f": 1},
        concatenate=True,
    )
    each = 8 * int(np.prod(data.shape[1:]))
    split_every = int(np.clip(_COMBINE_BYTES // each, 2, _SPLIT_EVERY))
    return partial.sum(axis=0, split_every=split_every) / n_used


def registered_frames(data: da.Array, shifts: da.Array, dtype: np.dtype) -> da.Array:
    """Every frame aligned (shifted by ``-shifts``), lazily; NaN frames where unused.

    Parameters
    ----------
    data, shifts : dask.array.Array
        As for :func:`registered_average`.
    dtype : numpy dtype
        Of the output (float32 keeps the stack's size for integer and float32 input).
    """
    index = _indices(data.ndim)
    return da.blockwise(
        _aligned_as, index, data, index, shifts, "fz", dtype=dtype, concatenate=True, out=dtype
    )


def _aligned_as(block: np.ndarray, shifts: np.ndarray, out: np.dtype) -> np.ndarray:
    frames = _columns(block)
    aligned = np.empty(frames.shape, dtype=out)
    for f, t in _pieces(frames.shape):
        aligned[f, ..., t] = _aligned(frames[f, ..., t], shifts[f])
    return aligned.reshape(block.shape)
