"""Choose one signal when a file holds several (images, plots, coordinate arrays...)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from daskreg.errors import ParameterError, StackShapeError
from daskreg.io._warn import warn_caller

__all__ = ["Candidate", "choose_signal"]


@dataclass(frozen=True)
class Candidate:
    """One signal of a file, as offered for selection.

    Attributes
    ----------
    title : str
        The name ``signal=`` matches.
    shape : tuple of int
        Its shape, to report and to find the largest.
    is_image : bool
        True when it can be an image stack (two image dimensions).
    """

    title: str
    shape: tuple[int, ...]
    is_image: bool

    def describe(self, index: int) -> str:
        return f"[{index}] {self.title!r} {self.shape}"


def choose_signal(
    candidates: Sequence[Candidate],
    signal: int | str | None,
    *,
    source: str,
    preferred: Sequence[str] = (),
) -> int:
    """Return the index of the signal to read.

    Parameters
    ----------
    candidates : sequence of Candidate
        The signals the source holds, in its order.
    signal : int, str or None
        The user's choice by index or title (any index when the only signal has more
        than 3 dimensions: it then picks a series, see ``open_stack``); ``None`` picks the
        first title found in ``preferred``, otherwise the largest image stack.
    source : str
        Path named in messages.
    preferred : sequence of str
        Titles that are taken without a warning when ``signal`` is None.

    Returns
    -------
    int

    Raises
    ------
    ParameterError
        ``signal`` names no signal of the source.
    StackShapeError
        ``signal`` is None and the source holds no image.

    Warns
    -----
    RegistrationWarning
        The source holds several signals and one was chosen automatically.
    """
    listing = ", ".join(c.describe(i) for i, c in enumerate(candidates))
    if signal is not None:
        return _requested(candidates, signal, source, listing)
    titles = [c.title for c in candidates]
    for title in preferred:
        if title in titles:
            return titles.index(title)
    images = [i for i, c in enumerate(candidates) if c.is_image]
    if not images:
        raise StackShapeError(
            f"{source!r} holds no image (2 image dimensions) among its signals: {listing}; "
            "daskreg registers image stacks"
        )
    chosen = max(images, key=lambda i: math.prod(candidates[i].shape))
    if len(candidates) > 1:
        warn_caller(
            f"{source!r} holds {len(candidates)} signals: {listing}; took "
            f"{candidates[chosen].describe(chosen)}, the largest image stack. Pass "
            "signal=<index or title> to choose another."
        )
    return chosen


def _requested(
    candidates: Sequence[Candidate], signal: int | str, source: str, listing: str
) -> int:
    if isinstance(signal, str):
        for index, candidate in enumerate(candidates):
            if candidate.title == signal:
                return index
    elif isinstance(signal, numbers.Integral) and not isinstance(signal, bool):
        if 0 <= signal < len(candidates):
            return int(signal)
        # One signal with leading dims (an ImageJ hyperstack's channels, a 4-D store): the
        # index is one of its series, which open_stack takes.
        if len(candidates) == 1 and len(candidates[0].shape) > 3:
            return 0
    raise ParameterError(
        f"signal={signal!r} matches none of the signals in {source!r}: {listing}; "
        "pass one of these indices or titles"
    )
