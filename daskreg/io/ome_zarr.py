"""OME-Zarr (OME-NGFF 0.5 on Zarr v3): stacks and results that NGFF-aware tools read.

Three things, through the NGFF metadata of a Zarr v3 group that stays a daskreg store:

- **A stack** (:func:`daskreg.ingest` or ``save_stack=`` to a ``.ome.zarr`` path) is the
  daskreg store (array ``stack`` with dimension names ``(frame, y, x)``, coordinate arrays
  beside it) whose group is also an NGFF image: one multiscale level, the array
  ``stack``, axes ``frame`` (type ``time``), ``y`` and ``x`` (type ``space``) with their
  UDUNITS-2 units, and a ``scale`` then ``translation`` holding the pixel size and origin
  (and the frame interval and start when frames are calibrated in time). Axis names are
  free in NGFF but MUST equal the array's ``dimension_names``: keeping daskreg's
  ``frame`` keeps ``xarray.open_zarr`` and :func:`daskreg.open_stack` reading the same
  store that NGFF readers (napari-ome-zarr, ome-zarr-py) open as an image.
- **A result** saved as ``.zarr`` (:func:`daskreg.save_result`) is an NGFF image of the
  uncropped average (array ``average_full``, axes ``y``, ``x``, physical scale and
  origin), and records each frame's shift as NGFF coordinate transformations (see
  :func:`frame_transformations`, read back with :func:`read_frame_shifts`).
- **Reading**: :func:`daskreg.open_stack` opens any NGFF 0.4/0.5 image group (written by
  daskreg or not) as a stack: level 0 of its first multiscale image, the ``time`` axis as
  frames, the last two ``space`` axes as y and x, calibrated from the axes' units and the
  dataset's and the image's scale and translation.

Why per-frame shifts are stored as they are
--------------------------------------------
NGFF 0.5 has no transformation that varies along an axis: a dataset's
``coordinateTransformations`` are one ``scale`` and an optional ``translation`` for the
whole array, and that is all NGFF viewers apply. The draft of RFC-5 (released as NGFF
0.6: ``coordinateSystems``, ``byDimension``, ``displacements``) can express a
time-dependent translation only through a displacement field sampled on the array grid,
which the NGFF libraries at hand do not read (ome-zarr-models 1.7 validates 0.4 and 0.5
only), and a hierarchy may not mix NGFF versions. So the result stays
valid NGFF 0.5, and the attribute ``frame_transformations`` of its group lists, per
frame, the 0.5 transformation list (``scale``, then ``translation``) that places that
frame in the average's physical coordinates: exactly what a 0.5 reader applies to an
array, so a tool shows frame ``i`` registered by using it as that frame's dataset
transformations (in napari: ``add_image(frame, scale=..., translate=...)``). Frame ``i``
shows the specimen displaced by ``+shifts[i]`` pixels, so its translation is the
average's origin minus ``shifts[i]`` times the pixel size.

References
----------
OME-NGFF specification 0.5, https://ngff.openmicroscopy.org/0.5/ ("axes",
"coordinateTransformations", "multiscales" metadata). J. Moore et al., "OME-Zarr: a
cloud-optimized bioimaging file format with international community support",
Histochemistry and Cell Biology 160, 223-251 (2023). DOI 10.1007/s00418-023-02209-1
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from daskreg.errors import FileFormatError, StackFileNotFoundError, StackShapeError
from daskreg.io._objects import raw_from_dataarray
from daskreg.io._raw import Axis, RawStack, guarded
from daskreg.io._units import NGFF_UNITS, TIME_UNITS, normalise_unit

__all__ = [
    "FRAME_TRANSFORMATIONS",
    "NGFF_VERSION",
    "OME_ZARR_SUFFIX",
    "frame_transformations",
    "is_ome_zarr_path",
    "ngff_multiscales",
    "read_frame_shifts",
    "read_ngff",
    "result_attributes",
    "stack_attributes",
]

#: The NGFF version daskreg writes.
NGFF_VERSION = "0.5"
#: The conventional name ending of an OME-Zarr store; paths ending in it are written as one.
OME_ZARR_SUFFIX = ".ome.zarr"
#: Group attribute of a result store holding the per-frame transformations.
FRAME_TRANSFORMATIONS = "frame_transformations"

_FORMAT = "OME-Zarr"
_STACK_DIMS = ("frame", "y", "x")
_IMAGE_DIMS = ("y", "x")
# Relative tolerance on a time coordinate's steps to call it evenly spaced (as _objects).
_STEP_RTOL = 1e-4


def is_ome_zarr_path(path: str | os.PathLike) -> bool:
    """True if ``path`` ends in ``.ome.zarr`` (any case), the OME-Zarr convention."""
    return Path(path).name.lower().endswith(OME_ZARR_SUFFIX)


def ngff_multiscales(attrs: Mapping[str, Any]) -> list[Any] | None:
    """The ``multiscales`` list of a group's attributes, NGFF 0.5 or 0.4; None if absent."""
    ome = attrs.get("ome")
    found = ome.get("multiscales") if isinstance(ome, Mapping) else attrs.get("multiscales")
    return found if isinstance(found, list) and found else None


# -- writing ------------------------------------------------------------------------------
def stack_attributes(stack: xr.DataArray, array_path: str) -> dict[str, Any]:
    """NGFF 0.5 group attributes that make a daskreg stack store an OME-Zarr image.

    Parameters
    ----------
    stack : xarray.DataArray
        Dims ``(frame, y, x)``; calibration from its numeric ``y``/``x`` coordinates (or
        the ``pixel_size`` and ``unit`` attributes), the frame interval from a ``frame``
        coordinate in time units.
    array_path : str
        Name of the stack's array in the group.

    Returns
    -------
    dict
        ``{"ome": {"version": "0.5", "multiscales": [...]}}``.

    Raises
    ------
    StackShapeError
        The stack is not ``(frame, y, x)``: NGFF puts the time axis first and allows one
        other non-space axis only, so leading ``series`` dims have no place in it.
    """
    if tuple(stack.dims) != _STACK_DIMS:
        raise StackShapeError(
            f"an OME-Zarr stack is written with dims {_STACK_DIMS}, got {tuple(stack.dims)}; "
            "write one series at a time (daskreg.open_stack(source, signal=k)), or end the "
            "path in .zarr instead of .ome.zarr for the plain daskreg store"
        )
    calibrations = [_axis_calibration(stack, dim) for dim in _STACK_DIMS]
    axes = [
        _ngff_axis(dim, kind, unit)
        for dim, kind, (_, _, unit) in zip(
            _STACK_DIMS, ("time", "space", "space"), calibrations, strict=True
        )
    ]
    name = str(stack.attrs.get("signal_title") or "stack")
    return _image_attributes(name, axes, array_path, calibrations)


def result_attributes(dataset: xr.Dataset) -> dict[str, Any]:
    """NGFF 0.5 group attributes of a result store: the average as an image, frame shifts.

    Parameters
    ----------
    dataset : xarray.Dataset
        A result's dataset (:attr:`daskreg.RegistrationResult.dataset`): ``average_full``
        with its ``y``/``x`` coordinates, ``shifts`` (frame, axis) in pixels, NaN for
        unused frames, attributes ``pixel_size`` and ``unit`` if calibrated.

    Returns
    -------
    dict
        ``"ome"`` (the image of ``average_full``) and :data:`FRAME_TRANSFORMATIONS`
        (:func:`frame_transformations`).
    """
    # The calibration is the dataset's (pixel_size, unit), the coordinates' where they say.
    calibration = {k: dataset.attrs[k] for k in ("pixel_size", "unit") if k in dataset.attrs}
    average = dataset["average_full"].assign_attrs(calibration)
    calibrations = [_axis_calibration(average, dim) for dim in _IMAGE_DIMS]
    axes = [
        _ngff_axis(dim, "space", unit)
        for dim, (_, _, unit) in zip(_IMAGE_DIMS, calibrations, strict=True)
    ]
    attrs = _image_attributes("average", axes, "average_full", calibrations)
    scale = [c[0] for c in calibrations]
    origin = [c[1] for c in calibrations]
    attrs[FRAME_TRANSFORMATIONS] = frame_transformations(
        dataset["shifts"].values, scale=scale, origin=origin
    )
    return attrs


def frame_transformations(
    shifts: Any, *, scale: Sequence[float], origin: Sequence[float]
) -> list[dict[str, Any]]:
    """Per frame, the NGFF 0.5 transformations that place it in the average's coordinates.

    Parameters
    ----------
    shifts : array_like, shape (n_frames, 2)
        Displacement ``(dy, dx)`` of each frame in pixels (NaN: frame not used), as
        :attr:`daskreg.RegistrationResult.shifts`.
    scale : (float, float)
        Pixel size ``(py, px)`` of the frames.
    origin : (float, float)
        Coordinates of pixel ``(0, 0)`` of the average.

    Returns
    -------
    list of dict
        One ``{"frame": i, "coordinateTransformations": [scale, translation]}`` per frame,
        ``coordinateTransformations`` None for unused frames. The translation is
        ``origin - shifts[i] * scale``: frame ``i`` shows the specimen displaced by
        ``+shifts[i]``, so its pixel ``p`` shows the specimen point that the average
        shows at ``p - shifts[i]``.

    Examples
    --------
    >>> frame_transformations([[1.0, -2.0]], scale=(0.5, 0.5), origin=(0.0, 0.0))[0]
    ... # doctest: +NORMALIZE_WHITESPACE
    {'frame': 0, 'coordinateTransformations': [{'type': 'scale', 'scale': [0.5, 0.5]},
     {'type': 'translation', 'translation': [-0.5, 1.0]}]}
    """
    values = np.asarray(shifts, dtype=np.float64)
    out: list[dict[str, Any]] = []
    for i, shift in enumerate(values):
        transforms = None
        if np.isfinite(shift).all():
            translation = [float(o - s * p) for o, s, p in zip(origin, shift, scale, strict=True)]
            transforms = [
                {"type": "scale", "scale": [float(p) for p in scale]},
                {"type": "translation", "translation": translation},
            ]
        out.append({"frame": i, "coordinateTransformations": transforms})
    return out


def read_frame_shifts(path: str | os.PathLike) -> np.ndarray:
    """The per-frame shifts recorded as NGFF transformations in a ``.zarr`` result store.

    Parameters
    ----------
    path : path-like
        A result saved as ``.zarr`` by :func:`daskreg.save_result`.

    Returns
    -------
    numpy.ndarray, shape (n_frames, 2)
        ``(dy, dx)`` in pixels, NaN for unused frames: equal (to float rounding) to the
        result's :attr:`~daskreg.RegistrationResult.shifts`.

    Raises
    ------
    StackFileNotFoundError
        ``path`` does not exist.
    FileFormatError
        ``path`` is not a Zarr group with :data:`FRAME_TRANSFORMATIONS` (a result saved
        before daskreg wrote them, a ``.nc`` result, or not a result).
    """
    path = Path(path)
    if not path.exists():
        raise StackFileNotFoundError(
            f"no such result store: {str(path)!r}; pass the .zarr written by "
            "daskreg.save_result or RegistrationResult.save"
        )
    try:
        group = zarr.open_group(str(path), mode="r")
        # Translations are absolute: the average's origin (its own translation) is needed.
        average = ngff_multiscales(group.attrs)[0]["datasets"][0]
        _, origin = _scale_translation(average["coordinateTransformations"], len(_IMAGE_DIMS))
        shifts = [_shift_of(entry, origin) for entry in group.attrs[FRAME_TRANSFORMATIONS]]
    except Exception as exc:  # noqa: BLE001 - zarr's own errors, a missing key, bad JSON
        raise FileFormatError(
            f"{str(path)!r} holds no readable per-frame NGFF transformations "
            f"({type(exc).__name__}: {exc}); pass a result saved as .zarr by this version of "
            "daskreg, or read the shifts with daskreg.load_result(path).shifts"
        ) from exc
    return np.array(shifts, dtype=np.float64).reshape(-1, len(_IMAGE_DIMS))


def _shift_of(entry: Mapping[str, Any], origin: Sequence[float]) -> list[float]:
    transforms = entry["coordinateTransformations"]
    if transforms is None:
        return [math.nan] * len(_IMAGE_DIMS)
    scale, translation = _scale_translation(transforms, len(_IMAGE_DIMS))
    # translation = origin - shift * scale (frame_transformations).
    return [(o - t) / p for o, t, p in zip(origin, translation, scale, strict=True)]


def _image_attributes(
    name: str,
    axes: list[dict[str, str]],
    array_path: str,
    calibrations: list[tuple[float, float, str]],
) -> dict[str, Any]:
    dataset = {
        "path": array_path,
        "coordinateTransformations": [
            {"type": "scale", "scale": [c[0] for c in calibrations]},
            {"type": "translation", "translation": [c[1] for c in calibrations]},
        ],
    }
    multiscale = {"name": name, "axes": axes, "datasets": [dataset]}
    return {"ome": {"version": NGFF_VERSION, "multiscales": [multiscale]}}


def _ngff_axis(name: str, kind: str, unit: str) -> dict[str, str]:
    axis = {"name": name, "type": kind}
    # NGFF units are UDUNITS-2 names; "px" (uncalibrated) and units NGFF does not list
    # stay out of the axis (the array's daskreg attrs keep them).
    if unit in NGFF_UNITS:
        axis["unit"] = NGFF_UNITS[unit]
    return axis


def _axis_calibration(array: xr.DataArray, dim: Hashable) -> tuple[float, float, str]:
    """(scale, origin, canonical unit) of one dim, from its coordinate or the attrs."""
    coord = array.coords[dim] if dim in array.coords else None
    numeric = coord is not None and np.issubdtype(coord.dtype, np.number)
    unit = normalise_unit(coord.attrs.get("units")) if coord is not None else ""
    if dim == "frame":
        values = coord.values.astype(np.float64) if numeric else np.array([])
        steps = np.diff(values)
        even = values.size > 1 and np.allclose(steps, steps[0], rtol=_STEP_RTOL, atol=0.0)
        if unit in TIME_UNITS and even and steps[0] > 0:
            return float(steps[0]), float(values[0]), unit
        # Frame indices, or times NGFF cannot hold as one scale: the array index.
        return 1.0, 0.0, ""
    index = _IMAGE_DIMS.index(str(dim))
    pixel_size = array.attrs.get("pixel_size")
    scale = float(pixel_size[index]) if pixel_size is not None else 1.0
    if numeric and coord.size > 1:
        # The mean step, as open_stack calibrates; coordinates win over a pixel_size
        # attribute, which slicing leaves stale.
        scale = float(coord.values[-1] - coord.values[0]) / (coord.size - 1)
    origin = float(coord.values[0]) if numeric and coord.size else 0.0
    return scale, origin, unit or normalise_unit(array.attrs.get("unit"))


# -- reading ------------------------------------------------------------------------------
def read_ngff(group: Any, multiscales: list[Any], path: Path) -> RawStack:
    """Level 0 of a group's first NGFF multiscale image, calibrated, as a RawStack.

    Parameters
    ----------
    group : zarr.Group
        The image group.
    multiscales : list
        Its ``multiscales`` metadata (:func:`ngff_multiscales`).
    path : pathlib.Path
        The store, for messages and the lazy reads.

    Returns
    -------
    RawStack
        Axis ``time`` as ``frame``, the last two ``space`` axes as ``y`` and ``x``,
        others (``channel``, ``z``) under their own names as leading axes; scale and
        offset of each from the dataset's transformations followed by the image's.

    Raises
    ------
    FileFormatError
        The metadata names no array, axes that do not match it, or no two space axes.
    """
    image = multiscales[0]
    level = image["datasets"][0]
    array = group[level["path"]]
    axes = [{"name": a} if isinstance(a, str) else dict(a) for a in image["axes"]]
    if len(axes) != array.ndim:
        raise FileFormatError(
            f"{str(path)!r}: the OME-Zarr metadata lists {len(axes)} axes for the "
            f"{array.ndim}-D array {level['path']!r}; the store is damaged or not valid "
            "OME-Zarr, write it again (daskreg.ingest(source, 'name.ome.zarr'))"
        )
    ndim = array.ndim
    scale, offset = _scale_translation(level.get("coordinateTransformations", []), ndim)
    outer_scale, outer_offset = _scale_translation(image.get("coordinateTransformations", []), ndim)
    scale = [s * o for s, o in zip(scale, outer_scale, strict=True)]
    offset = [t * o + u for t, o, u in zip(offset, outer_scale, outer_offset, strict=True)]
    names = _roles(axes, path)
    raw_axes = tuple(
        Axis(name=name, scale=s, offset=t, unit=str(axis.get("unit") or ""))
        for name, s, t, axis in zip(names, scale, offset, axes, strict=True)
    )
    # The array's own attributes carry daskreg's source, title and original metadata.
    labelled = xr.DataArray(
        guarded(array, path, _FORMAT),
        dims=[n or f"dim_{i}" for i, n in enumerate(names)],
        attrs=dict(array.attrs),
    )
    raw = raw_from_dataarray(labelled, default_source=str(path))
    if "signal_title" not in array.attrs and image.get("name"):
        raw = dataclasses.replace(raw, signal_title=str(image["name"]))
    return dataclasses.replace(raw, axes=raw_axes, own_chunks=True)


def _roles(axes: list[dict[str, Any]], path: Path) -> list[str | None]:
    space = [i for i, a in enumerate(axes) if a.get("type") == "space"]
    if len(space) < 2 and all("type" not in a for a in axes):
        # NGFF 0.3 axes are names only: the last two are the image plane.
        space = list(range(len(axes)))[-2:]
    if len(space) < 2:
        raise FileFormatError(
            f"{str(path)!r}: the OME-Zarr image has axes {[a.get('name') for a in axes]} with "
            "fewer than two of type 'space', so it holds no image plane; open an image "
            "group with y and x axes"
        )
    names: list[str | None] = [str(a.get("name")) for a in axes]
    for i, axis in enumerate(axes):
        if axis.get("type") == "time" or (axis.get("name") == "t" and "type" not in axis):
            names[i] = "frame"
        elif names[i] in _STACK_DIMS:
            # A y or x that is not the image plane (a 3-D volume's) keeps a name of its own.
            names[i] = f"{names[i]}_axis"
    names[space[-2]], names[space[-1]] = "y", "x"
    return names


def _scale_translation(transforms: Sequence[Mapping[str, Any]], ndim: int) -> tuple[list, list]:
    scale, translation = [1.0] * ndim, [0.0] * ndim
    for transform in transforms:
        if transform.get("type") == "scale":
            scale = [float(v) for v in transform["scale"]]
        elif transform.get("type") == "translation":
            translation = [float(v) for v in transform["translation"]]
    return scale, translation
