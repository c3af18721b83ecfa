"""Inverse transforms written into a given array.

``scipy.fft`` returns a new array per call. For the band-limited pair kernel's
transform outputs (a few MiB per block of pairs) that meant fresh memory every call:
the page faults writing it cost a fifth of the kernel's time. scipy's own pocketfft
binding takes an output array (any strides); it is private, so where it is missing or
refuses the call the public functions are used and their result copied.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft

try:
    from scipy.fft._pocketfft import pypocketfft as _pocketfft
except ImportError:  # pragma: no cover - depends on the installed scipy
    _pocketfft = None

__all__ = ["ifft_into", "irfft_into"]

# pocketfft's normalisation code for 1/n, scipy's default for inverse transforms.
_BY_N = 2


def ifft_into(x: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """``scipy.fft.ifft(x, axis=axis)``, written into ``out`` (returned)."""
    return _into(
        lambda: _pocketfft.c2c(x, (axis,), False, _BY_N, out, 1),
        lambda: scipy.fft.ifft(x, axis=axis),
        out,
    )


def irfft_into(x: np.ndarray, n: int, axis: int, out: np.ndarray) -> np.ndarray:
    """``scipy.fft.irfft(x, n=n, axis=axis)``, written into ``out`` (returned)."""
    return _into(
        lambda: _pocketfft.c2r(x, (axis,), n, False, _BY_N, out, 1),
        lambda: scipy.fft.irfft(x, n=n, axis=axis),
        out,
    )


def _into(
    direct: Callable[[], np.ndarray], public: Callable[[], np.ndarray], out: np.ndarray
) -> np.ndarray:
    if _pocketfft is not None:
        try:
            return direct()
        except (TypeError, ValueError, RuntimeError):  # pragma: no cover - other scipy
            pass
    out[...] = public()
    return out
