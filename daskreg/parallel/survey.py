"""A first, light pass over the frames: their quality, and what the detector fixed in them.

Before any spectrum is computed the engine needs, for the whole series, each frame's
quality (:func:`daskreg.validate.frame_quality`) and the per-pixel moments over the
usable frames (:class:`~daskreg.kernels.detector.FrameMoments`), from which
:meth:`Survey.correction` finds the hot pixels and the series' scale. One task per
frame chunk (:func:`~daskreg.method.screening.survey_frames`, as the numpy engine
surveys the whole stack) and a tree of :meth:`Survey.merge`: the frames are read once
more, and nothing larger than two images per chunk is kept.
"""

from __future__ import annotations

import dask
from dask.delayed import Delayed

from daskreg.method.screening import Survey, survey_frames

__all__ = ["survey_graph"]

# Partial surveys merged per task (each holds two float64 images).
_SPLIT_EVERY = 8


def survey_graph(frame_chunks: list[Delayed]) -> Delayed:
    """The :class:`~daskreg.method.screening.Survey` of a series from its frame chunks, lazily.

    Parameters
    ----------
    frame_chunks : list of Delayed
        The chunks of a ``(frame, y, x)`` stack in frame order
        (``array.to_delayed().ravel()``).
    """
    parts = [dask.delayed(survey_frames, pure=True)(chunk) for chunk in frame_chunks]
    while len(parts) > 1:
        parts = [
            dask.delayed(Survey.merge, pure=True)(parts[k : k + _SPLIT_EVERY])
            for k in range(0, len(parts), _SPLIT_EVERY)
        ]
    return parts[0]
