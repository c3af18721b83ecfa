"""Frames of a folder (or of one growing file) as the acquisition writes them.

:func:`follow_folder` yields each frame once its file is complete, in acquisition order,
for :class:`daskreg.live.LiveRegistration` (see :func:`daskreg.live_sources.feed` and
``daskreg watch``). Files are read with the readers of :func:`~daskreg.io.open_stack`.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from daskreg.errors import FileFormatError, ParameterError, StackFileNotFoundError
from daskreg.io._files import _check_agrees, _open_file, natural_key
from daskreg.io._warn import warn_caller
from daskreg.io.follow_zarr import is_zarr_store, ready_frames, store_stamp

__all__ = ["follow_folder"]

# (size in bytes, modification time in ns) of a file; None while it cannot be seen.
_Stamp = tuple[int, int] | None


@dataclass
class _Followed:
    """One file of the followed folder and how far it has been read."""

    path: Path
    stamp: _Stamp = None
    # When ``stamp`` last changed (time.monotonic); the stamps of the last attempt to
    # read the file and of its last good read.
    changed_at: float = 0.0
    tried: _Stamp = None
    read_stamp: _Stamp = None
    taken: int = 0
    error: Exception | None = None


def _stamp(path: Path) -> _Stamp:
    if is_zarr_store(path):
        return store_stamp(path)
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def follow_folder(
    path: str | os.PathLike,
    *,
    pattern: str = "*.tif",
    quiet_seconds: float = 60.0,
    poll: float = 0.1,
    settle: float = 0.5,
    stop: threading.Event | None = None,
    frame_axis: int | None = None,
    signal: int | str | None = None,
) -> Iterator[np.ndarray]:
    """Yield the frames an acquisition writes into a folder, each once its file is complete.

    Parameters
    ----------
    path : str or os.PathLike
        The folder the acquisition writes one file per frame (or per few frames) into,
        or one multi-page TIFF it appends pages to.
    pattern : str, default "*.tif"
        Glob pattern of the frame files inside the folder (hidden files, such as a
        writer's ``.name.tmp``, are never frames). Ignored when ``path`` is a file.
    quiet_seconds : float, default 60
        Stop once nothing has happened for this long while waiting for frames: no
        file appeared or changed size, no frame was read (the time the caller spends
        on a frame between two ``next`` does not count).
    poll : float, default 0.1
        Seconds between two looks at the folder.
    settle : float, default 0.5
        Seconds a file's size and modification time must stay unchanged before it is
        read (see Notes).
    stop : threading.Event, optional
        Stop at the next look once set (another thread, a signal handler); frames of
        files already complete but not yet yielded are left unread.
    frame_axis, signal
        As for :func:`~daskreg.io.open_stack`, applied to every file.

    Yields
    ------
    numpy.ndarray, shape (ny, nx)
        The frames in acquisition order: files in natural order of their names
        (``frame_2`` before ``frame_10``, :func:`~daskreg.io.natural_key`), the frames
        of a file in its order.

    Raises
    ------
    StackFileNotFoundError
        ``path`` does not exist (raised by this call, before any frame).
    ParameterError
        ``quiet_seconds`` or ``poll`` is not positive, ``settle`` is negative, or
        ``pattern`` is empty.
    FileFormatError
        A file stopped changing but cannot be read, and nothing else happened for
        ``quiet_seconds`` (it blocks every later frame); or a file is an average
        written by daskreg.
    StackShapeError, StackDtypeError, CalibrationError
        A file disagrees with the first one (frame size, kind of pixel values, pixel
        size), as for a folder given to :func:`~daskreg.io.open_stack`.

    Warns
    -----
    RegistrationWarning
        A file appeared whose name sorts before a file already read; it is left out
        (its frame would be out of acquisition order).

    Notes
    -----
    A file is never read while it is being written. It is read once (1) its size and
    modification time have not changed for ``settle`` seconds, and (2) it then parses
    completely with its reader (for a TIFF: header, every page, and every page's data
    inside the file); a file that changed while it was read is read again later. A
    file that fails (2) is tried again whenever it changes, so a writer that pauses
    mid-file longer than ``settle`` is waited for. The files are taken in order: a
    file is finished, and the next one considered, once a later file exists and the
    file has been read since its last change.

    The last file (or ``path`` itself, if a file) may keep growing: each time it has
    settled again its new frames are yielded. This follows a multi-page TIFF whose
    pages are appended as one series (tifffile ``imwrite(..., append=True,
    metadata=None)``, or plain pages as most acquisition programs write them). A Zarr
    v3 store (``path`` itself) whose array grows along its first axis is followed too:
    its shape is written before its chunks, so a chunk's frames are taken once a later
    chunk is written, the last chunk's once the store is quiet (:mod:`.follow_zarr`).

    Examples
    --------
    >>> import tempfile, tifffile
    >>> from daskreg.synthetic import lattice_series
    >>> folder = tempfile.mkdtemp()
    >>> series = lattice_series(3, (64, 64), seed=0)
    >>> for k, frame in enumerate(series.stack):
    ...     tifffile.imwrite(f"{folder}/frame_{k}.tif", frame)
    >>> frames = list(follow_folder(folder, quiet_seconds=1.0, settle=0.0))
    >>> len(frames), frames[0].shape
    (3, (64, 64))
    """
    root = Path(path).expanduser().absolute()
    if not root.exists():
        raise StackFileNotFoundError(
            f"no such folder or file to follow: {str(root)!r}; create the folder the "
            "acquisition writes into first, or check the path"
        )
    for name, value, low in (("quiet_seconds", quiet_seconds, 0), ("poll", poll, 0)):
        if not value > low:
            raise ParameterError(f"{name}={value!r} must be a number of seconds above 0")
    if not settle >= 0:
        raise ParameterError(f"settle={settle!r} must be a number of seconds, 0 or more")
    if root.is_dir() and not pattern:
        raise ParameterError("pattern='' matches no file; pass a glob pattern such as '*.tif'")
    return _follow(
        root, pattern, float(quiet_seconds), float(poll), float(settle), stop, frame_axis, signal
    )


def _follow(
    root: Path,
    pattern: str,
    quiet_seconds: float,
    poll: float,
    settle: float,
    stop: threading.Event | None,
    frame_axis: int | None,
    signal: int | str | None,
) -> Iterator[np.ndarray]:
    stop = stop or threading.Event()
    files: list[_Followed] = []
    skipped: set[Path] = set()
    current = 0
    first: tuple[xr.DataArray, Path] | None = None
    last_event = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if _look(root, pattern, files, current, skipped, now):
            last_event = now
        while current < len(files) and not stop.is_set():
            followed = files[current]
            if followed.stamp != followed.tried and now - followed.changed_at >= settle:
                stack = _read(followed, frame_axis, signal, first)
                if stack is not None:
                    first = first or (stack, followed.path)
                    for frame in stack.values:
                        followed.taken += 1
                        yield frame
                        # Quiet is time spent waiting here, not the consumer's work.
                        last_event = time.monotonic()
                        if stop.is_set():
                            return
            done = followed.stamp == followed.read_stamp
            if not (done and current + 1 < len(files)):
                break
            current += 1
        if time.monotonic() - last_event >= quiet_seconds:
            blocked = files[current] if current < len(files) else None
            if blocked is not None and is_zarr_store(blocked.path):
                # The writer has stopped: the last chunk is complete too.
                stack = _read(blocked, frame_axis, signal, first, final=True)
                yield from ([] if stack is None else stack.values)
                return
            if blocked is not None and blocked.error is not None:
                raise FileFormatError(
                    f"{str(blocked.path)!r} stopped changing but cannot be read "
                    f"({blocked.error}), and nothing else happened for {quiet_seconds:g} s; "
                    "it holds back every later frame. Replace or remove it and follow again"
                )
            return
        stop.wait(poll)


def _look(
    root: Path, pattern: str, files: list[_Followed], current: int, skipped: set[Path], now: float
) -> bool:
    """Add new files, update the stamps of those not finished; whether anything changed."""
    changed = False
    if root.is_dir() and not is_zarr_store(root):
        known = {f.path for f in files} | skipped
        found = [
            p
            for p in root.glob(pattern)
            if p not in known and not p.name.startswith(".") and p.is_file()
        ]
        read = [f.path for f in files if f.read_stamp is not None]
        for p in found:
            if read and natural_key(p) < natural_key(read[-1]):
                skipped.add(p)
                warn_caller(
                    f"{str(p)!r} appeared after {read[-1].name!r} had been read, but its "
                    "name sorts before it; it is left out (its frames would be out of "
                    "acquisition order). Name the frames with numbers in acquisition order"
                )
                continue
            files.append(_Followed(p, changed_at=now))
            changed = True
        # A file sorting before the current one, still unread, is the next to read.
        files.sort(key=lambda f: natural_key(f.path))
    elif not files:
        files.append(_Followed(root, changed_at=now))
    for followed in files[current:]:
        stamp = _stamp(followed.path)
        if stamp != followed.stamp:
            followed.stamp, followed.changed_at = stamp, now
            changed = True
    return changed


def _read(
    followed: _Followed,
    frame_axis: int | None,
    signal: int | str | None,
    first: tuple[xr.DataArray, Path] | None,
    *,
    final: bool = False,
) -> xr.DataArray | None:
    """The file's stack, or None if it is not complete yet (``followed.error`` says why).

    Of a Zarr store, the frames whose chunks are written (:mod:`.follow_zarr`; ``final``:
    the writer has stopped).

    Raises
    ------
    DaskregError
        The file is complete but not a frame of this series (another frame size, an
        average written by daskreg, ...).
    """
    stamp = followed.tried = followed.stamp
    try:
        with warnings.catch_warnings():
            if first is not None:
                # The first file's warnings (calibration assumed, ...) stand for all.
                warnings.simplefilter("ignore")
            stack = _open_file(followed.path, frame_axis, signal, allow_external=False)
            # Only the frames not yielded yet, read here, so that a file changed while
            # it was read is caught below.
            ready = (
                ready_frames(followed.path, final=final) if is_zarr_store(followed.path) else None
            )
            stack = stack[followed.taken : ready].compute(scheduler="synchronous")
    except (FileFormatError, StackFileNotFoundError) as exc:
        # Truncated, damaged, or renamed away: incomplete until it changes again.
        followed.error = exc
        return None
    if _stamp(followed.path) != stamp:
        # Written to while it was read: the pixels may mix two states of the file.
        followed.tried = None
        return None
    if first is not None:
        _check_agrees(stack, followed.path, *first)
    followed.read_stamp, followed.error = stamp, None
    return stack
