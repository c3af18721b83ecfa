"""Turn whatever the user passes into a labelled stack ``(..., frame, y, x)``."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from daskreg.io._layout import plan_layout

__all__ = ["as_stack"]


def as_stack(stack: Any) -> xr.DataArray:
    """A DataArray with dims ``(frame, y, x)`` from an array, DataArray, path or signal.

    Paths and HyperSpy signals go through :func:`daskreg.open_stack`; a numpy array is
    taken with frames on axis 0. The caller's data is never modified.

    Raises
    ------
    FrameAxisError
        A 3-D array looks like frames last, as :func:`daskreg.open_stack` refuses it.
    DaskregError
        Any error of :func:`daskreg.open_stack`.
    """
    if isinstance(stack, xr.DataArray) and stack.dims[-3:] == ("frame", "y", "x"):
        return stack
    if isinstance(stack, np.ndarray) and stack.ndim == 3:
        # The in-memory shortcut skips open_stack, but not its frames-last check.
        plan_layout([None] * 3, stack.shape, None)
        return xr.DataArray(
            stack,
            dims=("frame", "y", "x"),
            coords={
                name: np.arange(size)
                for name, size in zip(("frame", "y", "x"), stack.shape, strict=True)
            },
        )
    from daskreg.io import open_stack

    return open_stack(stack)
