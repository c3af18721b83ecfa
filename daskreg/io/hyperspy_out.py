"""Averages and registered stacks back to HyperSpy, with calibrated axes.

HyperSpy is optional: it is imported only when one of these functions is called.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from daskreg.errors import StackShapeError
from daskreg.io.atomic import atomic_path

__all__ = ["to_signal2d", "save_hspy"]

_IMAGE_DIMS = ("y", "x")


def to_signal2d(array: xr.DataArray, *, title: str | None = None) -> Any:
    """A HyperSpy ``Signal2D`` (lazy if ``array`` is dask-backed) with calibrated axes.

    Parameters
    ----------
    array : xarray.DataArray
        An average ``(y, x)`` or a stack ``(..., frame, y, x)``; dims ``y`` and ``x``
        (else the last two) become the signal axes, the others navigation axes.
    title : str, optional
        Signal title; default the array's name.

    Returns
    -------
    hyperspy.signals.Signal2D or hyperspy.signals.LazySignal2D
        Each axis has the dimension's name, and scale, offset and units from its
        coordinate (evenly spaced) or, for y and x without one, from the attrs
        ``pixel_size`` and ``unit``. The attrs are kept as JSON under
        ``original_metadata.daskreg``.

    Raises
    ------
    StackShapeError
        Fewer than two dimensions.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> image = xr.DataArray(np.zeros((4, 5)), dims=("y", "x"), attrs={"pixel_size": (0.1, 0.2)})
    >>> to_signal2d(image).axes_manager["x"].scale
    0.2
    """
    import hyperspy.api as hs

    if array.ndim < 2:
        raise StackShapeError(
            f"a Signal2D needs at least 2 dimensions, got dims {array.dims}; pass an image "
            "(y, x) or a stack (frame, y, x)"
        )
    image = tuple(d for d in _IMAGE_DIMS if d in array.dims)
    if len(image) < 2:
        image = array.dims[-2:]
    array = array.transpose(..., *image)
    axes = [_axis(array, dim, navigate=dim not in image) for dim in array.dims]
    lazy = isinstance(array.data, da.Array)
    kind = hs.signals.LazySignal2D if lazy else hs.signals.Signal2D
    signal = kind(array.data, axes=axes)
    signal.metadata.General.title = title if title is not None else str(array.name or "")
    signal.original_metadata.add_dictionary(
        {"daskreg": {str(k): json.dumps(v, default=str) for k, v in array.attrs.items()}}
    )
    return signal


def save_hspy(array: xr.DataArray, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write ``array`` as a HyperSpy ``.hspy`` file, atomically (see :func:`to_signal2d`).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    signal = to_signal2d(array, title=title)
    with atomic_path(path) as temp:
        # The temporary name has no .hspy suffix, so the format is named explicitly.
        signal.save(temp, file_format="HSPY", overwrite=True)
    return path


def _axis(array: xr.DataArray, dim: Hashable, *, navigate: bool) -> dict[str, Any]:
    scale, offset, units = 1.0, 0.0, ""
    if dim in array.coords and np.issubdtype(array[dim].dtype, np.number) and array[dim].size:
        values = array[dim].values.astype(np.float64)
        offset = float(values[0])
        scale = float((values[-1] - values[0]) / (values.size - 1)) if values.size > 1 else 1.0
        units = str(array[dim].attrs.get("units", ""))
    elif dim in _IMAGE_DIMS and array.attrs.get("pixel_size") is not None:
        scale = float(array.attrs["pixel_size"][_IMAGE_DIMS.index(dim)])
    if dim in _IMAGE_DIMS and not units:
        units = str(array.attrs.get("unit", ""))
    return {
        "name": str(dim),
        "size": int(array.sizes[dim]),
        "scale": scale,
        "offset": offset,
        "units": units,
        "navigate": navigate,
    }
