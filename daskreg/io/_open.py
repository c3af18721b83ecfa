"""``open_stack``: any supported source to a lazy, calibrated (…, frame, y, x) DataArray."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from daskreg.errors import ParameterError
from daskreg.io._assemble import assemble
from daskreg.io._chunks import ChunksSpec
from daskreg.io._files import check_file_order, describe_files, expand_path, open_files
from daskreg.io._hyperspy import is_hyperspy_signal, raw_from_hyperspy
from daskreg.io._objects import raw_from_object
from daskreg.io._readers import SUPPORTED_EXTENSIONS, read_path
from daskreg.io.containment import check_folder

__all__ = ["SUPPORTED_EXTENSIONS", "open_stack"]


def open_stack(
    source: Any,
    frame_axis: int | None = None,
    *,
    chunks: ChunksSpec = None,
    signal: int | str | None = None,
    allow_external: bool = False,
) -> xr.DataArray:
    """Open an image stack lazily as a calibrated, dask-backed DataArray.

    Parameters
    ----------
    source : str, os.PathLike, list of paths, array-like, xarray.DataArray or HyperSpy signal
        A file or Zarr store with one of :data:`SUPPORTED_EXTENSIONS`; several files read
        as one stack, each holding one image or a few frames: a folder of them, a glob
        pattern (``"frames/*.tif"``, ``**`` for subfolders) or a list of paths; a numpy/dask
        array (frames on axis 0 unless ``frame_axis`` says otherwise); a DataArray (dims
        ``frame``, ``y``, ``x`` are taken by name, in any order); a HyperSpy ``Signal2D``,
        lazy or not (its navigation axis is the frame axis; a lazy one is read through
        the file it was loaded from, see :mod:`daskreg.io._hyperspy`).
    frame_axis : int or None
        Axis of the source (of each file, for several files) holding the frames, e.g.
        ``-1`` for (rows, cols, frames) arrays. ``None``: the source's own axis names,
        else axis 0 (axis ``ndim - 3`` for 4-D and 5-D arrays, whose leading axes become
        ``series``).
    chunks : int, dict or None
        Frames per dask chunk, or a chunk size per dimension name. ``None``: the
        frames per chunk of a Zarr store or of an HDF5 dataset stored in chunks
        (``.nc``, ``.hspy``) whose chunks hold whole frames, else as many whole frames
        as fit in 64 MiB. y and x are never split. The Dask engine makes chunks
        smaller if their tasks would not fit its workers' memory.
    signal : int, str or None
        For a file holding several signals (images, plots, arrays), the index or title of
        the one to read. ``None`` takes the largest image stack, with a
        :class:`~daskreg.errors.RegistrationWarning` when there was a choice. For a file
        holding one signal with leading dims (an ImageJ hyperstack's channels, a 4-D
        store's series), an index picks one series (in C order over the leading dims):
        the result is one ``(frame, y, x)`` stack.
    allow_external : bool, default False
        Read data a file points to outside its folder: HDF5 external links, external
        storage or virtual datasets, OME-TIFF parts named in its OME-XML, symlinks in a
        Zarr store leading out of it. Refused by default, so that a file made to point
        at another file (a key, another user's data) cannot pull it into the outputs
        (:mod:`daskreg.io.containment`).

    Returns
    -------
    xarray.DataArray
        Dims ``("frame", "y", "x")``, preceded by leading dims for 4-D/5-D data; a single
        image gives one frame. Coordinates ``y``/``x`` in physical units, ``frame`` in
        time units if the source calibrates frames in time, else the frame index. attrs:
        ``pixel_size`` (py, px), ``unit`` (lengths in ``"nm"``; ``"px"`` if uncalibrated),
        ``source``, ``signal_title``, ``original_metadata`` (JSON string),
        ``input_path`` (the path given, absolute; never an output) and
        ``calibration_note`` when the calibration had to be assumed. Several files give
        one frame per image of each file, in order, the first file's ``y``/``x`` and
        attrs, ``source`` the folder, pattern or list, and ``n_files``.

    Notes
    -----
    A folder's files (those with a stack file extension, hidden files aside) and a
    pattern's matches are taken in natural order, ``frame_2`` before ``frame_10``
    (:func:`~daskreg.io.natural_key`); a list in its own order. Every file is opened
    once for its shape, dtype and calibration; its pixels are read by one dask task per
    file, which opens the file by its path. Warnings about the first file (a signal
    chosen, a unit assumed) stand for all files.

    Raises
    ------
    StackFileNotFoundError
        The path does not exist, or the pattern matches nothing.
    FileFormatError
        Unsupported extension, a truncated or corrupt file, a folder without stack files
        or with files of several formats.
    StackShapeError
        Fewer than 2 or more than 5 dimensions, or no image in the file; of several
        files, one holds frames of another size than the first or several series.
    StackDtypeError
        Not real-valued numeric data; of several files, one holds integers and another
        floats.
    CalibrationError
        Of several files, one has another pixel size or unit than the first.
    FrameAxisError
        ``frame_axis`` is invalid, or a 3-D array looks like frames last.
    ParameterError
        ``chunks`` or ``signal`` is invalid, or the source is of an unsupported type.
    ExternalDataError
        A file points to data outside its folder, and ``allow_external`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> stack = open_stack(np.zeros((4, 64, 64), dtype=np.uint16))
    >>> stack.dims, stack.attrs["unit"]
    (('frame', 'y', 'x'), 'px')
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source).expanduser().absolute()
        files = expand_path(path)
        if files is not None:
            if path.is_dir():
                check_folder(path, files, allow_external=allow_external)
            several = open_files(
                files, frame_axis, chunks, signal, source=str(path), allow_external=allow_external
            )
            return _read_from(several, path)
        raw = read_path(path, signal, allow_external=allow_external)
    elif _is_path_list(source):
        files = [Path(p).expanduser().absolute() for p in source]
        check_file_order(files)
        return open_files(
            files,
            frame_axis,
            chunks,
            signal,
            source=describe_files(files),
            allow_external=allow_external,
        )
    elif signal is not None:
        raise ParameterError(
            f"signal={signal!r} selects one of several signals in a file; a "
            f"{type(source).__name__} is a single signal, so leave signal=None"
        )
    elif is_hyperspy_signal(source):
        raw = raw_from_hyperspy(source)
    else:
        raw = raw_from_object(source)
    stack = assemble(raw, frame_axis, chunks)
    if raw.n_signals == 1 and isinstance(signal, numbers.Integral) and stack.ndim > 3:
        stack = _one_series(stack, int(signal), raw.source)
    return _read_from(stack, path) if isinstance(source, str | os.PathLike) else stack


def _read_from(stack: xr.DataArray, path: Path) -> xr.DataArray:
    # The path read, which outputs may never replace (``source`` is where the data came
    # from first: a Zarr store made by ingest keeps its original file's).
    stack.attrs["input_path"] = str(path)
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


def _is_path_list(source: Any) -> bool:
    return (
        isinstance(source, list | tuple)
        and len(source) > 0
        and all(isinstance(p, str | os.PathLike) for p in source)
    )
