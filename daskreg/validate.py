"""Validation of stacks at the public boundary.

Kernels trust their input; everything a user passes is checked here once, and every
error names the problem, the value seen and the fix.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from daskreg.errors import ParameterError, StackDtypeError, StackShapeError, TooFewFramesError
from daskreg.kernels.detector import frame_survey
from daskreg.params import RegistrationParams

__all__ = ["FRAME_DIMS", "check_stack", "frame_quality"]

FRAME_DIMS = ("frame", "y", "x")
MIN_FRAMES = 3


def check_stack(stack: xr.DataArray, params: RegistrationParams) -> None:
    """Check a stack's dims, dtype, number of frames and frame size against ``params``.

    Raises
    ------
    StackShapeError, StackDtypeError, TooFewFramesError
    ParameterError
        ``band``, ``frames`` or ``bad_frames`` point outside the stack.
    """
    if stack.dims[-3:] != FRAME_DIMS:
        raise StackShapeError(
            f"a stack needs dims (..., 'frame', 'y', 'x'); got {stack.dims} with shape "
            f"{stack.shape}. Rename or transpose it, e.g. "
            "stack.transpose(..., 'frame', 'y', 'x')"
        )
    dtype = stack.dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)) or (
        dtype == np.bool_
    ):
        raise StackDtypeError(
            f"frames must hold real numbers; got dtype {dtype}. Convert first, e.g. "
            "stack.astype('float32') (for complex data pass its abs() or real part)"
        )
    n_frames, ny, nx = stack.shape[-3:]
    if n_frames < MIN_FRAMES:
        raise TooFewFramesError(
            f"registration needs at least {MIN_FRAMES} frames; got {n_frames} "
            f"(shape {stack.shape}): outlier rejection checks each pair through a third frame. "
            "Pass a longer series; a single image has nothing to register; for frames stored "
            "on the last axis open it with daskreg.open_stack(source, frame_axis=-1)"
        )
    if params.find_maxima == "gf" and params.window_radius is not None:
        side = 2 * params.window_radius + 1
        if min(ny, nx) < side:
            raise StackShapeError(
                f"frames of {ny}x{nx} pixels are smaller than the Gaussian-fit window "
                f"({side}x{side}, window_radius={params.window_radius}); pass a smaller "
                f"window_radius (at most {(min(ny, nx) - 1) // 2})"
            )
    if min(ny, nx) < 4:
        raise StackShapeError(
            f"frames of {ny}x{nx} pixels are too small to register; frames need at least 4 "
            "pixels along y and x. If the frames are on another axis, open the data with "
            "daskreg.open_stack(source, frame_axis=...)"
        )
    _check_frame_parameters(params, n_frames)


def _check_frame_parameters(params: RegistrationParams, n_frames: int) -> None:
    # Parameters that count frames are only checked against a stack here; a wrong value
    # would otherwise be silently clipped (frames, band) or index another frame (bad_frames).
    if params.band is not None and params.band > n_frames - 1:
        raise ParameterError(
            f"band={params.band} is wider than the stack: {n_frames} frames have frame offsets "
            f"up to {n_frames - 1}; pass band=None to correlate all pairs, or a band of at "
            f"most {n_frames - 1}"
        )
    if params.frames is not None:
        start, stop = params.frames
        if start < 0 or stop > n_frames:
            raise ParameterError(
                f"frames=({start}, {stop}) is outside the stack of {n_frames} frames; pass a "
                f"half-open range within (0, {n_frames})"
            )
    outside = [b for b in params.bad_frames if not 0 <= b < n_frames]
    if outside:
        raise ParameterError(
            f"bad_frames {outside} are not frames of this stack ({n_frames} frames, indices "
            f"0 to {n_frames - 1}); pass frame indices within that range"
        )


def frame_quality(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite flag and standard deviation of each frame of a block.

    Parameters
    ----------
    frames : ndarray, shape (F, ny, nx)

    Returns
    -------
    finite : ndarray of bool, shape (F,)
        False where a frame holds a NaN or infinite pixel.
    std : ndarray of float64, shape (F,)
        Standard deviation of the finite pixels (0 for a constant frame).
    """
    finite, std, _ = frame_survey(frames, moments=False)
    return finite, std
