"""HyperSpy signals, lazy or not, as a :class:`~daskreg.io._raw.RawStack`.

A lazy signal's dask graph is HyperSpy's: for some formats (TIFF) it holds an open file
handle, which cannot travel to the workers of a cluster ("Could not serialize object of
type _HLGExprSequence"). So a lazy signal is read through its file instead, with
daskreg's own reader, whose tasks open the file by its path: the file is the one HyperSpy
loaded it from (``signal.tmp_parameters``, else ``metadata.General.original_filename``
beside it), the array the one of that file with the signal's shape and dtype, and the
signal unchanged since (its first and last frames equal the file's). The signal's own
axes (calibration) and metadata are kept. A lazy signal whose file is unknown or was
changed since is computed into memory when it is small; a larger one is kept lazy if its
graph can be sent to workers, and refused otherwise, saying what to do.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from daskreg.errors import DaskregError, ParameterError
from daskreg.io._raw import RawStack
from daskreg.io._readers import FILE_EXTENSIONS, read_path
from daskreg.io._rsciio import raw_from_signal_dict

__all__ = ["is_hyperspy_signal", "raw_from_hyperspy"]

#: A lazy signal not read through its file is computed into memory up to this size ...
IN_MEMORY_BYTES = 2 * 2**30
# ... and at most this fraction of the machine's memory.
_MEMORY_FRACTION = 0.25


def is_hyperspy_signal(obj: object) -> bool:
    """True for a HyperSpy signal (duck-typed: daskreg never imports HyperSpy).

    Subclasses from extensions (daskreg's ``STEM_series``, exspy, pyxem) count too.
    """
    return hasattr(obj, "axes_manager") and any(
        cls.__module__.split(".")[0] == "hyperspy" for cls in type(obj).__mro__
    )


def raw_from_hyperspy(signal: Any) -> RawStack:
    """Describe a HyperSpy signal; a lazy one is read through its file when it can be.

    Parameters
    ----------
    signal : hyperspy.signal.BaseSignal
        A ``Signal2D``, lazy or not (its navigation axis is the frame axis).

    Returns
    -------
    RawStack
        ``source`` is the file read for a lazy signal read through its file, else the
        signal's type.

    Raises
    ------
    ParameterError
        A lazy signal that cannot be read through its file, is too large to compute
        into memory and whose graph cannot be sent to Dask workers.
    StackShapeError
        The signal is not an image stack.
    """
    type_name = f"{type(signal).__module__}.{type(signal).__qualname__}"
    manager = signal.axes_manager
    axes = sorted(
        (*manager.navigation_axes, *manager.signal_axes), key=lambda axis: axis.index_in_array
    )
    signal_dict = {
        "data": signal.data,
        "axes": [{**axis.get_axis_dictionary(), "navigate": axis.navigate} for axis in axes],
        "metadata": signal.metadata.as_dictionary(),
        "original_metadata": signal.original_metadata.as_dictionary(),
    }
    data = signal.data
    if not isinstance(data, da.Array):
        return raw_from_signal_dict(signal_dict, source=type_name)
    for path in _files_of(signal):
        stored = _same_array(path, data)
        if stored is not None:
            return raw_from_signal_dict({**signal_dict, "data": stored}, source=str(path))
    if data.nbytes <= _in_memory_limit():
        # In this process HyperSpy's graph computes (its file handles are local).
        values = data.compute(scheduler="synchronous")
        return raw_from_signal_dict({**signal_dict, "data": values}, source=type_name)
    reason = _unsendable(data)
    if reason is None:
        return raw_from_signal_dict(signal_dict, source=type_name)
    files = ", ".join(repr(str(p)) for p in _files_of(signal)) or "none recorded"
    raise ParameterError(
        f"cannot register this lazy {type(signal).__name__} ({data.nbytes / 2**30:.1f} GiB): "
        f"it is not the unchanged content of a file daskreg can read (file: {files}), it is "
        f"too large to compute into memory, and its dask graph cannot be sent to workers "
        f"({reason}). Save it first and register the file, e.g. signal.save('stack.zspy') "
        "then daskreg.ingest, or pass the path of the file it came from"
    )


def _files_of(signal: Any) -> list[Path]:
    """The existing files HyperSpy recorded the signal as loaded from, most recent first."""
    tmp = signal.tmp_parameters
    general = signal.metadata.get_item("General", None)
    candidates = []
    for folder, name, extension in (
        ("folder", "filename", "extension"),
        ("original_folder", "original_filename", "original_extension"),
    ):
        parts = [tmp.get_item(key, None) for key in (folder, name, extension)]
        if all(parts):
            candidates.append(Path(parts[0]) / f"{parts[1]}{parts[2]}")
    original = general.get_item("original_filename", None) if general is not None else None
    if original:
        for folder in (tmp.get_item("folder", None), tmp.get_item("original_folder", None)):
            if folder:
                candidates.append(Path(folder) / original)
    found = []
    for path in candidates:
        if path.suffix.lower() in FILE_EXTENSIONS and path.is_file() and path not in found:
            found.append(path)
    return found


def _same_array(path: Path, data: da.Array) -> da.Array | None:
    """The array of ``path`` holding what ``data`` holds, read by daskreg; None if none."""
    try:
        with warnings.catch_warnings():
            # Which signal of a several-signal file is found here, not asked of the user.
            warnings.simplefilter("ignore")
            # The signal holds what HyperSpy read through the file already, external
            # data included: reading it through the file reads nothing more.
            first = read_path(path, None, allow_external=True)
            raws = [first] + [
                read_path(path, k, allow_external=True) for k in range(1, first.n_signals)
            ]
    except DaskregError:
        return None
    for raw in raws:
        stored = raw.data
        if tuple(stored.shape) != tuple(data.shape) or np.dtype(stored.dtype) != data.dtype:
            continue
        if _equal_ends(stored, data):
            return da.asarray(stored)
    return None


def _equal_ends(stored: Any, data: da.Array) -> bool:
    """Whether the first and last frames agree with the file's.

    A signal changed since it was loaded (a lazy operation on it) no longer holds its
    file's values.
    """
    for index in (0, -1):
        ours = da.asarray(stored)[index].compute(scheduler="synchronous")
        theirs = data[index].compute(scheduler="synchronous")
        if not np.array_equal(ours, theirs, equal_nan=data.dtype.kind in "fc"):
            return False
    return True


def _in_memory_limit() -> int:
    try:
        import psutil
    except ModuleNotFoundError:
        return IN_MEMORY_BYTES
    return min(IN_MEMORY_BYTES, int(_MEMORY_FRACTION * psutil.virtual_memory().total))


def _unsendable(data: da.Array) -> str | None:
    """Why the graph of ``data`` cannot be sent to Dask workers, or None if it can."""
    try:
        from distributed.protocol import serialize
    except ModuleNotFoundError:
        return None
    # Distributed logs each failure with its traceback; here a failure is an answer.
    logger = logging.getLogger("distributed.protocol")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        serialize(data, on_error="raise")
    except Exception as exc:  # noqa: BLE001 - whatever fails, the graph cannot travel
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    finally:
        logger.setLevel(level)
    return None
