"""In-memory sources: numpy/dask arrays and array-likes, xarray DataArrays.

HyperSpy signals: :mod:`daskreg.io._hyperspy`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from daskreg.errors import ParameterError
from daskreg.io._raw import Axis, RawStack

__all__ = ["raw_from_dataarray", "raw_from_object"]

# Attributes daskreg writes itself; anything else on a DataArray is the user's metadata.
_OWN_ATTRS = ("pixel_size", "unit", "source", "signal_title", "original_metadata")
# xarray names unnamed dimensions dim_0, dim_1 ...; those carry no meaning.
_UNNAMED_DIM = re.compile(r"dim_\d+")
_IMAGE_DIMS = ("y", "x")
# Relative tolerance on coordinate steps: coordinates round-tripped through text or float32
# are not exactly even, a real non-uniform grid is off by far more.
_STEP_RTOL = 1e-4


def raw_from_object(obj: Any) -> RawStack:
    """Describe an in-memory stack.

    Parameters
    ----------
    obj : array-like or xarray.DataArray
        Any object with ``shape``, ``dtype`` and slicing (numpy, dask, zarr, h5py ...),
        or a DataArray.

    Returns
    -------
    RawStack

    Raises
    ------
    ParameterError
        The object is none of these.
    """
    type_name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if isinstance(obj, xr.DataArray):
        return raw_from_dataarray(obj, default_source=type_name)
    if all(hasattr(obj, name) for name in ("shape", "dtype", "__getitem__")):
        return RawStack(data=obj, axes=tuple(Axis() for _ in obj.shape), source=type_name)
    raise ParameterError(
        f"cannot read a stack from a {type_name}; pass a file path, a numpy or dask array, "
        "an xarray DataArray or a HyperSpy Signal2D (wrap lists with np.asarray, pick a "
        "variable of a Dataset with dataset['name'])"
    )


def raw_from_dataarray(array: xr.DataArray, default_source: str) -> RawStack:
    """Describe a DataArray, reading calibration from its coordinates and attributes.

    Parameters
    ----------
    array : xarray.DataArray
        Dimensions named ``frame``, ``y``, ``x`` are taken by name; unnamed ones
        (``dim_0`` ...) by position. Numeric y/x coordinates give the pixel size (they win
        over a ``pixel_size`` attribute, which slicing leaves stale); other coordinates of
        frame and leading dimensions are kept as they are.
    default_source : str
        ``source`` when the array has no ``source`` attribute.

    Returns
    -------
    RawStack
    """
    attrs = array.attrs
    return RawStack(
        data=array.data,
        axes=tuple(_dataarray_axis(array, dim) for dim in array.dims),
        source=str(attrs.get("source", default_source)),
        signal_title=str(attrs.get("signal_title", array.name if array.name is not None else "")),
        original_metadata=_dataarray_metadata(attrs),
    )


def _dataarray_axis(array: xr.DataArray, dim: Hashable) -> Axis:
    name = None if _UNNAMED_DIM.fullmatch(str(dim)) else str(dim)
    coord = array.coords[dim] if dim in array.coords else None
    unit = coord.attrs.get("units", "") if coord is not None else ""
    if name not in _IMAGE_DIMS:
        return Axis(name=name, unit=unit, values=None if coord is None else coord.values)
    unit = unit or array.attrs.get("unit", "")
    if coord is not None and np.issubdtype(coord.dtype, np.number) and coord.size > 1:
        return _axis_from_coordinate(name, coord.values, unit)
    pixel_size = array.attrs.get("pixel_size")
    scale = pixel_size[_IMAGE_DIMS.index(name)] if _is_pair(pixel_size) else 1.0
    offset = float(coord.values[0]) if coord is not None and coord.size == 1 else 0.0
    return Axis(name=name, scale=float(scale), offset=offset, unit=unit)


def _axis_from_coordinate(name: str, values: np.ndarray, unit: str) -> Axis:
    values = values.astype(np.float64)
    scale = (values[-1] - values[0]) / (values.size - 1)
    if not np.allclose(np.diff(values), scale, rtol=_STEP_RTOL, atol=0.0):
        raise ParameterError(
            f"the {name} coordinate is not evenly spaced (steps from "
            f"{np.diff(values).min():g} to {np.diff(values).max():g}); registration needs "
            f"a uniform pixel grid. Drop the coordinate (array.drop_vars({name!r})) or "
            "assign an evenly spaced one"
        )
    return Axis(name=name, scale=float(scale), offset=float(values[0]), unit=unit)


def _is_pair(value: object) -> bool:
    return isinstance(value, list | tuple | np.ndarray) and len(value) == len(_IMAGE_DIMS)


def _dataarray_metadata(attrs: dict[Hashable, Any]) -> Any:
    if "original_metadata" not in attrs:
        return {str(key): value for key, value in attrs.items() if key not in _OWN_ATTRS}
    stored = attrs["original_metadata"]
    if isinstance(stored, str):
        try:
            return json.loads(stored)
        except json.JSONDecodeError:
            return {"value": stored}
    return stored
