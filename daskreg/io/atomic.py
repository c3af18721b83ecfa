"""Write-then-rename, so that no output file is ever left half written."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daskreg.errors import OutputPathError

__all__ = ["atomic_path", "writable_folder"]


def writable_folder(target: str | os.PathLike, label: str) -> Path:
    """The folder ``target`` will be written in, checked before any work is done.

    Parameters
    ----------
    target : str or os.PathLike
        The output path.
    label : str
        How messages name the output, e.g. ``"the average 'avg.tif'"``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputPathError
        The folder does not exist, is a file, or cannot be written.
    """
    parent = Path(target).parent
    folder = parent if str(parent) else Path(".")
    if folder.is_file() or (not folder.exists() and any(p.is_file() for p in folder.parents)):
        raise OutputPathError(
            f"cannot write {label}: {str(folder)!r} is not a folder (part of that path is an "
            "existing file); use an output path inside an existing folder"
        )
    if not folder.is_dir():
        raise OutputPathError(
            f"cannot write {label}: folder {str(folder)!r} does not exist; create it first"
        )
    if not os.access(folder, os.W_OK):
        raise OutputPathError(
            f"cannot write {label}: folder {str(folder)!r} is not writable; choose another "
            "output folder"
        )
    return folder


@contextmanager
def atomic_path(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; rename it to ``target`` on success.

    On any exception, KeyboardInterrupt included, the temporary file or folder is
    removed and ``target`` is left as it was. The temporary name is in the same folder,
    so the rename is atomic; an existing folder (a Zarr store), which no rename
    replaces, is first moved aside, put back if the new one's rename fails, and removed
    after it.

    Raises
    ------
    OutputPathError
        The folder does not exist or cannot be written, or ``target`` exists and
        ``overwrite`` is False.
    """
    target = Path(target)
    folder = writable_folder(target, str(target))
    if target.exists() and not overwrite:
        raise OutputPathError(
            f"{target} already exists; remove it or pass overwrite=True (--overwrite)"
        )
    tag = uuid.uuid4().hex[:8]
    temp = folder / f".{target.name}.partial-{tag}"
    old = folder / f".{target.name}.old-{tag}"
    try:
        yield temp
        if target.is_dir() and not target.is_symlink():
            os.replace(target, old)
        os.replace(temp, target)
    except BaseException:
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise
    finally:
        for leftover in (temp, old):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover.exists() or leftover.is_symlink():
                leftover.unlink()
