"""A stop signal handled inside a Python callback of C code is not lost.

Python drops an exception raised in such a callback ("Exception ignored in ...", with a
traceback on stderr); numba's compiler calls back into Python while it caches a kernel,
so a Ctrl-C or SIGTERM at that moment was printed as a traceback and forgotten.
"""

from __future__ import annotations

import signal
import sys
import time
from types import SimpleNamespace

import pytest

from daskreg.cli.signals import Interrupted, stopping_on_signals


def test_an_interrupt_dropped_in_a_callback_is_raised_again():
    with pytest.raises(Interrupted) as caught, stopping_on_signals():
        # What CPython does with an exception a C callback cannot propagate.
        sys.unraisablehook(SimpleNamespace(exc_value=Interrupted(signal.SIGTERM)))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.01)
    assert caught.value.signum == signal.SIGTERM


def test_other_unraisable_errors_go_to_pythons_hook(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "__unraisablehook__", seen.append)
    error = SimpleNamespace(exc_value=ValueError("x"))
    with stopping_on_signals():
        sys.unraisablehook(error)
    assert seen == [error]
