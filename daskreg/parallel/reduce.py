"""The registered average (a Dask reduction over frame chunks) and the registered stack.

Inside each chunk the used frames are aligned by the Fourier shift theorem
(:func:`daskreg.kernels.shift.fourier_shift_frames`) and summed; the partial sums are
added in a tree and divided by the number of used frames. The frames may carry
trailing axes after ``(y, x)`` (the detector axes of 4D-STEM): they are shifted along
``(y, x)`` only.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from daskreg.kernels.shift import fourier_shift_frames

__all__ = ["registered_average", "registered_frames"]

# Partial sums added together per reduction task.
_SPLIT_EVERY = 8
# Frames are shifted a few at a time: the Fourier shift holds about eight float64-sized
# copies of what it shifts, so a whole 64 MiB chunk at once would need ~1 GiB.
_BATCH_BYTES = 16 * 2**20


def _aligned(block: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Frames ``(F, y, x, ...)`` shifted by ``-shifts`` along (y, x); NaN for NaN shifts."""
    moved = np.moveaxis(np.asarray(block), (1, 2), (-2, -1))
    per_frame = shifts.reshape(len(shifts), *(1,) * (moved.ndim - 3), 2)
    return np.moveaxis(fourier_shift_frames(moved, -per_frame), (-2, -1), (1, 2))


def _batches(block: np.ndarray) -> range:
    """Starts of the groups of frames shifted together (bounded working memory)."""
    step = max(1, _BATCH_BYTES // (8 * max(1, block[0].size)))
    return range(0, len(block), step)


def _aligned_sum(block: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Sum of the aligned frames of a chunk with finite shifts, shape (1, y, x, ...).

    For plain frames this is :func:`daskreg.kernels.shift.registered_sum`.
    """
    keep = np.isfinite(shifts).all(axis=1)
    frames, shifts = np.asarray(block)[keep], shifts[keep]
    total = np.zeros((1, *block.shape[1:]))
    starts = _batches(frames) if len(frames) else ()
    for start in starts:
        stop = start + starts.step
        total += _aligned(frames[start:stop], shifts[start:stop]).sum(axis=0, keepdims=True)
    return total


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
    return partial.sum(axis=0, split_every=_SPLIT_EVERY) / n_used


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
    aligned = np.empty(block.shape, dtype=out)
    starts = _batches(block) if len(block) else ()
    for start in starts:
        stop = start + starts.step
        aligned[start:stop] = _aligned(block[start:stop], shifts[start:stop])
    return aligned
