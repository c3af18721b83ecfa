"""Write-then-rename, so that no output file is ever left half written."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daskreg.errors import OutputPathError

__all__ = ["atomic_path"]


@contextmanager
def atomic_path(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; rename it to ``target`` on success.

    On any exception the temporary file or folder is removed and ``target`` is left as
    it was. The temporary name is in the same folder, so the rename is atomic.

    Raises
    ------
    OutputPathError
        The folder does not exist or cannot be written, or ``target`` exists and
        ``overwrite`` is False.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputPathError(
            f"cannot write {target}: folder {folder} does not exist; create it first"
        )
    if not os.access(folder, os.W_OK):
        raise OutputPathError(
            f"cannot write {target}: folder {folder} is not writable; choose another output path"
        )
    if target.exists() and not overwrite:
        raise OutputPathError(
            f"{target} already exists; remove it or pass overwrite=True (--overwrite)"
        )
    temp = folder / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        yield temp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(temp, target)
    finally:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        elif temp.exists():
            temp.unlink()
