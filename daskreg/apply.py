"""Re-use measured shifts on any data recorded with the registered frames.

Simultaneous channels share the drift: an ABF/BF image series recorded with the HAADF
one, an EELS/EDS spectrum image ``(frame, y, x, energy)``, a 4D-STEM scan ``(frame,
scan_y, scan_x, qy, qx)``. :func:`align_stack` shifts every frame of such an array
along its two scan axes by the Fourier shift theorem (lazily, frame chunk by frame
chunk), :func:`apply_shifts` also averages the used frames.

References
----------
Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI 10.1016/j.ultramic.2018.04.008:
the registered average applied to other data.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from daskreg.errors import (
    FrameAxisError,
    ParameterError,
    StackDtypeError,
    StackShapeError,
    TooFewFramesError,
)
from daskreg.io._chunks import CHUNK_BYTES
from daskreg.io._hyperspy import is_hyperspy_signal
from daskreg.io._open import open_stack
from daskreg.io._zarr import write_store
from daskreg.io.atomic import atomic_path
from daskreg.io.ome_zarr import is_ome_zarr_path
from daskreg.kernels.shift import coverage, crop_bounds
from daskreg.parallel import reduce
from daskreg.signatures import forwards_options

__all__ = ["align_stack", "apply_shifts"]

AxisSpec = int | str


def align_stack(
    other: Any,
    shifts: Any,
    *,
    bad_frames: Sequence[int] | None = None,
    frame_axis: AxisSpec | None = None,
    scan_axes: tuple[AxisSpec, AxisSpec] | None = None,
    crop: bool = True,
    frame_shape: tuple[int, int] | None = None,
) -> xr.DataArray:
    """Shift every used frame of ``other`` back by its measured displacement, lazily.

    Parameters
    ----------
    other : array_like, xarray.DataArray, path or HyperSpy signal
        Data with one frame axis matching the shifts. Paths and signals are opened with
        :func:`daskreg.open_stack` (image stacks; for spectrum images and 4D-STEM pass
        the array or a DataArray).
    shifts : array_like or xarray.DataArray, shape (n_frames, 2)
        Displacement ``(dy, dx)`` of each frame in pixels, as
        :attr:`RegistrationResult.shifts <daskreg.RegistrationResult.shifts>`; rows with
        NaN are frames to skip.
    bad_frames : sequence of int, optional
        More frames to skip (indices along the frame axis).
    frame_axis : int or str, optional
        Frame axis of ``other``, by position or dimension name. Default: the dimension
        ``"frame"`` of a DataArray, else axis 0.
    scan_axes : (int or str, int or str), optional
        The ``(y, x)`` scan axes the shifts act along, by position or name. Default: the
        two axes after the frame axis (``y, x`` of ``(frame, y, x, energy)``,
        ``scan_y, scan_x`` of ``(frame, scan_y, scan_x, qy, qx)``).
    crop : bool, default True
        Keep only the region of the scan axes that every used frame covers
        (:func:`daskreg.kernels.shift.crop_bounds`).
    frame_shape : (int, int), optional
        Size ``(ny, nx)`` of the frames the shifts were measured on; scan axes of
        another size raise (shifts are in pixels of that grid).

    Returns
    -------
    xarray.DataArray
        float64, dask-backed, with the dims, coordinates and attrs of ``other`` and only
        the used frames; nothing is computed. Arrays without dimension names get
        ``frame``, ``y``, ``x`` for the frame and scan axes and ``axis_<k>`` for the
        others.

    Raises
    ------
    FrameAxisError
        ``frame_axis`` or ``scan_axes`` name no axis, or the same one twice.
    StackShapeError
        The frame axis does not hold one frame per shift, or the scan axes do not have
        ``frame_shape``.
    StackDtypeError
        ``other`` is not real-valued numeric.
    ParameterError
        ``shifts`` is not ``(n_frames, 2)`` numbers, or a bad frame is out of range.
    TooFewFramesError
        No frame is left to use.

    Notes
    -----
    Frame ``i`` shows the specimen displaced by ``+shifts[i]``; it is shifted by
    ``-shifts[i]`` with the Fourier shift theorem (periodic boundaries, real part), as
    the registration itself does, so the shifts of a result applied to the registered
    stack reproduce its average. Blocks hold whole scan planes and a chunk of frames;
    other axes (energy, detector) are chunked so that a block stays near 64 MiB.

    Examples
    --------
    >>> import numpy as np
    >>> from daskreg.synthetic import lattice_series
    >>> series = lattice_series(6, (64, 64), seed=2)
    >>> spectra = np.repeat(series.stack[..., None], 3, axis=-1)  # (frame, y, x, energy)
    >>> aligned = align_stack(spectra, series.shifts, crop=False)
    >>> aligned.dims, aligned.shape
    (('frame', 'y', 'x', 'axis_3'), (6, 64, 64, 3))
    """
    return _align(other, shifts, bad_frames, frame_axis, scan_axes, crop, frame_shape).stack


@forwards_options(align_stack)
def apply_shifts(
    other: Any,
    shifts: Any,
    *,
    average: bool = True,
    save_stack: str | os.PathLike | None = None,
    overwrite: bool = True,
    **alignment: Any,
) -> xr.DataArray:
    """Align ``other`` with measured shifts and average its used frames.

    Parameters
    ----------
    other, shifts, bad_frames, frame_axis, scan_axes, crop, frame_shape
        As for :func:`align_stack`.
    average : bool, default True
        Return the average over the used frames (computed). ``False``: return the
        aligned stack, lazily, as :func:`align_stack` does.
    save_stack : path-like, optional
        Also write the aligned stack as float32 to this Zarr v3 store (array ``stack``
        of a group, with the coordinates beside it, as :func:`daskreg.ingest` writes),
        in the same pass over the data as the average; a path ending in ``.ome.zarr``
        makes it an OME-Zarr (NGFF 0.5) image too (``(frame, y, x)`` data only).
    overwrite : bool, default True
        Replace an existing store at ``save_stack``.

    Returns
    -------
    xarray.DataArray
        ``average=True``: the float64 average, with the dims of ``other`` but the frame
        axis, its coordinates and attrs, a ``coverage`` coordinate on the scan dims
        (number of used frames covering each pixel) and the attribute
        ``frames_averaged``. ``average=False``: the aligned stack.

    Raises
    ------
    DaskregError
        As :func:`align_stack`; :class:`~daskreg.errors.OutputPathError` when
        ``save_stack`` cannot be written, :class:`~daskreg.errors.ParameterError` for an
        unknown keyword (naming the closest valid one).

    Examples
    --------
    >>> from daskreg.synthetic import lattice_series
    >>> series = lattice_series(6, (64, 64), seed=2)
    >>> mean = apply_shifts(series.stack, series.shifts, bad_frames=[2])
    >>> mean.attrs["frames_averaged"], mean.dims
    (5, ('y', 'x'))
    """
    aligned = _align(other, shifts, **alignment)
    stack = aligned.stack
    if not average:
        if save_stack is not None:
            with atomic_path(Path(save_stack), overwrite=overwrite) as temp:
                write_store(stack.astype(np.float32), temp, ome_zarr=is_ome_zarr_path(save_stack))
        return stack
    mean = aligned.average
    if save_stack is None:
        mean = mean.compute()
    else:
        with atomic_path(Path(save_stack), overwrite=overwrite) as temp:
            written = write_store(
                stack.astype(np.float32),
                temp,
                compute=False,
                ome_zarr=is_ome_zarr_path(save_stack),
            )
            # One pass over the data: each block read feeds both the store and the sum.
            mean, _ = dask.compute(mean, written)
    mean.attrs = {**stack.attrs, "frames_averaged": stack.sizes[aligned.frame_dim]}
    mean.coords["coverage"] = (aligned.scan_dims, aligned.coverage)
    return mean


@dataclass(frozen=True)
class _Aligned:
    """The aligned stack and the average of its frames, both lazy and cropped alike."""

    stack: xr.DataArray
    average: xr.DataArray
    frame_dim: Hashable
    scan_dims: tuple[Hashable, Hashable]
    coverage: np.ndarray


def _align(
    other: Any,
    shifts: Any,
    bad_frames: Sequence[int] | None,
    frame_axis: AxisSpec | None,
    scan_axes: tuple[AxisSpec, AxisSpec] | None,
    crop: bool,
    frame_shape: tuple[int, int] | None,
) -> _Aligned:
    stack, frame_dim = _labelled(other, frame_axis)
    scan_dims = _scan_dims(stack, frame_dim, scan_axes)
    shape = (stack.sizes[scan_dims[0]], stack.sizes[scan_dims[1]])
    if frame_shape is not None and shape != tuple(frame_shape):
        raise StackShapeError(
            f"the scan axes {scan_dims} of the data to align are {shape[0]}x{shape[1]} but "
            f"the shifts were measured on {frame_shape[0]}x{frame_shape[1]} frames; pass "
            "data on the same scan grid, or scale the shifts yourself and call "
            "daskreg.apply_shifts(data, shifts * factor)"
        )
    _check_dtype(stack)
    used = _used_frames(shifts, bad_frames, stack.sizes[frame_dim], frame_dim)
    used_shifts = np.asarray(shifts, dtype=np.float64)[used]
    work = stack.isel({frame_dim: used}).transpose(frame_dim, ..., *scan_dims)
    data = work.data if isinstance(work.data, da.Array) else da.from_array(work.data)
    # Whole scan planes per block (the Fourier shift needs them); the rest sized so that
    # a block holds about CHUNK_BYTES once shifted to float64.
    chunks: dict[int, Any] = dict.fromkeys(range(data.ndim - 2), "auto")
    chunks.update({data.ndim - 2: -1, data.ndim - 1: -1})
    data = data.rechunk(chunks, block_size_limit=CHUNK_BYTES * data.dtype.itemsize // 8)
    shifted = reduce.aligned_stack(data, used_shifts, scan_axes=(-2, -1))
    aligned = xr.DataArray(shifted, dims=work.dims, coords=work.coords, attrs=dict(stack.attrs))
    # The frame coordinates go with the frame axis, as in a sum over it.
    template = work.isel({frame_dim: 0}, drop=True)
    average = template.copy(data=reduce.aligned_average(data, used_shifts, scan_axes=(-2, -1)))
    aligned = aligned.transpose(*stack.dims)
    average = average.transpose(*(dim for dim in stack.dims if dim != frame_dim))
    covered = coverage(used_shifts, shape)
    if crop:
        bounds = crop_bounds(used_shifts, shape)
        rows, cols = slice(bounds.ymin, bounds.ymax), slice(bounds.xmin, bounds.xmax)
        aligned = aligned.isel({scan_dims[0]: rows, scan_dims[1]: cols})
        average = average.isel({scan_dims[0]: rows, scan_dims[1]: cols})
        covered = covered[rows, cols]
    return _Aligned(aligned, average, frame_dim, scan_dims, covered)


def _labelled(other: Any, frame_axis: AxisSpec | None) -> tuple[xr.DataArray, Hashable]:
    """``other`` as a DataArray, and the name of its frame dimension."""
    if isinstance(other, xr.DataArray):
        return other, _frame_dim(other, frame_axis)
    if isinstance(frame_axis, str):
        raise FrameAxisError(
            f"frame_axis={frame_axis!r} is a dimension name, but a {type(other).__name__} has "
            "none; pass the axis index, or a DataArray with named dims"
        )
    if isinstance(other, str | os.PathLike) or is_hyperspy_signal(other):
        return open_stack(other, frame_axis), "frame"
    if not all(hasattr(other, name) for name in ("shape", "dtype", "ndim")):
        other = np.asarray(other)
    if other.ndim < 3:
        raise StackShapeError(
            f"the data to align has shape {other.shape}; it needs a frame axis and two "
            "scan axes, e.g. (frame, y, x) or (frame, y, x, energy)"
        )
    frame = _axis_index(0 if frame_axis is None else frame_axis, other.ndim, "frame_axis")
    names = [f"axis_{k}" for k in range(other.ndim)]
    names[frame] = "frame"
    for axis, name in zip(_default_scan(list(range(other.ndim)), frame), ("y", "x"), strict=False):
        names[axis] = name
    return xr.DataArray(other, dims=names), "frame"


def _default_scan(axes: list, frame: Any) -> list:
    # (frame, y, x, ...) layouts, or the other two axes of a 3-D (y, x, frame) stack.
    following = axes[axes.index(frame) + 1 :][:2]
    if len(following) < 2 and len(axes) == 3:
        return [axis for axis in axes if axis != frame]
    return following


def _frame_dim(stack: xr.DataArray, frame_axis: AxisSpec | None) -> Hashable:
    if frame_axis is None:
        return "frame" if "frame" in stack.dims else stack.dims[0]
    return _dim(stack, frame_axis)


def _dim(stack: xr.DataArray, axis: AxisSpec) -> Hashable:
    if isinstance(axis, str):
        if axis not in stack.dims:
            raise FrameAxisError(
                f"no dimension {axis!r} in the data to align (dims {stack.dims}); pass one "
                "of those names or an axis index"
            )
        return axis
    return stack.dims[_axis_index(axis, stack.ndim, "axis")]


def _axis_index(axis: Any, ndim: int, label: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer) or not -ndim <= axis < ndim:
        raise FrameAxisError(
            f"{label}={axis!r} is not an axis of {ndim}-D data; pass an int from {-ndim} to "
            f"{ndim - 1} or a dimension name"
        )
    return int(axis) % ndim


def _scan_dims(
    stack: xr.DataArray, frame_dim: Hashable, scan_axes: tuple[AxisSpec, AxisSpec] | None
) -> tuple[Hashable, Hashable]:
    if scan_axes is None:
        default = _default_scan(list(stack.dims), frame_dim)
        if len(default) < 2:
            raise FrameAxisError(
                f"the frame axis {frame_dim!r} of dims {stack.dims} is not followed by two "
                "scan axes; pass scan_axes=(y_axis, x_axis)"
            )
        return default[0], default[1]
    if len(scan_axes) != 2:
        raise FrameAxisError(
            f"scan_axes={scan_axes!r} must name two axes (y, x); e.g. scan_axes=(1, 2)"
        )
    dims = (_dim(stack, scan_axes[0]), _dim(stack, scan_axes[1]))
    if len({frame_dim, *dims}) != 3:
        raise FrameAxisError(
            f"the frame axis {frame_dim!r} and scan axes {dims} must be three different "
            f"axes of dims {stack.dims}; pass other scan_axes or frame_axis"
        )
    return dims


def _check_dtype(stack: xr.DataArray) -> None:
    dtype = stack.dtype
    if dtype == np.bool_ or not (
        np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    ):
        raise StackDtypeError(
            f"the data to align must hold real numbers; got dtype {dtype}. Convert it "
            "first, e.g. data.astype('float32') (for complex data pass .real or abs())"
        )


def _used_frames(
    shifts: Any, bad_frames: Sequence[int] | None, n_frames: int, frame_dim: Hashable
) -> np.ndarray:
    """Indices of the frames to shift: finite shift, not listed as bad."""
    values = np.asarray(shifts, dtype=np.float64) if _numeric(shifts) else None
    if values is None or values.ndim != 2 or values.shape[1] != 2:
        raise ParameterError(
            f"shifts must be numbers of shape (n_frames, 2) = (dy, dx) per frame; got "
            f"{np.shape(shifts)}. Pass result.shifts of a RegistrationResult"
        )
    if len(values) != n_frames:
        raise StackShapeError(
            f"the data to align has {n_frames} frames along {frame_dim!r} but there are "
            f"{len(values)} shifts; pass the channel recorded with the registered series, "
            "or frame_axis= if its frames are on another axis"
        )
    keep = np.isfinite(values).all(axis=1)
    for frame in bad_frames if bad_frames is not None else ():
        if not -n_frames <= int(frame) < n_frames:
            raise ParameterError(
                f"bad frame {frame} is out of range for {n_frames} frames; pass indices "
                f"from 0 to {n_frames - 1}"
            )
        keep[int(frame)] = False
    if not keep.any():
        raise TooFewFramesError(
            f"no frame left to align: all {n_frames} shifts are NaN or listed as bad "
            "frames; pass the shifts of a registration that used some frames"
        )
    return np.flatnonzero(keep)


def _numeric(values: Any) -> bool:
    try:
        return np.issubdtype(np.asarray(values).dtype, np.number)
    except (TypeError, ValueError):
        return False
