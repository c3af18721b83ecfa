"""The Fourier mask of a registration's parameters, for frames of a given shape."""

from __future__ import annotations

import numpy as np

from daskreg.errors import ParameterError
from daskreg.kernels import masks
from daskreg.params import RegistrationParams

__all__ = ["build_mask"]


def build_mask(params: RegistrationParams, shape: tuple[int, int]) -> np.ndarray:
    """The Fourier mask of ``params`` for frames of ``shape``, in FFT order.

    Raises
    ------
    ParameterError
        A user mask of the wrong shape, or a cutoff that leaves no frequency.
    """
    if isinstance(params.mask, str) and params.mask == "auto":
        raise ParameterError(
            "mask='auto' is chosen from the frames (daskreg.autoparams.resolve) before a "
            "mask can be built; resolve the parameters first, or pass a mask kind"
        )
    if isinstance(params.mask, np.ndarray):
        if params.mask.shape != tuple(shape):
            raise ParameterError(
                f"the user mask has shape {params.mask.shape} but frames are {tuple(shape)}; "
                "build it on daskreg.fourier_grids(frame_shape)"
            )
        mask = np.fft.ifftshift(params.mask)
    elif params.mask == "elliptical":
        mask = masks.elliptical_mask(shape, params.n1, params.n2, params.theta)
    else:
        mask = masks.fourier_mask(shape, params.mask, params.cutoff)
    # The DC term is zero after mean subtraction, so a mask must pass something else.
    passed = mask.copy()
    passed[0, 0] = 0
    if not np.any(passed):
        raise ParameterError(
            f"the Fourier mask {params.mask!r} with n={params.cutoff:g} keeps no spatial frequency "
            f"for "
            f"frames of {tuple(shape)}: the cutoff is finer than one cycle per frame; use a "
            f"smaller n (at most {min(shape) / 2:g})"
        )
    return mask
