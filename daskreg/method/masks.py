"""The Fourier mask of a registration's parameters, for frames of a given shape."""

from __future__ import annotations

from functools import lru_cache

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
        mask = _kind_mask(tuple(shape), "elliptical", (params.n1, params.n2, params.theta))
    else:
        mask = _kind_mask(tuple(shape), params.mask, (params.cutoff,))
    # The DC term is zero after mean subtraction, so a mask must pass something else.
    if not np.any(np.ravel(mask)[1:]):
        raise ParameterError(
            f"the Fourier mask {params.mask!r} with n={params.cutoff:g} keeps no spatial frequency "
            f"for "
            f"frames of {tuple(shape)}: the cutoff is finer than one cycle per frame; use a "
            f"smaller n (at most {min(shape) / 2:g})"
        )
    return mask


@lru_cache(maxsize=8)
def _kind_mask(shape: tuple[int, int], kind: str, numbers: tuple[float, ...]) -> np.ndarray:
    """A mask kind's mask, read-only, computed once per shape and numbers.

    A run builds the same mask in several steps (about 6 ms each at 512^2).
    """
    if kind == "elliptical":
        mask = masks.elliptical_mask(shape, *numbers)
    else:
        mask = masks.fourier_mask(shape, kind, *numbers)
    mask.flags.writeable = False
    return mask
