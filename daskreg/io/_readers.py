"""One path to a :class:`~daskreg.io._raw.RawStack`: the file reader chosen by extension."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from daskreg.errors import FileFormatError, StackFileNotFoundError
from daskreg.io._netcdf import NETCDF_EXTENSIONS, read_netcdf
from daskreg.io._raw import RawStack
from daskreg.io._rsciio import RSCIIO_EXTENSIONS, read_rsciio
from daskreg.io._tiff import TIFF_EXTENSIONS, read_tiff
from daskreg.io._zarr import is_zarr_store, read_zarr
from daskreg.io.containment import check_inside

__all__ = ["FILE_EXTENSIONS", "SUPPORTED_EXTENSIONS", "read_path"]

_FileReader = Callable[[Path, int | str | None], RawStack]

_FILE_READERS: dict[str, _FileReader] = {
    **dict.fromkeys(RSCIIO_EXTENSIONS, read_rsciio),
    **dict.fromkeys(TIFF_EXTENSIONS, read_tiff),
    **dict.fromkeys(NETCDF_EXTENSIONS, read_netcdf),
}

#: Extensions of single-file stacks (every supported one but the ``.zarr`` directory).
FILE_EXTENSIONS: tuple[str, ...] = tuple(sorted(_FILE_READERS))

#: Extensions :func:`~daskreg.io.open_stack` reads (``.zarr`` is a directory store).
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(sorted((*_FILE_READERS, ".zarr")))


def read_path(path: Path, signal: int | str | None, *, allow_external: bool = False) -> RawStack:
    """Read one file or Zarr store with the reader its extension names.

    Parameters
    ----------
    path : pathlib.Path
        Absolute path of a file or a Zarr store.
    signal : int, str or None
        Which signal of a file holding several; see :func:`~daskreg.io.open_stack`.
    allow_external : bool
        Read data the file points to outside its folder
        (:func:`~daskreg.io.containment.check_inside`).

    Returns
    -------
    RawStack

    Raises
    ------
    StackFileNotFoundError
        The path does not exist.
    FileFormatError
        A directory that is not a Zarr store, an unsupported extension, or what the
        reader raises for a damaged file.
    ExternalDataError
        The file points to data outside its folder and ``allow_external`` is False.
    """
    if not path.exists():
        raise StackFileNotFoundError(
            f"no such file or directory: {str(path)!r}; check the path (relative paths are "
            f"taken from the working directory {os.getcwd()!r})"
        )
    # Before any reader: no byte from outside is read, even for its metadata.
    check_inside(path, allow_external=allow_external)
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
