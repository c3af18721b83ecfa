"""Fourier masks: weights on the spatial frequencies of the correlation spectrum.

Frequencies are measured per axis, so non-square and odd-sized frames are right:
``ky`` and ``kx`` are in cycles per frame along each axis (integer FFT indices),
``q = sqrt((ky/ny)**2 + (kx/nx)**2)`` is the radial frequency in cycles per pixel.
A cutoff ``n`` (features smaller than about ``n`` pixels are ignored) puts the edge of
the hard-cut masks at ``q_max = 1/(2n)``; on a square frame of side ``size`` this is
the reference's ``k_max = size/n/2``. Masks are written with ``rho = q / q_max``:

==========  ===========================================  ===============
kind        weight for ``rho < 1``                         beyond ``rho=1``
==========  ===========================================  ===============
bandpass    ``sin(pi rho)**2``                             0
lowpass     ``cos(pi rho / 2)**2`` (same as ``hann``)      0
hann        ``cos(pi rho / 2)**2``                         0
hamming     ``0.54 + 0.46 cos(pi rho)``                    0
blackman    ``0.42 + 0.5 cos(pi rho) + 0.08 cos(2 pi rho)``  0
gaussian    ``exp(-(3 rho)**2)`` everywhere (no hard cut, no factor 1/2)
none        1 everywhere
==========  ===========================================  ===============

The elliptical Gaussian has ``sigma_k = q_max(n_k) / 3`` along its two axes, the first
(``n1``) at angle ``theta`` (radians) from the +x (column) axis towards +y (rows), and
uses the rotated-Gaussian form with the factor 1/2, as the reference does, so
``elliptical(n, n, 0)`` is not ``gaussian(n)``.

Masks are returned on the unshifted FFT grid (DC at ``[0, 0]``) unless ``centred=True``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import numpy as np

__all__ = [
    "MaskKind",
    "MASK_KINDS",
    "FourierGrids",
    "fourier_grids",
    "fourier_mask",
    "elliptical_mask",
    "mask_support",
]

MaskKind = Literal["bandpass", "lowpass", "hann", "hamming", "blackman", "gaussian", "none"]
MASK_KINDS: tuple[str, ...] = get_args(MaskKind)

# The Gaussian has no hard edge; below this weight its contribution is round-off.
GAUSSIAN_TRUNCATION = 1e-6


class FourierGrids(NamedTuple):
    """Frequency grids of a frame, each of shape ``(ny, nx)``.

    Attributes
    ----------
    ky, kx : ndarray
        Frequency along y and x in cycles per frame (signed FFT indices).
    q : ndarray
        Radial frequency in cycles per pixel, ``sqrt((ky/ny)**2 + (kx/nx)**2)``.
    """

    ky: np.ndarray
    kx: np.ndarray
    q: np.ndarray


def fourier_grids(shape: tuple[int, int], *, centred: bool = True) -> FourierGrids:
    """Frequency grids on which every mask is defined.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)``; any sizes, odd or even.
    centred : bool, default True
        True puts zero frequency at the array centre (``np.fft.fftshift`` order, the
        layout to build a user mask in); False gives the FFT's own order.

    Returns
    -------
    FourierGrids
        ``(ky, kx, q)``, see :class:`FourierGrids`.

    Examples
    --------
    A high-pass ring mask that drops everything slower than 8 cycles per frame:

    >>> g = fourier_grids((64, 80))
    >>> user_mask = (np.hypot(g.ky, g.kx) > 8).astype(float)
    """
    ny, nx = shape
    fy = np.fft.fftfreq(ny)
    fx = np.fft.fftfreq(nx)
    if centred:
        fy, fx = np.fft.fftshift(fy), np.fft.fftshift(fx)
    qy, qx = np.meshgrid(fy, fx, indexing="ij")
    return FourierGrids(ky=qy * ny, kx=qx * nx, q=np.hypot(qy, qx))


def _radial_profile(kind: str, rho: np.ndarray) -> np.ndarray:
    inside = rho < 1
    if kind == "bandpass":
        return inside * np.sin(np.pi * rho) ** 2
    if kind in ("lowpass", "hann"):
        return inside * np.cos(np.pi * rho / 2) ** 2
    if kind == "hamming":
        return inside * (0.54 + 0.46 * np.cos(np.pi * rho))
    if kind == "blackman":
        return inside * (0.42 + 0.5 * np.cos(np.pi * rho) + 0.08 * np.cos(2 * np.pi * rho))
    if kind == "gaussian":
        weight = np.exp(-((3 * rho) ** 2))
        return np.where(weight < GAUSSIAN_TRUNCATION, 0.0, weight)
    if kind == "none":
        return np.ones_like(rho)
    raise ValueError(f"unknown mask kind {kind!r}; expected one of {MASK_KINDS}")


def fourier_mask(
    shape: tuple[int, int],
    kind: MaskKind = "bandpass",
    n: float = 4.0,
    *,
    centred: bool = False,
) -> np.ndarray:
    """Radial Fourier mask of one of the reference's kinds.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)``; any sizes, odd or even.
    kind : {"bandpass", "lowpass", "hann", "hamming", "blackman", "gaussian", "none"}
        Mask profile, see the module notes.
    n : float, default 4
        Cutoff: features smaller than about ``n`` pixels are ignored.
    centred : bool, default False
        Zero frequency at the centre (True) or at ``[0, 0]`` (False).

    Returns
    -------
    ndarray of float64, shape (ny, nx)
        Weights in [0, 1].
    """
    q = fourier_grids(shape, centred=centred).q
    return _radial_profile(kind, q * (2.0 * n))


def elliptical_mask(
    shape: tuple[int, int],
    n1: float,
    n2: float,
    theta: float = 0.0,
    *,
    centred: bool = False,
) -> np.ndarray:
    """Elliptical Gaussian Fourier mask for anisotropic lattices.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    n1, n2 : float
        Smallest feature size kept (pixels) along the two principal axes; each sets
        ``sigma = 1 / (6 n)`` cycles per pixel (cutoff at three sigma).
    theta : float, default 0
        Angle of the ``n1`` axis from +x (columns) towards +y (rows), in radians.
    centred : bool, default False
        Zero frequency at the centre (True) or at ``[0, 0]`` (False).

    Returns
    -------
    ndarray of float64, shape (ny, nx)
    """
    grids = fourier_grids(shape, centred=centred)
    fy, fx = grids.ky / shape[0], grids.kx / shape[1]
    s1, s2 = 1.0 / (6.0 * n1), 1.0 / (6.0 * n2)
    cos, sin = np.cos(theta), np.sin(theta)
    a = cos**2 / (2 * s1**2) + sin**2 / (2 * s2**2)
    b = -np.sin(2 * theta) / (4 * s1**2) + np.sin(2 * theta) / (4 * s2**2)
    c = sin**2 / (2 * s1**2) + cos**2 / (2 * s2**2)
    weight = np.exp(-(a * fx**2 + 2 * b * fx * fy + c * fy**2))
    return np.where(weight < GAUSSIAN_TRUNCATION, 0.0, weight)


def mask_support(mask: np.ndarray) -> tuple[int, int]:
    """Largest ``|ky|`` and ``|kx|`` (cycles per frame) where an FFT-order mask is non-zero.

    The correlation spectrum vanishes beyond these, so the correlation can be computed
    on a coarser grid (band-limited path).

    Parameters
    ----------
    mask : ndarray, shape (ny, nx)
        Mask in FFT order (DC at ``[0, 0]``).

    Returns
    -------
    tuple of int
        ``(ky_max, kx_max)``; ``(-1, -1)`` for an all-zero mask.
    """
    ny, nx = mask.shape
    nonzero = mask != 0
    if not nonzero.any():
        return (-1, -1)
    ky = np.abs(np.fft.fftfreq(ny) * ny).round().astype(int)
    kx = np.abs(np.fft.fftfreq(nx) * nx).round().astype(int)
    return int(ky[nonzero.any(axis=1)].max()), int(kx[nonzero.any(axis=0)].max())
