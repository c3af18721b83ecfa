"""Transforms by the fastest library installed; the inverse ones written into a given array.

``scipy.fft`` returns a new array per call. For the band-limited pair kernel's
transform outputs (a few MiB per block of pairs) that meant fresh memory every call:
the page faults writing it cost a fifth of the kernel's time. Both libraries used here
take an output array (any strides):

- ducc0, pocketfft's successor by its author, built with AVX: the pair kernel's two
  transforms are 15-25 % faster than with scipy's build of pocketfft (a pair about
  14 % cheaper at 512^2);
- scipy's own pocketfft binding, where ducc0 is missing. It is private, so where it is
  missing too or refuses the call the public functions are used and their result copied.

The library is chosen once, at import. The libraries differ by round-off only. The
forward transforms of the frame spectra run on as many threads as ``scipy.fft``'s
``workers`` setting asks for (``scipy.fft.set_workers``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import scipy.fft

try:
    import ducc0.fft as _ducc
except ImportError:  # pragma: no cover - ducc0 is a dependency; kept optional at run time
    _ducc = None

try:
    from scipy.fft._pocketfft import pypocketfft as _pocketfft
except ImportError:  # pragma: no cover - depends on the installed scipy
    _pocketfft = None

__all__ = ["rfft", "fft", "ifft_into", "irfft_into", "rfft2_into", "irfft2_into", "backend"]

# Normalisation code of both libraries for 1/n, scipy's default for inverse transforms.
_BY_N = 2


def backend() -> str:
    """Name of the library the transforms run on: ``ducc0``, ``pocketfft`` or ``scipy``."""
    if _ducc is not None:
        return "ducc0"
    return "pocketfft" if _pocketfft is not None else "scipy"


def rfft(x: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.fft.rfft(x, axis=axis)``."""
    if _ducc is not None:
        return _ducc.r2c(x, axes=(axis,), forward=True, nthreads=_threads())
    return scipy.fft.rfft(x, axis=axis)


def fft(x: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.fft.fft(x, axis=axis)``."""
    if _ducc is not None:
        return _ducc.c2c(x, axes=(axis,), forward=True, nthreads=_threads())
    return scipy.fft.fft(x, axis=axis)


def _threads() -> int:
    """Threads for a transform: scipy.fft's ``workers`` (negative counts from the CPUs)."""
    workers = scipy.fft.get_workers()
    return workers if workers > 0 else max(1, (os.cpu_count() or 1) + 1 + workers)


def ifft_into(x: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """``scipy.fft.ifft(x, axis=axis)``, written into ``out`` (returned)."""
    if _ducc is not None:
        return _ducc.c2c(x, axes=(axis,), forward=False, inorm=_BY_N, out=out, nthreads=1)
    return _into(
        lambda: _pocketfft.c2c(x, (axis,), False, _BY_N, out, 1),
        lambda: scipy.fft.ifft(x, axis=axis),
        out,
    )


def irfft_into(x: np.ndarray, n: int, axis: int, out: np.ndarray) -> np.ndarray:
    """``scipy.fft.irfft(x, n=n, axis=axis)``, written into ``out`` (returned)."""
    if _ducc is not None:
        return _ducc.c2r(
            x, axes=(axis,), lastsize=n, forward=False, inorm=_BY_N, out=out, nthreads=1
        )
    return _into(
        lambda: _pocketfft.c2r(x, (axis,), n, False, _BY_N, out, 1),
        lambda: scipy.fft.irfft(x, n=n, axis=axis),
        out,
    )


def rfft2_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``scipy.fft.rfft2(x)`` over the last two axes, written into ``out`` (returned).

    Runs on :func:`_threads` threads. Writing into the same ``out`` frame after frame
    keeps it in cache: a fresh array per frame cost a quarter of the registered
    average's time in page faults (40 x 512^2).
    """
    if _ducc is not None:
        return _ducc.r2c(x, axes=(-2, -1), forward=True, out=out, nthreads=_threads())
    return _into(
        lambda: _pocketfft.r2c(x, (x.ndim - 2, x.ndim - 1), True, 0, out, _threads()),
        lambda: scipy.fft.rfft2(x, workers=_threads()),
        out,
    )


def irfft2_into(x: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """``scipy.fft.irfft2(x, s=(x.shape[-2], n))``, written into ``out`` (returned)."""
    if _ducc is not None:
        return _ducc.c2r(
            x, axes=(-2, -1), lastsize=n, forward=False, inorm=_BY_N, out=out, nthreads=_threads()
        )
    return _into(
        lambda: _pocketfft.c2r(x, (x.ndim - 2, x.ndim - 1), n, False, _BY_N, out, _threads()),
        lambda: scipy.fft.irfft2(x, s=(x.shape[-2], n), workers=_threads()),
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
