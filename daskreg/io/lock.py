"""One run per output: lock files naming the run that holds them.

A batch system may start a job twice (a requeue while the first copy still runs), and
two runs writing one output or one checkpoint destroy each other's work. :func:`hold`
creates, beside each path, a lock file ``.<name>.daskreg-lock`` holding the owner's
host, process id and start time; a second run finds it and refuses, naming the first.
A lock whose owner is gone (same host, process no longer running, or its id reused by
a later process) is stale and taken over; on another host it cannot be checked, so the
message says how to remove it. Locks are files, not ``flock`` locks, so that they work
on the network file systems of clusters and name their owner.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from daskreg.errors import OutputInUseError

__all__ = ["LockOwner", "hold", "lock_file"]

_SUFFIX = ".daskreg-lock"
# Attempts to create a lock while stale ones are removed by others at the same time.
_ATTEMPTS = 5
# Process start times are recorded to the second by some systems.
_START_TOLERANCE = 1.0

# Locks this process holds -> how many times (nested holds of one path, e.g. the command
# line and the engine both holding the checkpoint).
_held: dict[Path, int] = {}
_held_lock = threading.Lock()


@dataclass(frozen=True)
class LockOwner:
    """The run holding a lock.

    Attributes
    ----------
    host : str
    pid : int
    started : str
        When the lock was taken (local time, ISO 8601).
    process_started : float
        The process's start time (seconds since the epoch), telling a reused id apart.
    """

    host: str
    pid: int
    started: str
    process_started: float

    @classmethod
    def me(cls) -> LockOwner:
        """The owner record of the calling process."""
        return cls(
            socket.gethostname(),
            os.getpid(),
            time.strftime("%Y-%m-%dT%H:%M:%S"),
            psutil.Process().create_time(),
        )

    def running(self) -> bool | None:
        """Whether the owner still runs; None when it is on another host."""
        if self.host != socket.gethostname():
            return None
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            started = process.create_time()
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:
            return True
        return abs(started - self.process_started) <= _START_TOLERANCE


def lock_file(path: str | os.PathLike) -> Path:
    """The lock file of ``path``: a hidden sibling, on the resolved path."""
    target = Path(path).expanduser().resolve()
    return target.with_name(f".{target.name}{_SUFFIX}")


def _read(lock: Path) -> LockOwner | None:
    try:
        return LockOwner(**json.loads(lock.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        # Damaged or foreign: no owner to check, so it is never taken for stale.
        return LockOwner("unknown host", -1, "unknown time", 0.0)


def _create(lock: Path, owner: LockOwner) -> bool:
    """Create ``lock`` holding ``owner``, complete when it appears; False if it exists."""
    temp = lock.with_name(f"{lock.name}.{uuid.uuid4().hex[:8]}")
    temp.write_text(json.dumps(asdict(owner)))
    try:
        os.link(temp, lock)
        return True
    except FileExistsError:
        return False
    except OSError:
        # No hard links here (some network or FAT file systems): exclusive creation.
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(asdict(owner)))
        return True
    finally:
        temp.unlink(missing_ok=True)


def _break_stale(lock: Path, stale: LockOwner) -> None:
    """Remove ``lock`` if it still holds ``stale`` (another run may have replaced it)."""
    aside = lock.with_name(f"{lock.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    if _read(aside) != stale:
        # A live run's lock, taken after we read the stale one: put it back.
        with contextlib.suppress(FileExistsError):
            os.link(aside, lock)
    aside.unlink(missing_ok=True)


def _refusal(kind: str, path: Path, lock: Path, owner: LockOwner) -> OutputInUseError:
    running = owner.running()
    who = f"host {owner.host}, pid {owner.pid}, started {owner.started}"
    if running:
        fix = f"wait for it to finish or stop it (kill {owner.pid})"
    else:
        fix = (
            f"wait for it to finish; if it no longer runs (its node was lost), delete {str(lock)!r}"
        )
    return OutputInUseError(
        f"the {kind} {str(path)!r} is in use by another daskreg run ({who}); {fix}, or "
        "choose another path"
    )


def _acquire(kind: str, path: Path, owner: LockOwner) -> Path:
    lock = lock_file(path)
    with _held_lock:
        if lock in _held:
            _held[lock] += 1
            return lock
    for _ in range(_ATTEMPTS):
        if _create(lock, owner):
            with _held_lock:
                _held[lock] = 1
            return lock
        found = _read(lock)
        if found is None:
            continue
        if found.running() is False:
            _break_stale(lock, found)
            continue
        raise _refusal(kind, path, lock, found)
    raise _refusal(kind, path, lock, _read(lock) or LockOwner("unknown host", -1, "?", 0.0))


def _release(lock: Path) -> None:
    with _held_lock:
        _held[lock] -= 1
        if _held[lock]:
            return
        del _held[lock]
    lock.unlink(missing_ok=True)


@contextlib.contextmanager
def hold(paths: Mapping[str, str | os.PathLike | None]) -> Iterator[None]:
    """Hold the lock of every path for the duration of the block.

    Parameters
    ----------
    paths : mapping
        Kind (``"average"``, ``"checkpoint"``, ...) -> path, named in messages; None
        entries are skipped. The paths need not exist; their folders must.

    Raises
    ------
    OutputInUseError
        Another run holds one of the locks (none is then held by this call).
    """
    owner = LockOwner.me()
    taken: list[Path] = []
    try:
        for kind, path in paths.items():
            if path is not None:
                taken.append(_acquire(kind, Path(path), owner))
        yield
    finally:
        for lock in reversed(taken):
            _release(lock)
