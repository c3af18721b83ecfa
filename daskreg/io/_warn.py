"""Warnings attributed to the user's call, however deep inside daskreg.io they arise."""

from __future__ import annotations

import sys
import warnings

from daskreg.errors import RegistrationWarning

__all__ = ["warn_caller"]


def warn_caller(message: str) -> None:
    """Emit a :class:`RegistrationWarning` pointing at the first frame outside daskreg.

    Parameters
    ----------
    message : str
        What was decided and how to decide otherwise.
    """
    # Readers sit at different depths below open_stack, so a fixed stacklevel would blame
    # daskreg's own modules for some of them.
    frame = sys._getframe(0)
    level = 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("daskreg"):
        frame = frame.f_back
        level += 1
    warnings.warn(message, RegistrationWarning, stacklevel=level)
