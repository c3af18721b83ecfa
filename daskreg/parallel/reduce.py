"""The registered average and the aligned stack of any data, lazily: the one builder.

Every Dask average and aligned stack in daskreg is built here: the registration's
(:func:`daskreg.parallel.engine.average_graph`), the 4D-STEM average
(:func:`daskreg.parallel.fourd.register_4dstem`), and :func:`daskreg.apply_shifts` /
:func:`daskreg.align_stack` (also :meth:`daskreg.RegistrationResult.apply`). Each task
runs a kernel of :mod:`daskreg.kernels.shift` on one block: the aligned sum
(:func:`~daskreg.kernels.shift.registered_sum`), whose partial sums are added in a tree
and divided by the number of used frames, or the aligned frames
(:func:`~daskreg.kernels.shift.aligned_frames`). Data may carry other axes (energy, the
detector of 4D-STEM) before or after the scan axes; they are shifted along ``(y, x)``
only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from daskreg.kernels.shift import aligned_frames, registered_sum
from daskreg.parallel import tally

__all__ = ["aligned_average", "aligned_stack"]

# Partial sums added together per reduction task: up to this many, fewer when each is
# large (a 4D-STEM partial sum holds a diffraction pattern per scan position) so that a
# task holds at most about _COMBINE_BYTES of them.
_SPLIT_EVERY = 8
_COMBINE_BYTES = 128 * 2**20


def aligned_average(
    data: da.Array, shifts: np.ndarray, *, scan_axes: tuple[int, int] = (1, 2)
) -> da.Array:
    """Average of the frames with a finite shift, each aligned, lazily.

    Parameters
    ----------
    data : dask.array.Array, shape (N, ...)
        Frames on axis 0, chunked along it (and optionally along axes other than the
        scan axes); chunks along the scan axes are merged (the shift needs whole planes).
    shifts : ndarray, shape (N, 2)
        Displacement ``(dy, dx)`` of each frame, pixels; NaN rows are left out.
    scan_axes : (int, int), default (1, 2)
        Axes of ``data`` holding ``y`` and ``x``.

    Returns
    -------
    dask.array.Array of float64, shape ``data.shape[1:]``
        NaN where no frame has a finite shift.
    """
    n_used = int(np.isfinite(shifts).all(axis=1).sum())
    sums = _blockwise_frames(
        _block_sum, data, shifts, scan_axes, dtype=np.float64, adjust_chunks={"f": 1}
    )
    each = 8 * int(np.prod(data.shape[1:]))
    split_every = int(np.clip(_COMBINE_BYTES // max(each, 1), 2, _SPLIT_EVERY))
    return sums.sum(axis=0, split_every=split_every) / (n_used or np.nan)


def aligned_stack(
    data: da.Array,
    shifts: np.ndarray,
    *,
    scan_axes: tuple[int, int] = (1, 2),
    dtype: np.dtype | type = np.float64,
) -> da.Array:
    """Every frame aligned (shifted by ``-shifts``), lazily; NaN frames where the shift is.

    :func:`~daskreg.kernels.shift.aligned_frames` on each block of frames.

    Parameters
    ----------
    data, shifts, scan_axes
        As for :func:`aligned_average`.
    dtype : numpy dtype, default float64
        Of the output (float32 keeps the stack's size for integer and float32 input).

    Returns
    -------
    dask.array.Array of ``dtype``, shape and chunks of ``data`` (whole scan planes)
    """
    # blockwise takes ``dtype`` for itself: the kernel gets it bound.
    kernel = partial(aligned_frames, dtype=dtype)
    meta = np.empty((0,) * data.ndim, dtype=dtype)
    return _blockwise_frames(kernel, data, shifts, scan_axes, dtype=dtype, meta=meta)


def _blockwise_frames(
    kernel: Callable[..., np.ndarray],
    data: da.Array,
    shifts: np.ndarray,
    scan_axes: tuple[int, int],
    **blockwise: Any,
) -> da.Array:
    """``kernel(block, shifts_of_block, scan_axes=...)`` on every block of frames.

    The data get whole scan planes (the shift needs them) and the shifts the data's
    chunks along the frames; ``blockwise`` (dtype, chunks, meta) goes to
    :func:`dask.array.blockwise`, whose output index is the data's.
    """
    axes = normalize_axis_tuple(scan_axes, data.ndim)
    data = data.rechunk(dict.fromkeys(axes, -1))
    along = da.from_array(np.asarray(shifts, dtype=np.float64), chunks=(data.chunks[0], 2))
    index = "f" + "abcdefghijklmnop"[: data.ndim - 1]
    return da.blockwise(
        kernel, index, data, index, along, "fz", scan_axes=axes, concatenate=True, **blockwise
    )


def _block_sum(block: np.ndarray, shifts: np.ndarray, scan_axes: tuple[int, int]) -> np.ndarray:
    """Aligned sum of one block, with the frame axis kept (length 1) for the reduction."""
    total = registered_sum(block, shifts, scan_axes=scan_axes)[None]
    tally.report("frames", int(np.isfinite(shifts).all(axis=1).sum()))
    return total
