"""Frames taken a few at a time, so that float64 temporaries of a chunk stay bounded."""

from __future__ import annotations

__all__ = ["frame_slices"]


def frame_slices(n_frames: int, frame_size: int, budget: int) -> list[slice]:
    """Consecutive slices of frames holding at most ``budget`` bytes as float64.

    Parameters
    ----------
    n_frames : int
    frame_size : int
        Pixels per frame.
    budget : int
        Bytes; every slice holds at least one frame.

    Returns
    -------
    list of slice
        One empty slice when there are no frames, so a caller still gets its output
        shape from one (empty) piece.
    """
    step = max(1, budget // (8 * max(1, frame_size)))
    return [slice(k, k + step) for k in range(0, n_frames, step)] or [slice(0, 0)]
