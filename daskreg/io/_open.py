"""``open_stack``: any supported source to a lazy, calibrated (…, frame, y, x) DataArray."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from daskreg.errors import FileFormatError, ParameterError, StackFileNotFoundError
from daskreg.io._assemble import assemble
from daskreg.io._chunks import ChunksSpec
from daskreg.io._netcdf import NETCDF_EXTENSIONS, read_netcdf
from daskreg.io._objects import raw_from_object
from daskreg.io._raw import RawStack
from daskreg.io._rsciio import RSCIIO_EXTENSIONS, read_rsciio
from daskreg.io._tiff import TIFF_EXTENSIONS, read_tiff
from daskreg.io._zarr import is_zarr_store, read_zarr

__all__ = ["SUPPORTED_EXTENSIONS", "open_stack"]

_FileReader = Callable[[Path, int | str | None], RawStack]

_FILE_READERS: dict[str, _FileReader] = {
    **dict.fromkeys(RSCIIO_EXTENSIONS, read_rsciio),
    **dict.fromkeys(TIFF_EXTENSIONS, read_tiff),
    **dict.fromkeys(NETCDF_EXTENSIONS, read_netcdf),
}

#: Extensions :func:`open_stack` reads (``.zarr`` is a directory store).
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(sorted((*_FILE_READERS, ".zarr")))


def open_stack(
    source: Any,
    frame_axis: int | None = None,
    *,
    chunks: ChunksSpec = None,
    signal: int | str | None = None,
) -> xr.DataArray:
    """Open an image stack lazily as a calibrated, dask-backed DataArray.

    Parameters
    ----------
    source : str, os.PathLike, array-like, xarray.DataArray or HyperSpy signal
        A file or Zarr store with one of :data:`SUPPORTED_EXTENSIONS`; or a numpy/dask
        array (frames on axis 0 unless ``frame_axis`` says otherwise); a DataArray (dims
        ``frame``, ``y``, ``x`` are taken by name, in any order); a HyperSpy ``Signal2D``,
        lazy or not (its navigation axis is the frame axis).
    frame_axis : int or None
        Axis of the source holding the frames, e.g. ``-1`` for (rows, cols, frames)
        arrays. ``None``: the source's own axis names, else axis 0 (axis ``ndim - 3`` for
        4-D and 5-D arrays, whose leading axes become ``series``).
    chunks : int, dict or None
        Frames per dask chunk, or a chunk size per dimension name. ``None``: as many whole
        frames as fit in 64 MiB. y and x are never split.
    signal : int, str or None
        For a file holding several signals (images, plots, arrays), the index or title of
        the one to read. ``None`` takes the largest image stack, with a
        :class:`~daskreg.errors.RegistrationWarning` when there was a choice. For a file
        holding one signal with leading dims (an ImageJ hyperstack's channels, a 4-D
        store's series), an index picks one series (in C order over the leading dims):
        the result is one ``(frame, y, x)`` stack.

    Returns
    -------
    xarray.DataArray
        Dims ``("frame", "y", "x")``, preceded by leading dims for 4-D/5-D data; a single
        image gives one frame. Coordinates ``y``/``x`` in physical units, ``frame`` in
        time units if the source calibrates frames in time, else the frame index. attrs:
        ``pixel_size`` (py, px), ``unit`` (lengths in ``"nm"``; ``"px"`` if uncalibrated),
        ``source``, ``signal_title``, ``original_metadata`` (JSON string), and
        ``calibration_note`` when the calibration had to be assumed.

    Raises
    ------
    StackFileNotFoundError
        The path does not exist.
    FileFormatError
        Unsupported extension, or a truncated or corrupt file.
    StackShapeError
        Fewer than 2 or more than 5 dimensions, or no image in the file.
    StackDtypeError
        Not real-valued numeric data.
    FrameAxisError
        ``frame_axis`` is invalid, or a 3-D array looks like frames last.
    ParameterError
        ``chunks`` or ``signal`` is invalid, or the source is of an unsupported type.

    Examples
    --------
    >>> import numpy as np
    >>> stack = open_stack(np.zeros((4, 64, 64), dtype=np.uint16))
    >>> stack.dims, stack.attrs["unit"]
    (('frame', 'y', 'x'), 'px')
    """
    if isinstance(source, str | os.PathLike):
        raw = _read_path(Path(source).expanduser().absolute(), signal)
    elif signal is not None:
        raise ParameterError(
            f"signal={signal!r} selects one of several signals in a file; a "
            f"{type(source).__name__} is a single signal, so leave signal=None"
        )
    else:
        raw = raw_from_object(source)
    stack = assemble(raw, frame_axis, chunks)
    if raw.n_signals == 1 and isinstance(signal, numbers.Integral) and stack.ndim > 3:
        stack = _one_series(stack, int(signal), raw.source)
    return stack


def _one_series(stack: xr.DataArray, index: int, source: str) -> xr.DataArray:
    leading = stack.shape[:-3]
    n_series = math.prod(leading)
    if not 0 <= index < n_series:
        raise ParameterError(
            f"signal={index} is not a series of {source!r}: it holds one signal of "
            f"{n_series} series (dims {stack.dims[:-3]}, shape {leading}); pass an index "
            f"from 0 to {n_series - 1}"
        )
    one = stack[np.unravel_index(index, leading)]
    return one.assign_attrs(signal_title=f"{stack.attrs['signal_title']} (series {index})".strip())


def _read_path(path: Path, signal: int | str | None) -> RawStack:
    if not path.exists():
        raise StackFileNotFoundError(
            f"no such file or directory: {str(path)!r}; check the path (relative paths are "
            f"taken from the working directory {os.getcwd()!r})"
        )
    if is_zarr_store(path):
        return read_zarr(path, signal)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise FileFormatError(
            f"{str(path)!r} is a directory but not a Zarr store (no zarr.json, .zarray or "
            ".zgroup in it); pass a stack file or a store written by daskreg.io.ingest"
        )
    if suffix not in _FILE_READERS:
        raise FileFormatError(
            f"unsupported file extension {suffix or '(none)'!r} of {str(path)!r}; daskreg "
            f"reads {', '.join(SUPPORTED_EXTENSIONS)}. Convert the file to TIFF or pass the "
            "array itself"
        )
    return _FILE_READERS[suffix](path, signal)
