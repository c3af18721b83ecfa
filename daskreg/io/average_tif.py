"""The registered average as a float32 ImageJ TIFF that carries its provenance.

The file is an ImageJ TIFF, so ImageJ/Fiji (and ``tifffile.TiffFile(path).imagej_metadata``)
read the pixel size from the X/YResolution tags (pixels per unit) and the unit from the
``unit=`` entry of the ImageJ description. The provenance is a JSON document
(``"format": "daskreg-average"``) stored as the image's ImageJ ``Info`` (Fiji: Image >
Show Info): processing parameters, shifts, bad frames, crop bounds, calibration and the
daskreg version; per-pair data (N x N matrices) belong in the result store it names.
:func:`read_average_tif` gets image and document back, also from files of daskreg
versions that kept the JSON in the ImageDescription tag.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from daskreg._version import __version__
from daskreg.errors import FileFormatError, StackFileNotFoundError
from daskreg.io.atomic import atomic_path

__all__ = ["write_average_tif", "read_average_tif", "DESCRIPTION_FORMAT"]

DESCRIPTION_FORMAT = "daskreg-average"


def write_average_tif(
    path: str | os.PathLike,
    image: np.ndarray,
    description: dict[str, Any],
    *,
    pixel_size: tuple[float, float] | None = None,
    unit: str | None = None,
) -> Path:
    """Write ``image`` as float32 ImageJ TIFF with ``description`` as JSON, atomically.

    Parameters
    ----------
    path : path-like
        Output file; ``.tif`` is appended when it has no ``.tif``/``.tiff`` suffix.
    image : ndarray, shape (ny, nx)
    description : dict
        JSON-serialisable provenance, stored as the ImageJ ``Info``; ``format`` and
        ``daskreg_version`` keys are added. Keep it small (no per-pair matrices): it is
        read whole by every program that opens the image.
    pixel_size : (py, px), optional
        Physical pixel size, written as X/YResolution in pixels per ``unit``.
    unit : str, optional
        Unit of ``pixel_size``, written as ImageJ's ``unit``. Default:
        ``description["unit"]``; none is written for ``"px"`` (uncalibrated).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        path = path.with_name(path.name + ".tif")
    doc = {"format": DESCRIPTION_FORMAT, "daskreg_version": __version__, **description}
    metadata: dict[str, Any] = {"Info": json.dumps(doc, default=_jsonable)}
    kwargs: dict[str, Any] = {}
    if pixel_size is not None and all(p and np.isfinite(p) and p > 0 for p in pixel_size):
        kwargs["resolution"] = (1.0 / pixel_size[1], 1.0 / pixel_size[0])
        unit = description.get("unit") if unit is None else unit
        if unit and unit != "px":
            metadata["unit"] = _imagej_unit(str(unit))
    with atomic_path(path) as temp:
        tifffile.imwrite(
            temp,
            np.asarray(image, dtype=np.float32),
            imagej=True,
            metadata=metadata,
            software=f"daskreg {__version__}",
            **kwargs,
        )
    return path


def read_average_tif(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an average written by :func:`write_average_tif`.

    Returns
    -------
    image : ndarray of float32, shape (ny, nx)
    description : dict
        The JSON document (parameters, shifts, bad frames, crop, calibration, ...).

    Raises
    ------
    StackFileNotFoundError, FileFormatError
    """
    path = Path(path)
    if not path.exists():
        raise StackFileNotFoundError(f"no such file: {path}; check the path")
    try:
        with tifffile.TiffFile(path) as tif:
            image = tif.pages[0].asarray()
            # Averages written before the ImageJ format kept the JSON in ImageDescription.
            text = (tif.imagej_metadata or {}).get("Info") or tif.pages[0].description
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise FileFormatError(
            f"cannot read {path} as TIFF ({exc}); is it a daskreg average?"
        ) from exc
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise FileFormatError(
            f"{path} has no daskreg JSON description; it was not written by daskreg"
        ) from exc
    if not isinstance(doc, dict) or doc.get("format") != DESCRIPTION_FORMAT:
        raise FileFormatError(
            f"{path} is a TIFF but not a daskreg average (no '{DESCRIPTION_FORMAT}' description)"
        )
    return image, doc


def _imagej_unit(unit: str) -> str:
    # The ImageJ description is ASCII; ImageJ itself writes the micro sign as \u00B5.
    return "".join(c if c.isascii() else f"\\u{ord(c):04X}" for c in unit)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return np.where(np.isfinite(value), value, None).tolist()
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in the JSON description")
