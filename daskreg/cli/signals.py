"""SIGTERM and SIGHUP stop a command as Ctrl-C does.

Batch systems (SLURM, PBS) end a job with SIGTERM, and a closed terminal sends SIGHUP;
by default either kills the process at once, leaving the spilled spectra in the temp
folder and outputs half written. :func:`stopping_on_signals` turns each into
:class:`Interrupted`, a :class:`KeyboardInterrupt`, so that every ``finally`` and
``except KeyboardInterrupt`` runs: the engine removes its scratch, the outputs are
rolled back, and :func:`daskreg.cli.main` prints the resume line and exits with
128 + the signal's number (130, 143, 129), as a shell reports a process killed by it.

Inside :func:`deferred` (the few renames that commit the outputs) a signal is held and
raised when the block ends, so that the outputs are never left half replaced. Inside
:func:`stopping_gently` (``daskreg watch``, whose normal end is Ctrl-C) the first signal
only sets an event, so that the work ends at its next check and writes its result; a
second one stops it as above.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = ["STOP_SIGNALS", "Interrupted", "deferred", "stopping_gently", "stopping_on_signals"]

#: The signals that stop a command cleanly.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupted(KeyboardInterrupt):
    """A stop signal was received; ``signum`` is its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    stopping: int | None = None
    deferring = 0
    pending: int | None = None


_state = _State()


def _handler(signum: int, frame: object) -> None:
    if _state.stopping is not None:
        # Already stopping: the clean-up runs to its end rather than being cut short.
        return
    if _state.deferring:
        _state.pending = signum
        return
    _state.stopping = signum
    raise Interrupted(signum)


def _unraisable(unraisable: object) -> None:
    """Raise an :class:`Interrupted` that Python dropped again, where it can propagate.

    A signal handled while the main thread runs a Python callback of C code (numba's
    compiler notifying its object cache, say) raises inside the callback, where Python
    can only print "Exception ignored in ..." with a traceback and go on: the stop
    would be lost and the user would see the traceback. The signal is sent again; its
    handler then runs at the next line of Python outside the callback.
    """
    error = getattr(unraisable, "exc_value", None)
    if isinstance(error, Interrupted):
        _state.stopping = None
        # From another thread, a moment later: raised here, inside the hook, it would be
        # dropped again.
        threading.Timer(0.01, signal.raise_signal, args=(error.signum,)).start()
        return
    sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def _callbacks_reraise() -> Iterator[None]:
    previous, sys.unraisablehook = sys.unraisablehook, _unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` inside the block.

    Signals ignored on entry stay ignored; the previous handlers are restored on exit.
    Outside the main thread (where Python cannot set handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal ignored on entry stays ignored: ``nohup`` (SIGHUP) and a shell's
    # background jobs (SIGINT) ask for that.
    previous = {
        signum: signal.signal(signum, _handler)
        for signum in STOP_SIGNALS
        if signal.getsignal(signum) is not signal.SIG_IGN
    }
    _state.stopping = _state.pending = None
    try:
        with _callbacks_reraise():
            yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state.stopping = _state.pending = None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold stop signals during the block; one received is raised when it ends.

    Raises
    ------
    Interrupted
        After the block, if a stop signal arrived during it.
    """
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
        if not _state.deferring and _state.pending is not None:
            # Raised even if the block failed: the exit status tells of the signal.
            signum, _state.pending = _state.pending, None
            _state.stopping = signum
            raise Interrupted(signum)


@contextlib.contextmanager
def stopping_gently(stop: threading.Event) -> Iterator[list[int]]:
    """Inside the block, the first stop signal sets ``stop`` instead of raising.

    The yielded list receives that signal's number. A second signal raises
    :class:`Interrupted` as :func:`stopping_on_signals` does, so an impatient user can
    still abandon the work. Outside the main thread the block runs unchanged.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def first(signum: int, frame: object) -> None:
        if received:
            _handler(signum, frame)
            return
        received.append(signum)
        stop.set()

    # Only the signals this command stops on: one ignored on entry stays ignored.
    previous = {
        signum: signal.signal(signum, first)
        for signum in STOP_SIGNALS
        if signal.getsignal(signum) is not signal.SIG_IGN
    }
    try:
        with _callbacks_reraise():
            yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
