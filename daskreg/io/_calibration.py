"""Physical calibration of the image and frame axes: pixel size in nm and frame times."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from daskreg.io._raw import Axis
from daskreg.io._units import LENGTH_IN_NM, TIME_UNITS, normalise_unit
from daskreg.io._warn import warn_caller

__all__ = ["SpatialCalibration", "frame_coordinate", "spatial_calibration"]


@dataclass(frozen=True)
class SpatialCalibration:
    """Calibration of the y and x axes of a stack.

    Attributes
    ----------
    pixel_size : tuple of float
        (py, px), in ``unit``.
    origin : tuple of float
        Coordinates of pixel (0, 0), in ``unit``.
    unit : str
        ``"nm"`` for any length unit, ``"px"`` when uncalibrated, else the source's unit.
    note : str
        Why the calibration is not simply the source's (assumed unit...), ``""`` otherwise.
    """

    pixel_size: tuple[float, float]
    origin: tuple[float, float]
    unit: str
    note: str = ""

    def coordinate(self, axis: int, size: int) -> np.ndarray:
        """Coordinates along y (``axis=0``) or x (``axis=1``)."""
        return self.origin[axis] + np.arange(size) * self.pixel_size[axis]


_UNCALIBRATED = SpatialCalibration((1.0, 1.0), (0.0, 0.0), "px")


def spatial_calibration(y: Axis, x: Axis) -> SpatialCalibration:
    """Calibrate y and x in one unit, converting lengths to nm.

    Parameters
    ----------
    y, x : Axis
        The image axes as the source describes them.

    Returns
    -------
    SpatialCalibration
        A source with a pixel size but no unit is assumed to be in nm, and ``note`` says
        so. Axes whose units cannot be put in one unit fall back to pixels with a
        :class:`~daskreg.errors.RegistrationWarning`.
    """
    scales = (float(y.scale), float(x.scale))
    origins = (float(y.offset), float(x.offset))
    if not all(math.isfinite(s) and s > 0 for s in scales) or not all(
        math.isfinite(o) for o in origins
    ):
        return replace(
            _UNCALIBRATED,
            note=f"the source's pixel size {scales} / origin {origins} is not usable; "
            "calibrated in pixels",
        )
    unit_y, unit_x = normalise_unit(y.unit), normalise_unit(x.unit)
    note = ""
    if not unit_y and not unit_x:
        if scales == (1.0, 1.0) and origins == (0.0, 0.0):
            return _UNCALIBRATED
        unit_y = unit_x = "nm"
        note = "the source gives a pixel size but no unit; assumed nm"
    elif not unit_y or not unit_x:
        unit_y = unit_x = unit_y or unit_x
        note = f"the source gives a unit for one image axis only; assumed {unit_y} for both"
    if unit_y in LENGTH_IN_NM and unit_x in LENGTH_IN_NM:
        factors = (LENGTH_IN_NM[unit_y], LENGTH_IN_NM[unit_x])
        return SpatialCalibration(
            (scales[0] * factors[0], scales[1] * factors[1]),
            (origins[0] * factors[0], origins[1] * factors[1]),
            "nm",
            note,
        )
    if unit_y == unit_x:
        return SpatialCalibration(scales, origins, unit_y, note)
    message = (
        f"the image axes are calibrated in different units (y: {unit_y!r}, x: {unit_x!r}) "
        "that cannot be converted into one; the stack is calibrated in pixels instead. "
        "To keep a physical calibration, pass an xarray DataArray whose y and x "
        "coordinates share one unit."
    )
    warn_caller(message)
    return replace(_UNCALIBRATED, note=message)


def frame_coordinate(axis: Axis, size: int) -> tuple[np.ndarray, dict[str, str]]:
    """Coordinate values and attributes of the frame axis.

    Parameters
    ----------
    axis : Axis
        The frame axis as the source describes it.
    size : int
        Number of frames.

    Returns
    -------
    values : numpy.ndarray
        Explicit coordinates if the source has them; ``offset + i * scale`` if the axis is
        calibrated in time; else the frame index ``0 .. size - 1``.
    attrs : dict
        ``{"units": ...}`` when the values carry a unit.
    """
    unit = normalise_unit(axis.unit)
    attrs = {"units": unit} if unit else {}
    if axis.values is not None:
        return np.asarray(axis.values), attrs
    if unit in TIME_UNITS and math.isfinite(axis.scale) and axis.scale > 0:
        return axis.offset + np.arange(size) * float(axis.scale), attrs
    return np.arange(size), {}
