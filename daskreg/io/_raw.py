"""What every reader hands over: the array as stored, what is known about its axes, and how
reader failures become :class:`~daskreg.errors.FileFormatError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daskreg.errors import DaskregError, FileFormatError

__all__ = ["READER_ERRORS", "Axis", "RawStack", "reading"]


@dataclass(frozen=True)
class Axis:
    """One axis of a stored array, in the array's own order.

    Attributes
    ----------
    name : str or None
        ``"frame"``, ``"y"`` or ``"x"`` when the source says which axis this is, another
        name to keep for a leading axis, or ``None`` when the source does not say.
    scale, offset : float
        Calibration: coordinate of index ``i`` is ``offset + i * scale`` in ``unit``.
    unit : str
        The unit as the source spells it (normalised later).
    values : numpy.ndarray or None
        Explicit coordinates (from an xarray input); they take precedence over
        ``scale``/``offset`` for frame and leading axes.
    """

    name: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    values: np.ndarray | None = None


@dataclass
class RawStack:
    """An image stack as a reader found it, before axes are put in (…, frame, y, x) order.

    Attributes
    ----------
    data : Any
        A dask or numpy array, or any array-like with ``shape``, ``dtype`` and slicing.
    axes : tuple of Axis
        One entry per axis of ``data``.
    source : str
        The path read, or the type of the object passed.
    signal_title : str
        The title the source gives the signal, ``""`` if none.
    original_metadata : Any
        The source's own metadata tree; encoded to JSON later.
    """

    data: Any
    axes: tuple[Axis, ...]
    source: str
    signal_title: str = ""
    original_metadata: Any = field(default_factory=dict)


# What file readers raise on truncated or foreign files: they parse headers with struct,
# index into tag tables and decode text, so the failure can surface as any of these.
READER_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    EOFError,
    struct.error,
)


@contextmanager
def reading(path: Path, format_name: str) -> Iterator[None]:
    """Re-raise a reader's failure as :class:`FileFormatError` naming the file.

    Parameters
    ----------
    path : pathlib.Path
        The file being read.
    format_name : str
        Human-readable format, e.g. ``"Gatan DigitalMicrograph"``.
    """
    try:
        yield
    except DaskregError:
        raise
    except READER_ERRORS as exc:
        reason = str(exc).rstrip(".")
        raise FileFormatError(
            f"cannot read {str(path)!r} as {format_name}: {type(exc).__name__}: {reason}. "
            "The file is truncated, corrupt or not of this format; copy it again from the "
            "acquisition computer or re-export it, and check that the extension matches "
            "the content."
        ) from exc
