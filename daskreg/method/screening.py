"""Frame screening before correlation, the same for every engine.

Which frames cannot be correlated at all (NaN/inf pixels, no contrast), the series'
scale and hot pixels from the usable ones, and the private copy of the frames that the
engines correlate and average (hot pixels repaired, unusable frames zeroed).
"""

from __future__ import annotations

import warnings

import numpy as np

from daskreg.errors import NonFiniteError, RegistrationWarning
from daskreg.kernels import detector
from daskreg.params import RegistrationParams

__all__ = [
    "NONFINITE_REASON",
    "CONSTANT_REASON",
    "unusable_frames",
    "initial_bad_frames",
    "frame_correction",
    "prepare_frames",
]

# Reasons of the frames that cannot be correlated at all (see unusable_frames).
NONFINITE_REASON = "contains NaN or infinite pixels"
CONSTANT_REASON = "constant frame (no contrast, e.g. beam blanked)"


def unusable_frames(finite: np.ndarray, std: np.ndarray) -> dict[int, str]:
    """Frames that cannot be correlated at all, and why (see ``validate.frame_quality``).

    Parameters
    ----------
    finite : ndarray of bool, shape (F,)
    std : ndarray of float, shape (F,)

    Returns
    -------
    dict
        Frame index (within the block) -> reason: NaN/inf pixels, or no contrast.
    """
    bad: dict[int, str] = {}
    for k in np.flatnonzero(~finite):
        bad[int(k)] = NONFINITE_REASON
    for k in np.flatnonzero(finite & (std == 0)):
        bad[int(k)] = CONSTANT_REASON
    return bad


def initial_bad_frames(bad: dict[int, str], params: RegistrationParams) -> dict[int, str]:
    """The unusable frames to exclude before correlation.

    Raises
    ------
    NonFiniteError
        There are unusable frames but ``params.detect_bad_frames`` is False.
    """
    if bad and not params.detect_bad_frames:
        raise NonFiniteError(
            f"frames {sorted(bad)} hold NaN/inf pixels or no contrast; pass "
            "detect_bad_frames=True to exclude them, or bad_frames=[...]"
        )
    return dict(bad)


def frame_correction(
    moments: detector.FrameMoments, std: np.ndarray, usable: np.ndarray
) -> detector.FrameCorrection:
    """Scale and hot pixels of a series, from its usable frames; warns when pixels are found.

    Parameters
    ----------
    moments : FrameMoments
        Per-pixel moments over the usable frames.
    std : ndarray, shape (N,)
        Standard deviation of every frame (:func:`daskreg.validate.frame_quality`).
    usable : ndarray of bool, shape (N,)
        Frames that can be correlated (not in :func:`unusable_frames`).

    Returns
    -------
    FrameCorrection
        :func:`~daskreg.kernels.detector.series_scale` and
        :func:`~daskreg.kernels.detector.hot_pixels`.
    """
    pixels = detector.hot_pixels(moments)
    if len(pixels):
        shown = ", ".join(f"({y}, {x})" for y, x in pixels[:5].tolist())
        more = f" and {len(pixels) - 5} more" if len(pixels) > 5 else ""
        warnings.warn(
            f"found {len(pixels)} hot pixel(s) fixed in detector coordinates, far brighter than "
            f"their neighbours in every frame, at (y, x) {shown}{more}; they would pin the "
            "shifts at zero, so they are replaced by the median of their neighbours in "
            "daskreg's copy of the frames (correlation and average; your data are unchanged). "
            "The result lists them in attrs['hot_pixel_yx']",
            RegistrationWarning,
            stacklevel=3,
        )
    return detector.FrameCorrection(detector.series_scale(np.asarray(std)[usable]), pixels)


def prepare_frames(
    frames: np.ndarray, unusable: dict[int, str], correction: detector.FrameCorrection
) -> np.ndarray:
    """The frames every engine correlates and averages: hot pixels repaired, unusable frames
    zeroed, in a private copy when anything changes (the caller's array is untouched).

    Parameters
    ----------
    frames : ndarray, shape (F, ny, nx)
    unusable : dict
        Frame index within ``frames`` -> reason (:func:`unusable_frames`).
    correction : FrameCorrection
    """
    frames = np.asarray(frames)
    out = correction.repair(frames)
    if unusable:
        if out is frames:
            out = frames.astype(np.result_type(frames.dtype, np.float32), copy=True)
        out[sorted(unusable)] = 0.0
    return out
