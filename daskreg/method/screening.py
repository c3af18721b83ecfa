"""Frame screening before correlation, the same for every engine.

Which frames cannot be correlated at all (NaN/inf pixels, no contrast), the series'
scale and hot pixels from the usable ones, and the private copy of the frames that the
engines correlate and average (hot pixels repaired, unusable frames zeroed).

Both engines screen in the same two steps: :func:`survey_frames` (the numpy engine on
the whole stack, the Dask engine per chunk, merged with :meth:`Survey.merge`) then
:meth:`Survey.correction`; and :func:`prepare_frames` with that correction before any
spectrum is computed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from daskreg.errors import NonFiniteError, RegistrationWarning
from daskreg.kernels import detector
from daskreg.params import RegistrationParams

__all__ = [
    "NONFINITE_REASON",
    "CONSTANT_REASON",
    "Survey",
    "survey_frames",
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
    """The frames every engine correlates and averages.

    Hot pixels repaired, unusable frames zeroed, in a private copy when anything
    changes (the caller's array is untouched).

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


def _usable(n_frames: int, unusable: dict[int, str]) -> np.ndarray:
    usable = np.ones(n_frames, dtype=bool)
    usable[list(unusable)] = False
    return usable


@dataclass(frozen=True)
class Survey:
    """Quality of every frame of a series and the moments of its usable frames.

    Attributes
    ----------
    finite, std : ndarray, shape (N,)
        :func:`daskreg.validate.frame_quality` of each frame.
    moments : FrameMoments
        Over the frames that are not :func:`unusable_frames`.
    """

    finite: np.ndarray
    std: np.ndarray
    moments: detector.FrameMoments

    @property
    def unusable(self) -> dict[int, str]:
        """:func:`unusable_frames` of the series."""
        return unusable_frames(self.finite, self.std)

    def correction(self) -> detector.FrameCorrection:
        """:func:`frame_correction` of the series (warns on hot pixels)."""
        return frame_correction(self.moments, self.std, _usable(len(self.std), self.unusable))

    @classmethod
    def merge(cls, parts: list[Survey]) -> Survey:
        """The survey of consecutive chunks of frames, from theirs (in frame order)."""
        moments = parts[0].moments
        for part in parts[1:]:
            moments = moments.merge(part.moments)
        return cls(
            np.concatenate([p.finite for p in parts]),
            np.concatenate([p.std for p in parts]),
            moments,
        )


def survey_frames(frames: np.ndarray) -> Survey:
    """The :class:`Survey` of a block of frames ``(F, ny, nx)``: one pass, no copy.

    Parameters
    ----------
    frames : ndarray, shape (F, ny, nx)

    Returns
    -------
    Survey
    """
    # One pass: the moments leave out the frames frame_survey finds unusable, which are
    # unusable_frames' (NaN/inf pixels, no contrast).
    return Survey(*detector.frame_survey(frames))
