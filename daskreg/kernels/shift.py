"""Sub-pixel frame shifts by the Fourier shift theorem: the aligned sum, the aligned frames.

A frame shifted by ``d`` has its content moved by ``+d``: ``out[y, x] = frame[y - dy,
x - dx]`` (periodic). To align frame ``i`` shift it by ``-s_i`` (see
:mod:`daskreg.kernels.shiftmatrix` for the sign convention). The output is the real
part of the shifted transform (the reference takes the absolute value, which turns
negative pixels positive).

Every registered average and aligned stack in daskreg is made by the two kernels here:
:func:`registered_sum` (the in-memory engine, the Dask engine, :func:`daskreg.apply_shifts`,
4D-STEM) and :func:`aligned_frames` (saved and lazily aligned stacks). Both take the frames
in any layout (the two scan axes anywhere after the frame axis, other axes such as
energy or the detector shifted alike), work in float64, and transform a few planes at a
time into buffers reused across the frames, so that memory stays bounded for 4D-STEM
frames of hundreds of MB and the transforms never wait for fresh pages.

References
----------
R. N. Bracewell, *The Fourier Transform and Its Applications*, 3rd ed. (McGraw-Hill,
2000), ch. 6: the shift theorem, ``f(x - d) <-> exp(-2 pi i k d) F(k)``.

Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI 10.1016/j.ultramic.2018.04.008:
the Fourier-shift average.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numba
import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from daskreg.kernels._fft import irfft2_into, rfft2_into

__all__ = [
    "registered_sum",
    "aligned_frames",
    "fourier_shift_frames",
    "phase_ramp",
    "add_shifted",
    "shift_spectrum",
    "CropBounds",
    "crop_bounds",
    "coverage",
    "frame_coverage",
]

# float64 planes transformed at once (at least one). The work buffers hold about three
# such pieces: a whole 64 MiB chunk (or one 4D-STEM frame of a few hundred MB) at once
# would need gigabytes, and a small piece stays in cache between the transform and the
# phase ramps. At 40 x 512^2 one frame per transform was 10 % faster than two, 25 %
# faster than eight (all on both cores).
_PIECE_BYTES = 2 * 2**20


def registered_sum(
    frames: np.ndarray, shifts: np.ndarray, *, scan_axes: tuple[int, int] = (-2, -1)
) -> np.ndarray:
    """Sum over the frame axis of the frames aligned by the Fourier shift theorem.

    Frame ``i`` is shifted by ``-shifts[i]`` along the two scan axes (periodic
    boundaries, real part). The inverse transform is linear, so the phase-ramped
    spectra are summed and transformed back once: one forward transform per frame and
    one inverse for the whole sum.

    Parameters
    ----------
    frames : ndarray, shape (F, ...)
        Real frames on axis 0; the scan axes ``(y, x)`` at ``scan_axes``, any other axes
        (energy, detector) shifted alike. Any real dtype.
    shifts : ndarray, shape (F, 2)
        Displacement ``s_i = (dy, dx)`` of each frame, pixels; frames with a NaN shift are
        left out.
    scan_axes : (int, int), default (-2, -1)
        Axes of ``frames`` (not 0) holding ``y`` and ``x``.

    Returns
    -------
    ndarray of float64, shape ``frames.shape[1:]``
        Zero where no frame has a finite shift.

    Notes
    -----
    The spectra are summed in complex128 and every transform runs in float64, whatever
    the input dtype. The transforms use ``scipy.fft``'s ``workers`` threads
    (:func:`scipy.fft.set_workers`).

    References
    ----------
    The registered average of Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI
    10.1016/j.ultramic.2018.04.008; the shift theorem as in the module's References.

    Examples
    --------
    >>> frame = np.zeros((4, 4)); frame[1, 2] = 1.0
    >>> moved = np.stack([frame, np.roll(frame, (1, -1), axis=(0, 1))])
    >>> total = registered_sum(moved, np.array([[0.0, 0.0], [1.0, -1.0]]))
    >>> round(float(total[1, 2]), 9), round(float(abs(total).sum()), 9)
    (2.0, 2.0)
    """
    planes, restore = _planes(np.asarray(frames), scan_axes, keep_frames=False)
    shifts = np.asarray(shifts, dtype=np.float64)
    used = np.flatnonzero(np.isfinite(shifts).all(axis=1))
    work = _Buffers(planes.shape)
    total = np.zeros(planes.shape[1:])
    for t, frame_pieces in work.pieces(used):
        acc = work.total[: t.stop - t.start]
        acc[...] = 0
        for index in frame_pieces:
            spectra = work.transform(planes, index, t)
            _phase_ramps(spectra, *_ramps(-shifts[index], planes.shape[-2:]), acc, True)
        irfft2_into(acc, planes.shape[-1], total[t])
    return restore(total)


def aligned_frames(
    frames: np.ndarray,
    shifts: np.ndarray,
    *,
    scan_axes: tuple[int, int] = (-2, -1),
    dtype: np.dtype | type = np.float64,
) -> np.ndarray:
    """Each frame aligned by the Fourier shift theorem (shifted by ``-shifts``).

    Parameters
    ----------
    frames, shifts, scan_axes
        As for :func:`registered_sum`.
    dtype : numpy dtype, default float64
        Of the output (the transforms run in float64).

    Returns
    -------
    ndarray of ``dtype``, shape ``frames.shape``
        Frames with a NaN shift are NaN.

    References
    ----------
    As for :func:`registered_sum`, whose per-frame terms these are.

    Examples
    --------
    >>> frame = np.zeros((4, 4)); frame[1, 2] = 1.0
    >>> aligned = aligned_frames(frame[None], np.array([[1.0, 0.0]]))
    >>> round(float(aligned[0, 0, 2]), 9), round(float(abs(aligned).sum()), 9)
    (1.0, 1.0)
    """
    planes, restore = _planes(np.asarray(frames), scan_axes, keep_frames=True)
    shifts = np.asarray(shifts, dtype=np.float64)
    used = np.isfinite(shifts).all(axis=1)
    out = np.full(planes.shape, np.nan, dtype=dtype)
    work = _Buffers(planes.shape)
    for t, frame_pieces in work.pieces(np.flatnonzero(used)):
        for index in frame_pieces:
            spectra = work.transform(planes, index, t)
            _phase_ramps(spectra, *_ramps(-shifts[index], planes.shape[-2:]), work.total, False)
            back = work.real[: len(index), : t.stop - t.start]
            out[index, t] = irfft2_into(spectra, planes.shape[-1], back)
    return restore(out)


def fourier_shift_frames(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift each frame by its own sub-pixel ``(dy, dx)`` (periodic boundaries).

    The content moves by ``+shifts``: :func:`aligned_frames` with the opposite sign.

    Parameters
    ----------
    frames : ndarray, shape (..., ny, nx)
        Real frames.
    shifts : ndarray, shape (..., 2)
        ``(dy, dx)`` per frame, in pixels (broadcast against the frames' leading axes).

    Returns
    -------
    ndarray of float64, shape (..., ny, nx)
    """
    frames = np.asarray(frames)
    lead = frames.shape[:-2]
    per_frame = np.broadcast_to(np.asarray(shifts, dtype=np.float64), (*lead, 2))
    flat = frames.reshape(math.prod(lead), *frames.shape[-2:])
    return aligned_frames(flat, -per_frame.reshape(-1, 2)).reshape(frames.shape)


def _planes(
    frames: np.ndarray, scan_axes: tuple[int, int], *, keep_frames: bool
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """``frames`` as ``(F, T, ny, nx)`` planes, and the function that puts them back.

    The planes are a view where the layout allows; the function puts an
    ``(F, T, ny, nx)`` (or, without ``keep_frames``, ``(T, ny, nx)``) result back into
    the input's layout.
    """
    axes = normalize_axis_tuple(scan_axes, frames.ndim)
    moved = np.moveaxis(frames, axes, (-2, -1))
    lead = moved.shape[1:-2]
    planes = moved.reshape(len(moved), math.prod(lead), *moved.shape[-2:])
    outer = moved.shape[:1] if keep_frames else ()
    back = axes if keep_frames else tuple(a - 1 for a in axes)

    def restore(result: np.ndarray) -> np.ndarray:
        return np.moveaxis(result.reshape(*outer, *lead, *moved.shape[-2:]), (-2, -1), back)

    return planes, restore


class _Buffers:
    """Work arrays for pieces of ``(F, T, ny, nx)`` planes, allocated once per call."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        n_frames, n_planes, ny, nx = shape
        plane = 8 * ny * nx
        self.t_step = max(1, min(n_planes, _PIECE_BYTES // plane))
        self.f_step = max(1, min(n_frames, _PIECE_BYTES // (plane * self.t_step)))
        self.real = np.empty((self.f_step, self.t_step, ny, nx))
        self.spectra = np.empty((self.f_step, self.t_step, ny, nx // 2 + 1), np.complex128)
        self.total = np.empty(self.spectra.shape[1:], np.complex128)
        self.n_planes = n_planes

    def pieces(self, used: np.ndarray) -> Iterator[tuple[slice, list[np.ndarray]]]:
        """Plane slices, each with the used frames in groups of at most ``f_step``."""
        groups = [used[k : k + self.f_step] for k in range(0, len(used), self.f_step)]
        for start in range(0, self.n_planes, self.t_step):
            yield slice(start, min(start + self.t_step, self.n_planes)), groups

    def transform(self, planes: np.ndarray, index: np.ndarray, t: slice) -> np.ndarray:
        """Spectra of the planes ``t`` of the frames ``index``, float64 (in the buffers)."""
        real = self.real[: len(index), : t.stop - t.start]
        for k, frame in enumerate(index):
            np.copyto(real[k], planes[frame, t])
        return rfft2_into(real, self.spectra[: len(index), : t.stop - t.start])


def _ramps(shifts: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column phase ramps ``(F, ny)``, ``(F, nx // 2 + 1)`` moving content by ``+shifts``.

    The ramp is separable: two short exponentials per frame instead of one per
    frequency (a complex exp costs more than the transforms at 512^2).
    """
    ny, nx = shape
    ky = np.fft.fftfreq(ny)
    kx = np.fft.rfftfreq(nx)
    return (
        np.exp(-2j * np.pi * shifts[:, :1] * ky),
        np.exp(-2j * np.pi * shifts[:, 1:] * kx),
    )


def phase_ramp(
    shift: np.ndarray, shape: tuple[int, int], *, columns: int | None = None
) -> np.ndarray:
    """The real-FFT-layout factor ``(ny, nx // 2 + 1)`` that moves content by ``+shift``.

    Parameters
    ----------
    shift : ndarray, shape (2,)
        ``(dy, dx)`` in pixels.
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    columns : int, optional
        Only the first ``columns`` columns (``kx``) of the factor.

    Returns
    -------
    ndarray of complex128
        ``exp(-2 pi i (ky dy + kx dx))``: multiply a frame's ``rfft2`` by it.
    """
    ey, ex = _ramps(np.asarray(shift, dtype=np.float64).reshape(1, 2), shape)
    return ey[0][:, None] * ex[0][None, :columns]


def add_shifted(
    spectrum: np.ndarray, shift: np.ndarray, shape: tuple[int, int], total: np.ndarray
) -> None:
    """``total += spectrum * phase_ramp(shift, shape)`` in one pass, with no temporary.

    ``spectrum`` and ``total``: real-FFT-layout ``(ny, nx // 2 + 1)`` complex128 arrays
    of frames of ``shape``. A fresh ramp and product per frame cost more than the sum.
    """
    ey, ex = _ramps(np.asarray(shift, dtype=np.float64).reshape(1, 2), shape)
    _phase_ramps(spectrum[None, None], ey, ex, total[None], True)


def shift_spectrum(spectrum: np.ndarray, shift: np.ndarray, shape: tuple[int, int]) -> None:
    """``spectrum *= phase_ramp(shift, shape)`` in place, on its first columns.

    ``spectrum``: real-FFT-layout ``(ny, k)`` complex128, the first ``k`` columns
    (``k <= nx // 2 + 1``) of a spectrum of a frame of ``shape``.
    """
    ey, ex = _ramps(np.asarray(shift, dtype=np.float64).reshape(1, 2), shape)
    _phase_ramps(spectrum[None, None], ey, ex, spectrum[None], False)


@numba.njit(cache=True, nogil=True)
def _phase_ramps(
    spectra: np.ndarray, ey: np.ndarray, ex: np.ndarray, total: np.ndarray, add: bool
) -> None:
    """Multiply ``spectra`` ``(F, T, ky, kx)`` by each frame's ramps ``ey[f, ky] * ex[f, kx]``.

    Summed over frames into ``total`` ``(T, ky, kx)`` with ``add``, else in place. One
    pass over the spectra, with no temporary of their size.
    """
    n_frames, n_planes, ny, nk = spectra.shape
    for f in range(n_frames):
        for t in range(n_planes):
            for i in range(ny):
                row = ey[f, i]
                for k in range(nk):
                    value = spectra[f, t, i, k] * (row * ex[f, k])
                    if add:
                        total[t, i, k] += value
                    else:
                        spectra[f, t, i, k] = value


# Shifts within this of a whole pixel count as whole: the same solve run on another path
# (compiled or not, another summation order) lands a round-off either side of it, and
# the crop would move by a pixel.
_ROUND_OFF = 1e-6


def _ceil(value: float) -> int:
    """``math.ceil`` of ``value``, a round-off above a whole number counting as it."""
    return math.ceil(value - _ROUND_OFF)


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
        low = _ceil(max(0.0, float(-shifts[:, axis].min()))) if len(shifts) else 0
        high = size - _ceil(max(0.0, float(shifts[:, axis].max()))) if len(shifts) else size
        bounds.extend([low, max(low, high)])
    return CropBounds(*bounds)


def frame_coverage(
    shifts: np.ndarray,
    shape: tuple[int, int],
    *,
    origin: tuple[int, int] = (0, 0),
    size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which rows and columns of each aligned frame hold data of that frame.

    Pixel ``p`` of aligned frame ``i`` comes from ``p - origin + s_i`` of the frame; it
    holds data when that lies inside the frame (else it is wrapped-around content of
    the periodic shift, or padding).

    Parameters
    ----------
    shifts : ndarray, shape (F, 2)
        ``(dy, dx)`` of each frame; a NaN row (unused frame) covers nothing.
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    origin : tuple of int, default (0, 0)
        Where the frame's first pixel sits in the output grid (the padding before it).
    size : tuple of int, optional
        Output grid ``(ny, nx)``; default ``shape``.

    Returns
    -------
    rows : ndarray of bool, shape (F, size[0])
    cols : ndarray of bool, shape (F, size[1])
        Pixel ``(y, x)`` of frame ``i`` holds data where ``rows[i, y] & cols[i, x]``.
    """
    shifts = np.asarray(shifts, dtype=np.float64)
    size = shape if size is None else size
    per_axis = []
    for axis in range(2):
        source = np.arange(size[axis])[None, :] - origin[axis] + shifts[:, axis][:, None]
        per_axis.append((source >= -_ROUND_OFF) & (source <= shape[axis] - 1 + _ROUND_OFF))
    return per_axis[0], per_axis[1]


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
    rows, cols = frame_coverage(shifts, shape)
    return np.einsum("fy,fx->yx", rows.astype(int), cols.astype(int))
