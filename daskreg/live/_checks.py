"""Validation of a live registration's arguments and frames, at its public boundary."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskreg.errors import NonFiniteError, ParameterError, StackDtypeError, StackShapeError
from daskreg.method.screening import unusable_frames
from daskreg.validate import frame_quality

__all__ = ["check_int", "check_positive", "check_shape", "check_frame"]


def check_int(name: str, value: Any, minimum: int, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(
            f"{name} must be an integer >= {minimum}; got {value!r}. "
            + (f"Pass {example}" if example else f"Pass e.g. {name}={max(minimum, 16)}")
        )
    return int(value)


def check_positive(name: str, value: Any) -> float:
    if not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
        raise ParameterError(f"{name} must be a positive number of pixels; got {value!r}")
    return float(value)


def check_shape(shape: Any) -> tuple[int, int]:
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        ny = nx = -1
    if ny < 4 or nx < 4:
        raise StackShapeError(
            f"frame_shape must be (ny, nx) with at least 4 pixels each; got {shape!r}. "
            "Pass the shape of one frame, e.g. frame_shape=frame.shape"
        )
    return ny, nx


def check_frame(
    frame: Any, shape: tuple[int, int], dtype: np.dtype, index: int, strict: bool
) -> np.ndarray:
    """``frame`` as an array of ``dtype``, checked for ``shape`` and real values.

    ``strict`` (``detect_bad_frames=False``): a frame with NaN/inf pixels or no contrast
    is refused, as a batch run refuses it.
    """
    values = np.asarray(frame)
    if values.shape != shape:
        raise StackShapeError(
            f"frame {index} has shape {values.shape}, but this live registration takes "
            f"frames of {shape}; pass frames of that shape (or start another "
            f"LiveRegistration with frame_shape={values.shape})"
        )
    if values.dtype.kind not in "uif":
        raise StackDtypeError(
            f"frame {index} has dtype {values.dtype}; frames must hold real numbers. "
            "Convert first, e.g. frame.astype('float32') (for complex data its abs())"
        )
    values = values.astype(dtype, copy=False)
    if strict:
        reason = unusable_frames(*frame_quality(values[None])).get(0)
        if reason is not None:
            raise NonFiniteError(
                f"frame {index} cannot be registered: it {reason}, and "
                "detect_bad_frames=False. Replace its invalid pixels first (e.g. "
                "np.nan_to_num(frame, nan=float(np.nanmedian(frame)))), skip it, or "
                "pass detect_bad_frames=True to keep it as a bad frame"
            )
    return values
