"""The registered average as a float32 TIFF whose description holds the whole provenance.

The ImageDescription tag is a JSON document (``"format": "daskreg-average"``): every
processing parameter, raw and corrected shift matrices, outlier mask, bad frames,
shifts, crop bounds, calibration and the daskreg version. ImageJ reads the pixel size
from the resolution tags. :func:`read_average_tif` gets image and document back.
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
) -> Path:
    """Write ``image`` as float32 TIFF with ``description`` as JSON, atomically.

    Parameters
    ----------
    path : path-like
        Output file; ``.tif`` is appended when it has no ``.tif``/``.tiff`` suffix.
    image : ndarray, shape (ny, nx)
    description : dict
        JSON-serialisable provenance; ``format`` and ``version`` keys are added.
    pixel_size : (py, px), optional
        Physical pixel size, written as resolution (pixels per unit; the unit itself
        belongs in ``description``).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        path = path.with_name(path.name + ".tif")
    doc = {"format": DESCRIPTION_FORMAT, "daskreg_version": __version__, **description}
    kwargs: dict[str, Any] = {}
    if pixel_size is not None and all(p and np.isfinite(p) and p > 0 for p in pixel_size):
        kwargs["resolution"] = (1.0 / pixel_size[1], 1.0 / pixel_size[0])
        kwargs["resolutionunit"] = "NONE"
    text = json.dumps(doc, default=_jsonable)
    with atomic_path(path) as temp:
        tifffile.imwrite(
            temp,
            np.asarray(image, dtype=np.float32),
            description=text,
            metadata=None,
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
        The JSON document (parameters, matrices as nested lists, shifts, crop, ...).

    Raises
    ------
    StackFileNotFoundError, FileFormatError
    """
    path = Path(path)
    if not path.exists():
        raise StackFileNotFoundError(f"no such file: {path}; check the path")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            image = page.asarray()
            text = page.description
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return np.where(np.isfinite(value), value, None).tolist()
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in the JSON description")
