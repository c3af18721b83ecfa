"""napari layers of a daskreg result, a saved average or a registered stack.

Each function returns napari's ``LayerData`` tuples ``(data, kwargs, layer_type)``,
built from numpy, dask and xarray alone: napari is not imported here, so the reader
works (and is tested) wherever daskreg is installed.

Placement: every layer is in the raw frames' physical coordinates (``scale`` from the
pixel size). The average and the aligned stack are cropped to ``[ymin:ymax,
xmin:xmax]``, so they are translated by ``(ymin, xmin)`` pixels: they then lie over the
raw frames where the specimen sits at its mean position. The shift track marks, in
frame ``i``, where the point at the frame centre of that mean position has drifted to
(``centre + shifts[i]``), so on the raw stack it follows the specimen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from daskreg.errors import DaskregError
from daskreg.io import open_stack
from daskreg.io.average_tif import read_average_tif
from daskreg.result import RegistrationResult

__all__ = ["LayerData", "average_tif_layers", "result_layers", "stack_layers", "track_layers"]

#: napari's layer data tuple: ``(data, layer keyword arguments, layer type)``.
LayerData = tuple[Any, dict[str, Any], str]

# Colours of the shift track: used frames follow the specimen, bad frames stand out.
_USED_COLOUR = (0.0, 0.9, 0.9, 1.0)
_BAD_COLOUR = (1.0, 0.2, 0.2, 1.0)


def result_layers(
    result: RegistrationResult, *, stack: Any = None, name: str = "daskreg"
) -> list[LayerData]:
    """The average, the aligned stack and the shift track of a registration result.

    Parameters
    ----------
    result : RegistrationResult
    stack : array_like, xarray.DataArray or path, optional
        The registered frames. Default: the result's ``source`` when it is a file that
        still exists; without frames there is no aligned-stack layer.
    name : str, default "daskreg"
        Prefix of the layer names.

    Returns
    -------
    list of LayerData
        ``"<name> average"`` (image); ``"<name> aligned"`` (image, dask-backed: frames
        are shifted only when napari shows them; NaN for unused frames, so that frame
        ``i`` of every layer is frame ``i`` of the series); ``"<name> shift track"``
        (points) and ``"<name> drift"`` (tracks), see :func:`track_layers`.

    References
    ----------
    B. H. Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI
    10.1016/j.ultramic.2018.04.008.
    """
    ds = result.dataset
    attrs = ds.attrs
    scale, units = _calibration(attrs)
    cropped = bool(attrs.get("crop", 1))
    origin = (result.crop.ymin, result.crop.xmin) if cropped else (0, 0)
    translate = tuple(o * s for o, s in zip(origin, scale, strict=True))
    frame_shape = (int(ds.sizes["y"]), int(ds.sizes["x"]))
    metadata = {
        "daskreg": {
            "crop": dict(zip(("ymin", "ymax", "xmin", "xmax"), result.crop, strict=True)),
            "auto_choices": attrs.get("auto_choices"),
            "bad_frame_reasons": result.bad_frame_reasons,
            "source": attrs.get("source"),
        }
    }
    average = result.average
    layers: list[LayerData] = [
        (
            np.asarray(average.values),
            {
                "name": f"{name} average",
                "scale": scale,
                "translate": translate,
                "colormap": "gray",
                "metadata": metadata,
                **_units_kwarg(units, 2),
            },
            "image",
        )
    ]
    frames = _source_stack(attrs.get("source"), frame_shape) if stack is None else stack
    if frames is not None:
        aligned = _aligned_all_frames(result, frames)
        layers.append(
            (
                aligned,
                {
                    "name": f"{name} aligned",
                    "scale": (1.0, *scale),
                    "translate": (0.0, *translate),
                    "colormap": "gray",
                    "contrast_limits": _limits(aligned, result.bad_frames.values),
                    "metadata": metadata,
                    **_units_kwarg(units, 3),
                },
                "image",
            )
        )
    layers += track_layers(
        result.shifts.values,
        frame_shape=frame_shape,
        bad_frames=result.bad_frames.values,
        uncertainty=result.shift_uncertainty.values,
        reasons=result.bad_frame_reasons,
        scale=scale,
        unit=units,
        name=name,
    )
    return layers


def track_layers(
    shifts: np.ndarray,
    *,
    frame_shape: tuple[int, int],
    bad_frames: np.ndarray | None = None,
    uncertainty: np.ndarray | None = None,
    reasons: Mapping[int, str] | None = None,
    scale: tuple[float, float] = (1.0, 1.0),
    unit: str | None = None,
    name: str = "daskreg",
) -> list[LayerData]:
    """The shifts as a points layer (every frame) and a tracks layer (used frames).

    Parameters
    ----------
    shifts : ndarray, shape (n_frames, 2)
        ``(dy, dx)`` of each frame in pixels; NaN rows are unused frames.
    frame_shape : (int, int)
        ``(ny, nx)`` of the frames.
    bad_frames : ndarray of bool, shape (n_frames,), optional
        True where a frame is not used; default: the NaN rows of ``shifts``.
    uncertainty : ndarray, shape (n_frames, 2), optional
        One-sigma uncertainty of each shift, pixels.
    reasons : mapping of int to str, optional
        Why each bad frame was left out.
    scale : (float, float)
        Pixel size ``(py, px)``.
    unit : str, optional
        Unit of ``scale``.
    name : str
        Prefix of the layer names.

    Returns
    -------
    list of LayerData
        ``"<name> shift track"``: points ``(frame, y, x)`` in pixels at ``centre +
        shifts[i]``, one per frame; a bad frame's point sits at the centre, drawn as a
        red cross. Its features: ``frame``, ``dy``, ``dx``, ``sigma_y``, ``sigma_x``,
        ``bad`` and ``reason``. ``"<name> drift"``: one track through the used frames
        (absent with fewer than two).
    """
    shifts = np.asarray(shifts, dtype=np.float64)
    n_frames = len(shifts)
    bad = ~np.isfinite(shifts).all(axis=1)
    if bad_frames is not None:
        bad |= np.asarray(bad_frames, dtype=bool)
    sigma = np.full_like(shifts, np.nan) if uncertainty is None else np.asarray(uncertainty)
    reasons = {} if reasons is None else reasons
    centre = np.array(frame_shape, dtype=np.float64) / 2
    position = centre + np.where(bad[:, None], 0.0, shifts)
    frames = np.arange(n_frames)
    points = np.column_stack([frames, position])
    features = {
        "frame": frames,
        "dy": shifts[:, 0],
        "dx": shifts[:, 1],
        "sigma_y": sigma[:, 0],
        "sigma_x": sigma[:, 1],
        "bad": bad,
        "reason": [reasons.get(int(i), "") for i in frames],
    }
    layers: list[LayerData] = [
        (
            points,
            {
                "name": f"{name} shift track",
                "scale": (1.0, *scale),
                **_units_kwarg(unit, 3),
                "features": features,
                "face_color": np.where(bad[:, None], _BAD_COLOUR, _USED_COLOUR),
                "symbol": np.where(bad, "cross", "disc").tolist(),
                "size": max(frame_shape) / 40,
                # Every frame's point stays visible whichever frame is shown.
                "out_of_slice_display": False,
            },
            "points",
        )
    ]
    used = np.flatnonzero(~bad)
    if len(used) >= 2:
        track = np.column_stack([np.zeros(len(used)), used, position[used]])
        layers.append(
            (
                track,
                {
                    "name": f"{name} drift",
                    "scale": (1.0, *scale),
                    **_units_kwarg(unit, 3),
                    "tail_length": n_frames,
                    "features": {"dy": shifts[used, 0], "dx": shifts[used, 1]},
                },
                "tracks",
            )
        )
    return layers


def average_tif_layers(path: str | Path) -> list[LayerData]:
    """An average saved by :meth:`daskreg.RegistrationResult.save_tif`, and its track.

    The ImageJ ``Info`` of the file (:func:`daskreg.read_average_tif`) holds the pixel
    size, the crop, the shifts and the bad frames; see :func:`result_layers` for the
    layers and their placement (no aligned stack: the file has no frames).
    """
    image, doc = read_average_tif(path)
    scale, units = _calibration(doc)
    crop = doc.get("crop") or {}
    origin = (crop.get("ymin", 0), crop.get("xmin", 0)) if doc.get("cropped", True) else (0, 0)
    name = Path(path).stem
    layers: list[LayerData] = [
        (
            image,
            {
                "name": f"{name} average",
                "scale": scale,
                "translate": tuple(o * s for o, s in zip(origin, scale, strict=True)),
                "colormap": "gray",
                "metadata": {"daskreg": doc},
                **_units_kwarg(units, 2),
            },
            "image",
        )
    ]
    shifts = doc.get("shifts")
    if shifts and doc.get("frame_shape"):
        # The JSON writes NaN (unused frames) as null.
        values = np.array([[np.nan if v is None else v for v in row] for row in shifts])
        sigma = doc.get("shift_uncertainty")
        bad = np.zeros(len(values), dtype=bool)
        bad[list(doc.get("bad_frames", []))] = True
        layers += track_layers(
            values,
            frame_shape=tuple(doc["frame_shape"]),
            bad_frames=bad,
            uncertainty=None
            if sigma is None
            else np.array([[np.nan if v is None else v for v in row] for row in sigma]),
            reasons={int(k): v for k, v in (doc.get("bad_frame_reasons") or {}).items()},
            scale=scale,
            unit=units,
            name=name,
        )
    return layers


def stack_layers(path: str | Path) -> list[LayerData]:
    """A stack daskreg opens (a registered stack from ``save_stack``, an ingested store).

    Returns one dask-backed image layer (nothing is read until napari shows a frame),
    scaled by the stack's pixel size.
    """
    stack = open_stack(path)
    scale, units = _calibration(stack.attrs)
    leading = stack.ndim - 2
    return [
        (
            stack.data,
            {
                "name": Path(path).name,
                "scale": (*(1.0,) * leading, *scale),
                "colormap": "gray",
                "metadata": {"daskreg": _jsonable(stack.attrs)},
                **_units_kwarg(units, stack.ndim),
            },
            "image",
        )
    ]


def _aligned_all_frames(result: RegistrationResult, frames: Any) -> Any:
    """The aligned stack, lazily, with NaN frames where a frame was not used."""
    aligned = result.apply(frames, average=False)
    n_frames = int(result.dataset.sizes["frame"])
    used = np.flatnonzero(~result.bad_frames.values)
    # Position of each frame in the aligned (used-only) stack; unused ones point at the
    # NaN frame appended after them, so the whole stack stays one lazy take.
    index = np.full(n_frames, len(used))
    index[used] = np.arange(len(used))
    data = aligned.transpose("frame", ...).data.astype(np.float32)
    blank = da.full((1, *data.shape[1:]), np.nan, dtype=np.float32)
    return da.concatenate([data, blank], axis=0)[index]


def _source_stack(source: Any, frame_shape: tuple[int, int]) -> xr.DataArray | None:
    """The registered frames, lazily, if the result's ``source`` names an existing file."""
    if not isinstance(source, str) or not Path(source).exists():
        return None
    try:
        stack = open_stack(source)
    except DaskregError:
        return None
    if stack.ndim != 3 or tuple(stack.shape[-2:]) != tuple(frame_shape):
        return None
    return stack


def _calibration(attrs: Mapping[str, Any]) -> tuple[tuple[float, float], str | None]:
    """``(py, px)`` and unit from daskreg attrs; 1 pixel when uncalibrated."""
    pixel = attrs.get("pixel_size")
    if pixel is None or not all(np.isfinite(p) and p > 0 for p in np.ravel(pixel)):
        return (1.0, 1.0), None
    py, px = (float(p) for p in np.broadcast_to(np.ravel(pixel), 2))
    unit = attrs.get("unit")
    return (py, px), None if unit in (None, "", "px", "pixel") else str(unit)


def _units_kwarg(unit: str | None, ndim: int) -> dict[str, Sequence[str]]:
    """The ``units`` argument of a napari layer, for a length unit pint knows; else none.

    The frame axis of a stack keeps napari's default ``"pixel"``.
    """
    if unit is None:
        return {}
    try:
        import pint

        pint.get_application_registry().Unit(unit)
    except Exception:  # noqa: BLE001 - pint absent or the unit unknown: leave napari's default
        return {}
    return {"units": ("pixel",) * (ndim - 2) + (unit, unit)}


def _limits(aligned: da.Array, bad: np.ndarray) -> tuple[float, float]:
    """Contrast limits from the first used aligned frame (one frame computed).

    napari would otherwise estimate them from the lazy stack, whose NaN frames (unused)
    give NaN limits.
    """
    frame = np.asarray(aligned[int(np.argmin(bad))])
    low, high = np.nanpercentile(frame, [0.5, 99.5]) if np.isfinite(frame).any() else (0, 1)
    return (float(low), float(high)) if high > low else (float(low), float(low) + 1.0)


def _jsonable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attrs as napari's metadata keeps them: JSON strings decoded where they are JSON."""
    out = {}
    for key, value in attrs.items():
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out
