"""A first, light pass over the frames: their quality, and what the detector fixed in them.

Before any spectrum is computed the engine needs, for the whole series, each frame's
quality (:func:`daskreg.validate.frame_quality`) and the per-pixel moments over the
usable frames (:class:`~daskreg.kernels.detector.FrameMoments`), from which
:func:`daskreg.method.screening.frame_correction` finds the hot pixels and the series' scale.
One task per frame chunk and a tree of merges: the frames are read once more, and
nothing larger than two images per chunk is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np
from dask.delayed import Delayed

from daskreg.kernels.detector import FrameMoments
from daskreg.method.screening import frame_correction, unusable_frames
from daskreg.validate import frame_quality

__all__ = ["Survey", "survey_graph"]

# Partial surveys merged per task (each holds two float64 images).
_SPLIT_EVERY = 8


@dataclass(frozen=True)
class Survey:
    """Quality of every frame of a series and the moments of its usable frames.

    Attributes
    ----------
    finite, std : ndarray, shape (N,)
        :func:`daskreg.validate.frame_quality` of each frame.
    moments : FrameMoments
        Over the frames that are not :func:`daskreg.method.screening.unusable_frames`.
    """

    finite: np.ndarray
    std: np.ndarray
    moments: FrameMoments

    @property
    def unusable(self) -> dict[int, str]:
        """:func:`daskreg.method.screening.unusable_frames` of the series."""
        return unusable_frames(self.finite, self.std)

    def correction(self):
        """:func:`daskreg.method.screening.frame_correction` of the series (warns on hot pixels)."""
        usable = np.ones(len(self.std), dtype=bool)
        usable[list(self.unusable)] = False
        return frame_correction(self.moments, self.std, usable)


def _survey_chunk(frames: np.ndarray) -> Survey:
    frames = np.asarray(frames)
    finite, std = frame_quality(frames)
    usable = np.ones(len(frames), dtype=bool)
    usable[list(unusable_frames(finite, std))] = False
    return Survey(finite, std, FrameMoments.of(frames, usable))


def _merge(parts: list[Survey]) -> Survey:
    moments = parts[0].moments
    for part in parts[1:]:
        moments = moments.merge(part.moments)
    return Survey(
        np.concatenate([p.finite for p in parts]), np.concatenate([p.std for p in parts]), moments
    )


def survey_graph(frame_chunks: list[Delayed]) -> Delayed:
    """The :class:`Survey` of a series from its frame chunks, lazily.

    Parameters
    ----------
    frame_chunks : list of Delayed
        The chunks of a ``(frame, y, x)`` stack in frame order
        (``array.to_delayed().ravel()``).
    """
    parts = [dask.delayed(_survey_chunk, pure=True)(chunk) for chunk in frame_chunks]
    while len(parts) > 1:
        parts = [
            dask.delayed(_merge, pure=True)(parts[k : k + _SPLIT_EVERY])
            for k in range(0, len(parts), _SPLIT_EVERY)
        ]
    return parts[0]
