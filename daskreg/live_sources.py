"""Frames from acquisition software into a :class:`~daskreg.live.LiveRegistration`.

:func:`feed` is the source for programs that hand over frames themselves (an iterator, a
generator over a camera's buffer); :func:`daskreg.io.follow.follow_folder` makes such an
iterator from a folder the acquisition writes into, and ``daskreg watch`` runs both.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from daskreg.errors import ParameterError, StackShapeError

__all__ = ["feed"]


def feed(
    live: Any,
    frames: Iterable[Any],
    *,
    callback: Callable[[Any], object] | None = None,
    every: int = 1,
) -> Any:
    """Add frames to a live registration as they come, calling back every few frames.

    Parameters
    ----------
    live : daskreg.live.LiveRegistration
        The registration the frames are added to.
    frames : iterable
        Frames in acquisition order, each a 2-D array ``(ny, nx)`` (added with
        ``live.add``) or a 3-D block ``(n, ny, nx)`` of consecutive frames (``live.add_many``),
        as a camera buffer delivers them. A generator may block until the next frame is
        acquired; :func:`~daskreg.io.follow.follow_folder` is one.
    callback : callable, optional
        ``callback(live)``, called each time ``live.n_frames`` reaches a multiple of
        ``every``, and once after the last frame if frames were added since its last
        call: to show the running average, save a snapshot, steer the scan with
        ``live.forecast()``.
    every : int, default 1
        Frames between two calls of ``callback``.

    Returns
    -------
    daskreg.live.LiveRegistration
        ``live``, with every frame added; ``live.finish()`` gives the final result.

    Raises
    ------
    ParameterError
        ``every`` is not a positive integer, or ``callback`` is not callable.
    StackShapeError
        An item of ``frames`` is neither one frame nor a block of frames.

    Notes
    -----
    Frames are added in this thread, one at a time: the registration's state is
    complete whenever ``callback`` runs, and an exception raised by the source or the
    callback leaves ``live`` holding every frame added before it.

    Examples
    --------
    >>> from daskreg.live import LiveRegistration
    >>> from daskreg.synthetic import lattice_series
    >>> series = lattice_series(8, (64, 64), seed=0)
    >>> live = LiveRegistration((64, 64), band=4)
    >>> seen = []
    >>> _ = feed(live, iter(series.stack), callback=lambda r: seen.append(r.n_frames), every=3)
    >>> seen
    [3, 6, 8]
    """
    try:
        valid = operator.index(every) >= 1
    except TypeError:
        valid = False
    if not valid:
        raise ParameterError(f"every={every!r} must be a whole number of frames, 1 or more")
    if callback is not None and not callable(callback):
        raise ParameterError(
            f"callback={callback!r} is not callable; pass a function taking the live "
            "registration, e.g. callback=lambda live: print(live.summary())"
        )
    called_at = live.n_frames
    for item in frames:
        block = np.asarray(item)
        if block.ndim == 2:
            live.add(block)
        elif block.ndim == 3:
            live.add_many(block)
        else:
            raise StackShapeError(
                f"feed got an item of shape {block.shape}; each item is one frame (ny, nx) "
                "or a block of frames (n, ny, nx). Split other arrays into frames first"
            )
        if callback is not None and live.n_frames // every > called_at // every:
            called_at = live.n_frames
            callback(live)
    if callback is not None and live.n_frames != called_at:
        callback(live)
    return live
