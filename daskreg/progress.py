"""Progress of a registration: shown on a terminal or when asked, never in logs.

:func:`enabled` resolves ``progress=None`` (the default) to "the user is watching": a
terminal on stderr, or a Jupyter kernel. :class:`Counter` is a one-line text bar on
stderr counting units of work (pairs measured, frames averaged), redrawn at most a few
times per second; the numpy engine drives it. :func:`announce_compile` says, once, that
the numba kernels are being compiled (a new install's first run pays seconds for it).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["COMPILE_NOTE", "Counter", "announce_compile", "enabled", "kernels_cold"]

#: Printed to stderr, once per process, while the kernels compile.
COMPILE_NOTE = "daskreg: compiling kernels (first run only)"

# Redraws per second at most: a bar that redraws per batch floods slow terminals.
_REDRAW = 0.2
_WIDTH = 30
_announced = False


def enabled(progress: bool | None, stream: TextIO | None = None) -> bool:
    """Whether to show progress: as asked, else when someone is watching.

    Parameters
    ----------
    progress : bool or None
        True or False as asked; None: when ``stream`` (default ``sys.stderr``) is a
        terminal, or in a Jupyter kernel. Redirected to a file (a batch job's log), no
        bar: it would write hundreds of updates there.
    stream : file, optional
    """
    if progress is not None:
        return bool(progress)
    stream = sys.stderr if stream is None else stream
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return terminal or _in_jupyter()


def _in_jupyter() -> bool:
    """Whether this is a Jupyter kernel (IPython's shell of a kernel, not a terminal's)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


class Counter:
    """A text progress bar on stderr: ``daskreg: pairs  [#####.....]  63/120``.

    Thread-safe: the numpy engine's threads call :meth:`advance` as their batches end.

    Parameters
    ----------
    label : str
        What is counted (``"pairs"``, ``"frames"``).
    total : int
    show : bool
        False: count silently (nothing is written).
    stream : file, optional
        Default ``sys.stderr``, read when the bar is drawn.
    """

    def __init__(self, label: str, total: int, *, show: bool, stream: TextIO | None = None):
        self.label, self.total, self.show = label, max(int(total), 0), show
        self.done = 0
        self._stream = stream
        self._lock = threading.Lock()
        self._drawn = -float("inf")

    def __enter__(self) -> Counter:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._draw(force=True)
        if self.show:
            print(file=self._out(), flush=True)

    def advance(self, n: int) -> None:
        """Count ``n`` more units done."""
        with self._lock:
            self.done = min(self.done + int(n), self.total)
            self._draw()

    def _out(self) -> TextIO:
        return sys.stderr if self._stream is None else self._stream

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.show or (not force and now - self._drawn < _REDRAW):
            return
        self._drawn = now
        filled = _WIDTH * self.done // self.total if self.total else _WIDTH
        bar = "#" * filled + "." * (_WIDTH - filled)
        print(
            f"\rdaskreg: {self.label:<7}[{bar}] {self.done}/{self.total}",
            end="",
            file=self._out(),
            flush=True,
        )


def kernels_cold() -> bool:
    """Whether numba's cache lacks a kernel every registration compiles.

    Reads numba's cache index (as numba does before compiling: a stale index, from
    other sources or another numba, counts as missing). Unknown cache layouts count as
    warm, so that a numba upgrade can at worst silence the note.
    """
    from daskreg.kernels import correlate, maxima

    try:
        return any(
            not kernel._cache._cache_file._load_index()
            for kernel in (correlate.centre_and_window, maxima._search)
        )
    except Exception:  # noqa: BLE001 - numba internals; the note is a courtesy
        return False


def announce_compile(stream: TextIO | None = None) -> bool:
    """Print :data:`COMPILE_NOTE` to stderr if the kernels are not compiled yet.

    Once per process; returns whether it printed. Printed whether or not progress is
    shown, logs included: it explains the seconds the first run waits.
    """
    global _announced
    if _announced or not kernels_cold():
        return False
    _announced = True
    print(COMPILE_NOTE, file=sys.stderr if stream is None else stream, flush=True)
    return True
