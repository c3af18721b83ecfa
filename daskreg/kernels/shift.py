"""Sub-pixel frame shifts by the Fourier shift theorem, the registered sum, and crop bounds.

A frame shifted by ``d`` has its content moved by ``+d``: ``out[y, x] = frame[y - dy,
x - dx]`` (periodic). To align frame ``i`` shift it by ``-s_i`` (see
:mod:`daskreg.kernels.shiftmatrix` for the sign convention). The output is the real
part of the shifted transform (the reference takes the absolute value, which turns
negative pixels positive).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.fft

__all__ = ["fourier_shift_frames", "registered_sum", "CropBounds", "crop_bounds", "coverage"]


def fourier_shift_frames(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift each frame by its own sub-pixel ``(dy, dx)`` (periodic boundaries).

    Parameters
    ----------
    frames : ndarray, shape (..., ny, nx)
        Real frames.
    shifts : ndarray, shape (..., 2)
        ``(dy, dx)`` per frame, in pixels.

    Returns
    -------
    ndarray of float64, shape (..., ny, nx)
    """
    frames = np.asarray(frames, dtype=np.float64)
    return scipy.fft.irfft2(_shifted_spectra(frames, shifts), s=frames.shape[-2:], overwrite_x=True)


def registered_sum(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Sum of a block of frames after aligning each (shift by ``-shifts``).

    The inverse transform is linear, so the shifted spectra are summed first and
    transformed back once: half the transforms of shifting each frame.

    Parameters
    ----------
    frames : ndarray, shape (F, ..., ny, nx)
        Frames, optionally with axes between the frame axis and ``(y, x)`` (shifted
        alike: e.g. one image per detector pixel of a 4D-STEM frame).
    shifts : ndarray, shape (F, 2)
        Displacement ``s_i`` of each frame; frames with a NaN shift are skipped.

    Returns
    -------
    ndarray of float64, shape (..., ny, nx)
    """
    frames = np.asarray(frames)
    shifts = np.asarray(shifts, dtype=np.float64)
    keep = np.isfinite(shifts).all(axis=1)
    if not keep.any():
        return np.zeros(frames.shape[1:])
    per_frame = -shifts[keep].reshape(-1, *(1,) * (frames.ndim - 3), 2)
    spectrum = _shifted_spectra(np.asarray(frames[keep], dtype=np.float64), per_frame)
    return scipy.fft.irfft2(spectrum.sum(axis=0), s=frames.shape[-2:], overwrite_x=True)


def _shifted_spectra(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Half-plane spectra of float64 ``frames`` (..., ny, nx) times the phase ramps of
    ``shifts`` (..., 2)."""
    shifts = np.asarray(shifts, dtype=np.float64)
    ny, nx = frames.shape[-2:]
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    spectrum = scipy.fft.rfft2(frames)
    # The phase ramp is separable: two short exponentials per frame instead of one per
    # frequency (a complex exp costs more than the transforms at 512^2).
    spectrum *= np.exp(-2j * np.pi * ky * shifts[..., 0, None, None])
    spectrum *= np.exp(-2j * np.pi * kx * shifts[..., 1, None, None])
    return spectrum


class CropBounds(NamedTuple):
    """Region of the average that every aligned frame covers: ``avg[ymin:ymax, xmin:xmax]``.

    ``ymax`` and ``xmax`` are exclusive slice ends (positive, unlike the reference).
    """

    ymin: int
    ymax: int
    xmin: int
    xmax: int


def crop_bounds(shifts: np.ndarray, shape: tuple[int, int]) -> CropBounds:
    """Crop bounds of the average from the displacements of the used frames.

    Aligning frame ``i`` moves its content by ``-s_i``, so its data covers
    ``[-s_i, n - s_i)`` along each axis; the bounds are the intersection over frames,
    rounded inwards.

    Parameters
    ----------
    shifts : ndarray, shape (F, 2)
        ``(dy, dx)`` of each frame; NaN rows (unused frames) are ignored.
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    """
    shifts = np.asarray(shifts, dtype=np.float64)
    shifts = shifts[np.isfinite(shifts).all(axis=1)]
    bounds = []
    for axis, size in enumerate(shape):
        low = math.ceil(max(0.0, float(-shifts[:, axis].min()))) if len(shifts) else 0
        high = size - math.ceil(max(0.0, float(shifts[:, axis].max()))) if len(shifts) else size
        bounds.extend([low, max(low, high)])
    return CropBounds(*bounds)


def coverage(shifts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Number of aligned frames whose data covers each pixel of the uncropped average.

    Parameters
    ----------
    shifts : ndarray, shape (F, 2)
        ``(dy, dx)`` of each frame; NaN rows are ignored.
    shape : tuple of int

    Returns
    -------
    ndarray of int, shape (ny, nx)
    """
    shifts = np.asarray(shifts, dtype=np.float64)
    shifts = shifts[np.isfinite(shifts).all(axis=1)]
    per_axis = []
    for axis, size in enumerate(shape):
        pos = np.arange(size)[None, :]
        low = np.ceil(np.maximum(0.0, -shifts[:, axis]))[:, None]
        high = size - np.ceil(np.maximum(0.0, shifts[:, axis]))[:, None]
        per_axis.append((pos >= low) & (pos < high))
    return np.einsum("fy,fx->yx", per_axis[0].astype(int), per_axis[1].astype(int))
