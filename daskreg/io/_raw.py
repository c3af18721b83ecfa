"""What every reader hands over: the array as stored and what is known about its axes.

Also how reader failures become :class:`~daskreg.errors.FileFormatError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from daskreg.errors import DaskregError, FileFormatError

__all__ = ["READER_ERRORS", "Axis", "RawStack", "guarded", "reading"]


@dataclass(frozen=True)
class Axis:
    """One axis of a stored array, in the array's own order.

    Attributes
    ----------
    name : str or None
        ``"frame"``, ``"y"`` or ``"x"`` when the source says which axis this is, another
        name to keep for a leading axis, or ``None`` when the source does not say.
    scale, offset : float
        Calibration: coordinate of index ``i`` is ``offset + i * scale`` in ``unit``.
    unit : str
        The unit as the source spells it (normalised later).
    values : numpy.ndarray or None
        Explicit coordinates (from an xarray input); they take precedence over
        ``scale``/``offset`` for frame and leading axes.
    """

    name: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    values: np.ndarray | None = None


@dataclass
class RawStack:
    """An image stack as a reader found it, before axes are put in (…, frame, y, x) order.

    Attributes
    ----------
    data : Any
        A dask or numpy array, or any array-like with ``shape``, ``dtype`` and slicing.
    axes : tuple of Axis
        One entry per axis of ``data``.
    source : str
        The path read, or the type of the object passed.
    signal_title : str
        The title the source gives the signal, ``""`` if none.
    original_metadata : Any
        The source's own metadata tree; encoded to JSON later.
    n_signals : int
        Signals the source holds; with one, an integer ``signal`` picks one of its series
        (:func:`~daskreg.io.open_stack`).
    own_chunks : bool
        ``data`` is chunked as the source stores it (a Zarr store, or an HDF5 dataset
        of an ``.nc`` or ``.hspy`` file stored in chunks): its frame chunks are kept,
        when whole along y and x, unless ``chunks`` says otherwise.
    """

    data: Any
    axes: tuple[Axis, ...]
    source: str
    signal_title: str = ""
    original_metadata: Any = field(default_factory=dict)
    n_signals: int = 1
    own_chunks: bool = False


# What a parser fed a damaged file raises is open-ended: struct.error, KeyError and
# ValueError from header parsing, RuntimeError from h5py and the Zstd codec, rsciio's own
# exception classes (which derive from Exception), even UnboundLocalError from a parser bug;
# MemoryError when a corrupt size field asks for an absurd allocation. Whatever it is, the
# file cannot be read; the original stays chained to the FileFormatError (``--debug``).
READER_ERRORS = (Exception,)
_REASON_CHARS = 300


@contextmanager
def reading(path: Path, format_name: str) -> Iterator[None]:
    """Re-raise a reader's failure as :class:`FileFormatError` naming the file.

    Parameters
    ----------
    path : pathlib.Path
        The file being read.
    format_name : str
        Human-readable format, e.g. ``"Gatan DigitalMicrograph"``.
    """
    try:
        yield
    except DaskregError:
        raise
    except READER_ERRORS as exc:
        # One line of bounded length: parsers put whole headers into their messages.
        reason = " ".join(str(exc).split())[:_REASON_CHARS].rstrip(".")
        raise FileFormatError(
            f"cannot read {str(path)!r} as {format_name}: {type(exc).__name__}: {reason}. "
            "The file is truncated, corrupt or not of this format; copy it again from the "
            "acquisition computer or re-export it, and check that the extension matches "
            "the content."
        ) from exc


def guarded(data: Any, path: Path, format_name: str) -> da.Array:
    """A lazy view of a file's array whose reads fail as :class:`FileFormatError`.

    Readers open files lazily, so a truncated or corrupt chunk is often met only when
    the pixels are computed, deep in a Dask graph; this view turns the reader's failure
    there into the same error as at open time, naming the file.

    Parameters
    ----------
    data : array-like or dask.array.Array
        What the reader returned; a dask array keeps its chunks.
    path : pathlib.Path
        The file (or store) read.
    format_name : str
        As for :func:`reading`.

    Returns
    -------
    dask.array.Array
        Same shape, dtype and chunks as ``data``.
    """
    view = _GuardedArray(data, path, format_name)
    chunks = data.chunks if getattr(data, "chunks", None) is not None else "auto"
    meta = np.empty((0,) * view.ndim, dtype=view.dtype)
    return da.from_array(view, chunks=chunks, fancy=False, meta=meta)


class _GuardedArray:
    """Slicing of a reader's array inside :func:`reading`; see :func:`guarded`."""

    def __init__(self, data: Any, path: Path, format_name: str) -> None:
        self._data = data
        self._path = path
        self._format_name = format_name
        self.shape = tuple(int(n) for n in data.shape)
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        with reading(self._path, self._format_name):
            block = self._data[key]
            if isinstance(block, da.Array):
                # In this task's thread: a nested compute on a cluster's only worker
                # thread would wait for itself.
                block = block.compute(scheduler="synchronous")
            return np.asarray(block)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        # Names must not change between runs (checkpoints compare them), but must change
        # with the file.
        stat = self._path.stat()
        return (str(self._path), stat.st_mtime_ns, stat.st_size, tokenize(self._data))
