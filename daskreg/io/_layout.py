"""Decide which stored axis holds the frames and which hold the image rows and columns."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from daskreg.errors import FrameAxisError, StackShapeError

__all__ = ["Layout", "plan_layout"]

MIN_NDIM = 2
MAX_NDIM = 5


@dataclass(frozen=True)
class Layout:
    """How to reorder a stored array into (leading..., frame, y, x).

    Attributes
    ----------
    order : tuple of int
        Stored-axis indices in output order: leading axes, then the frame axis (absent for a
        single 2-D image), then y and x.
    has_frame_axis : bool
        False for a 2-D image, which the caller turns into a one-frame stack.
    """

    order: tuple[int, ...]
    has_frame_axis: bool


def plan_layout(
    names: Sequence[str | None], shape: tuple[int, ...], frame_axis: int | None
) -> Layout:
    """Find the frame, y and x axes of a stored array.

    Parameters
    ----------
    names : sequence of str or None
        Per stored axis, the role the source gives it (``"frame"``, ``"y"``, ``"x"``), a
        name, or ``None``.
    shape : tuple of int
        The stored shape.
    frame_axis : int or None
        The user's choice of frame axis, counted in the stored order; ``None`` to use the
        names, or else axis ``ndim - 3`` (axis 0 of a 3-D array).

    Returns
    -------
    Layout

    Raises
    ------
    StackShapeError
        Fewer than 2 or more than 5 dimensions.
    FrameAxisError
        ``frame_axis`` is invalid, or a 3-D array without names looks like frames last.
    """
    ndim = len(shape)
    if not MIN_NDIM <= ndim <= MAX_NDIM:
        raise StackShapeError(
            f"an image stack needs 2 to 5 dimensions ((series,) frame, y, x), got shape "
            f"{shape} ({ndim}-D); pass a single image (y, x), a stack (frame, y, x) or "
            "series of stacks (series, frame, y, x)"
        )
    spatial = _named_spatial_axes(names)
    frame = _frame_axis(names, shape, frame_axis, spatial)
    if frame is not None and frame in (spatial or ()):
        role = "y" if frame == spatial[0] else "x"
        raise FrameAxisError(
            f"frame_axis={frame_axis} is the {role} axis of this source (axes {tuple(names)}, "
            f"shape {shape}); pass the index of the frame axis or leave frame_axis=None"
        )
    rest = [axis for axis in range(ndim) if axis != frame]
    if spatial is None:
        spatial = (rest[-2], rest[-1])
    leading = tuple(axis for axis in rest if axis not in spatial)
    middle = () if frame is None else (frame,)
    return Layout(order=leading + middle + spatial, has_frame_axis=frame is not None)


def _named_spatial_axes(names: Sequence[str | None]) -> tuple[int, int] | None:
    if "y" in names and "x" in names:
        return (list(names).index("y"), list(names).index("x"))
    return None


def _frame_axis(
    names: Sequence[str | None],
    shape: tuple[int, ...],
    frame_axis: int | None,
    spatial: tuple[int, int] | None,
) -> int | None:
    ndim = len(shape)
    if frame_axis is not None:
        return _checked_frame_axis(frame_axis, shape)
    if "frame" in names:
        return list(names).index("frame")
    if ndim == MIN_NDIM:
        return None
    if spatial is not None:
        # The axis next to the image axes is the frame axis, as in (series, frame, y, x).
        return [axis for axis in range(ndim) if axis not in spatial][-1]
    if ndim == 3:
        _refuse_frames_last_look(shape)
    return ndim - 3


def _checked_frame_axis(frame_axis: int, shape: tuple[int, ...]) -> int:
    ndim = len(shape)
    if isinstance(frame_axis, bool) or not isinstance(frame_axis, numbers.Integral):
        raise FrameAxisError(
            f"frame_axis must be an int axis index or None, got {frame_axis!r}; "
            "e.g. frame_axis=-1 for a (rows, cols, frames) array"
        )
    if ndim == MIN_NDIM:
        raise FrameAxisError(
            f"frame_axis={frame_axis} was given but the source is one 2-D image of shape "
            f"{shape}; leave frame_axis=None"
        )
    if not -ndim <= frame_axis < ndim:
        raise FrameAxisError(
            f"frame_axis={frame_axis} is out of range for shape {shape} ({ndim}-D); "
            f"pass a value from {-ndim} to {ndim - 1}"
        )
    return int(frame_axis) % ndim


def _refuse_frames_last_look(shape: tuple[int, ...]) -> None:
    rows, cols, last = shape
    # Square frames with a much shorter last axis are the (rows, cols, frames) habit of
    # MATLAB-style code; reading them frames-first would silently make nonsense frames.
    if rows == cols and 2 * last <= rows:
        raise FrameAxisError(
            f"shape {shape} looks like frames last; pass frame_axis=-1 "
            f"(or frame_axis=0 if the {rows} frames are really on axis 0); daskreg.register "
            "takes frames on axis 0, so open such an array first with "
            "daskreg.open_stack(array, frame_axis=-1)"
        )
