"""A faithful, straightforward port of the reference's pair loop, used as the baseline.

It does per pair what rigidregistration's ``findImageShifts(correlationType="cc",
findMaxima="gf")`` does: one full-size complex inverse FFT of the masked cross-power
spectrum, its absolute value, the ``num_peaks`` brightest PIXELS as candidates (each
zeroed after it is taken), one generic ``scipy.optimize.curve_fit`` of a 2-D elliptical
Gaussian per candidate window away from the edge, and the fit with the largest
amplitude + offset. It exists only to be timed against daskreg in the same process.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit


def _gauss2d(xy, amplitude, x0, y0, sigma_x, sigma_y, theta, offset):
    x, y = xy
    a = np.cos(theta) ** 2 / (2 * sigma_x**2) + np.sin(theta) ** 2 / (2 * sigma_y**2)
    b = -np.sin(2 * theta) / (4 * sigma_x**2) + np.sin(2 * theta) / (4 * sigma_y**2)
    c = np.sin(theta) ** 2 / (2 * sigma_x**2) + np.cos(theta) ** 2 / (2 * sigma_y**2)
    g = offset + np.abs(amplitude) * np.exp(
        -(a * (x - x0) ** 2 + 2 * b * (x - x0) * (y - y0) + c * (y - y0) ** 2)
    )
    return g.ravel()


def reference_pair_shift(
    fft_i: np.ndarray,
    fft_j: np.ndarray,
    mask: np.ndarray,
    num_peaks: int = 5,
    sigma_guess: float = 2.0,
    window_radius: int = 6,
) -> tuple[float, float]:
    """Shift of one pair the reference's way (full FFT + curve_fit per candidate)."""
    nx, ny = fft_i.shape
    cc = np.abs(np.fft.ifft2(mask * fft_j * np.conj(fft_i)))
    shifted = np.fft.fftshift(cc)
    work = shifted.copy()
    candidates = []
    for _ in range(num_peaks):
        idx = np.unravel_index(np.argmax(work), work.shape)
        candidates.append(idx)
        work[idx] = 0
    mesh = np.meshgrid(np.arange(2 * window_radius + 1), np.arange(2 * window_radius + 1))
    best, best_height = None, -np.inf
    for x0, y0 in candidates:
        if not (window_radius <= x0 < nx - window_radius - 1 and
                window_radius <= y0 < ny - window_radius - 1):
            continue
        cut = shifted[x0 - window_radius : x0 + window_radius + 1,
                      y0 - window_radius : y0 + window_radius + 1]
        guess = (cut[window_radius, window_radius], window_radius, window_radius,
                 sigma_guess, sigma_guess, 0, 0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                popt, _ = curve_fit(_gauss2d, mesh, cut.ravel(), p0=guess)
        except RuntimeError:
            popt = np.array(guess, dtype=float)
        height = popt[0] + popt[6]
        if height > best_height:
            best_height = height
            best = (x0 + popt[2] - window_radius, y0 + popt[1] - window_radius)
    if best is None:
        return 0.0, 0.0
    sx, sy = best[0] - nx / 2, best[1] - ny / 2
    return float(sx), float(sy)


def reference_spectra(stack: np.ndarray) -> np.ndarray:
    """The reference's getFFTs: mean-subtracted, Hann-windowed, complex128."""
    n, ny, nx = stack.shape
    ry, rx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    window = (np.sin(np.pi * ry / ny) * np.sin(np.pi * rx / nx)) ** 2
    frames = stack - stack.mean(axis=(1, 2), keepdims=True)
    return np.fft.fft2(frames * window)


def reference_bandpass(shape: tuple[int, int], n: float = 4) -> np.ndarray:
    """The reference's bandpass mask (one size for both axes), FFT order."""
    ny, nx = shape
    kx, ky = np.meshgrid(np.arange(-int(ny / 2), int(ny / 2)), np.arange(-int(nx / 2), int(nx / 2)))
    kr = np.sqrt(kx.T**2 + ky.T**2)
    k_max = nx / n / 2
    return np.fft.fftshift((kr < k_max) * np.sin(2 * n * np.pi * kr / nx) ** 2)


def reference_pair_loop(stack: np.ndarray, n: float = 4) -> np.ndarray:
    """All pairs, the reference's way; returns the raw X/Y matrices as (N, N, 2)."""
    spectra = reference_spectra(stack)
    mask = reference_bandpass(stack.shape[1:], n)
    count = len(stack)
    matrix = np.zeros((count, count, 2))
    for i in range(count - 1):
        for j in range(i + 1, count):
            matrix[i, j] = reference_pair_shift(spectra[i], spectra[j], mask)
            matrix[j, i] = -matrix[i, j]
    return matrix
