"""Build the DataArray every source ends as: dask-backed, (leading..., frame, y, x), calibrated."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from daskreg.errors import StackDtypeError
from daskreg.io._calibration import frame_coordinate, spatial_calibration
from daskreg.io._chunks import ChunksSpec, frame_chunks
from daskreg.io._layout import plan_layout
from daskreg.io._metadata import metadata_json
from daskreg.io._raw import Axis, RawStack

__all__ = ["assemble"]

_STACK_DIMS = ("frame", "y", "x")


def assemble(raw: RawStack, frame_axis: int | None, chunks: ChunksSpec) -> xr.DataArray:
    """Reorder, chunk and calibrate a stack as read.

    Parameters
    ----------
    raw : RawStack
        The stack as a reader found it.
    frame_axis : int or None
        User's frame axis in the stored order; see :func:`~daskreg.io.open_stack`.
    chunks : int, mapping or None
        See :func:`~daskreg.io._chunks.frame_chunks`; ``None`` keeps the frame chunks of
        a source that stores its own (:attr:`RawStack.own_chunks`), whole along y and x.

    Returns
    -------
    xarray.DataArray
        Dask-backed, dims (leading..., "frame", "y", "x"), coordinates on frame, y and x,
        attrs ``pixel_size``, ``unit``, ``source``, ``signal_title``, ``original_metadata``
        and, when the calibration was guessed, ``calibration_note``.

    Raises
    ------
    StackDtypeError, StackShapeError, FrameAxisError, ParameterError
        See :func:`~daskreg.io.open_stack`.
    """
    dtype = np.dtype(raw.data.dtype)
    _check_dtype(dtype, raw.source)
    shape = tuple(int(n) for n in raw.data.shape)
    layout = plan_layout([axis.name for axis in raw.axes], shape, frame_axis)
    data = raw.data if isinstance(raw.data, da.Array) else da.from_array(raw.data)
    data = data.transpose(layout.order)
    axes = [raw.axes[i] for i in layout.order]
    if not layout.has_frame_axis:
        data = data[np.newaxis]
        axes.insert(0, Axis(name="frame"))
    dims = _leading_dims(axes[:-3]) + _STACK_DIMS
    whole_frames = len(data.chunks[-2]) == len(data.chunks[-1]) == 1
    if chunks is None and raw.own_chunks and whole_frames:
        # The store's frames per chunk (its last chunk may be shorter). A store tiled
        # along y/x holds no whole frame per chunk: its frame count means nothing here.
        chunks = {"frame": int(data.chunks[-3][0])}
    data = data.rechunk(frame_chunks(dims, data.shape, dtype.itemsize, chunks))

    calibration = spatial_calibration(axes[-2], axes[-1])
    frame_values, frame_attrs = frame_coordinate(axes[-3], data.shape[-3])
    coords: dict[str, Any] = {
        "frame": ("frame", frame_values, frame_attrs),
        "y": ("y", calibration.coordinate(0, data.shape[-2]), {"units": calibration.unit}),
        "x": ("x", calibration.coordinate(1, data.shape[-1]), {"units": calibration.unit}),
    }
    leading = zip(dims[:-3], axes[:-3], strict=True)
    coords.update((dim, (dim, axis.values)) for dim, axis in leading if axis.values is not None)
    attrs = {
        "pixel_size": calibration.pixel_size,
        "unit": calibration.unit,
        "source": raw.source,
        "signal_title": raw.signal_title,
        "original_metadata": metadata_json(raw.original_metadata),
    }
    if calibration.note:
        attrs["calibration_note"] = calibration.note
    return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs)


def _check_dtype(dtype: np.dtype, source: str) -> None:
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise StackDtypeError(
            f"{source}: dtype {dtype} is not real-valued numeric; daskreg registers integer "
            "or float images. Convert the data first, e.g. .astype(np.float32), or take "
            "np.abs(...) or .real of complex data"
        )


def _leading_dims(axes: list[Axis]) -> tuple[str, ...]:
    # A leading axis can carry a stack name only if frame_axis overrode the source's names.
    names = [None if axis.name in _STACK_DIMS else axis.name for axis in axes]
    if len(names) == 1:
        return (names[0] or "series",)
    return tuple(name or f"series_{i}" for i, name in enumerate(names))
