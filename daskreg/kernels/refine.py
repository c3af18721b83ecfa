"""Each frame's shift refined against the average of the others (Gauss-Newton).

The pair solve places every frame from its correlations with the others, each a
Hann-windowed correlation of two noisy frames: the window weights the frame's edges
down (a Hann window keeps about a seventh of the correlation's energy) and a
Gaussian or upsampled peak is fitted to a correlation whose shape depends on the
lattice. Once the solve has placed every frame to a few hundredths of a pixel (and
decided which frames and which unit cell), the frame itself can be compared with a
far less noisy template, the average of all the other frames, over every pixel both
cover and without a window: the least-squares shift of

    f_i(x) = g t_i(x - d_i) + c,

``t_i`` the masked leave-one-out average, ``g`` and ``c`` a gain and an offset. Two
Gauss-Newton steps from the solve's shift converge (the solve is within a small
fraction of the finest period the mask keeps). On the accuracy scenarios of
``tests/accuracy.py`` this halves the error of the pair solve at low dose (hexagonal
a = 12 px at 2 counts: 0.06-0.08 -> 0.036-0.039 px RMS; broad nanoparticle-like peaks:
0.05-0.07 -> 0.031-0.034 px), and the least-squares covariance gives a calibrated
one-sigma uncertainty.

The model is only ever compared on the frame's part of the common region, the
region every used frame covers (:func:`daskreg.kernels.shift.crop_bounds`) less a
margin for the ringing of the periodic Fourier shift: elsewhere the template holds
wrapped-around data. The step cannot move a frame by a unit cell: a frame whose
refinement moves it by more than :data:`MAX_STEP` keeps the solve's shift.

References
----------
B. D. Lucas and T. Kanade, "An iterative image registration technique with an
application to stereo vision", Proc. 7th IJCAI, 674-679 (1981).

M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image
registration algorithms", Opt. Lett. 33, 156-158 (2008), DOI 10.1364/OL.33.000156
(the shift of the Fourier-domain template).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from daskreg.kernels._fft import ifft_into, irfft_into, rfft2_into
from daskreg.kernels.shift import CropBounds, add_shifted, shift_spectrum

__all__ = ["MAX_STEP", "MIN_REGION", "Refined", "mask_columns", "refine_shifts"]

#: Gauss-Newton steps from the solve's shift. Measured on the accuracy scenarios: the
#: second step takes 5-20 % off the RMS error of the first, a third changes nothing.
STEPS = 2
#: A refinement moving a frame further than this (pixels, either axis) is not trusted:
#: the frame keeps the solve's shift (the solve is within a few tenths of a pixel
#: wherever it is reliable; a larger step means the template does not match the frame).
MAX_STEP = 1.0
#: Pixels left out along the common region's border: the masked template rings there
#: (the periodic shift wraps the frames' edges around), and the gradient stencil needs
#: two more.
MARGIN = 4
_ROUND_OFF = 1e-6
#: Smallest side (pixels) of a frame's part of the common region for a refinement.
MIN_REGION = 16


class Refined(NamedTuple):
    """Refined shifts of a block of frames and their aligned spectrum sum.

    Attributes
    ----------
    shifts : ndarray, shape (B, 2)
        ``d_i``: the refined displacement (the solve's where not refined; NaN where the
        solve's is NaN).
    sigma : ndarray, shape (B, 2)
        One-sigma uncertainty of each refined shift (NaN where not refined).
    refined : ndarray of bool, shape (B,)
        Frames whose shift was refined.
    spectrum : ndarray of complex128, shape (ny, nx // 2 + 1)
        ``sum_i F_i exp(2 pi i k . d_i)`` over the block's frames with a finite shift:
        the block's part of the spectrum of the registered sum, for the final average.
    """

    shifts: np.ndarray
    sigma: np.ndarray
    refined: np.ndarray
    spectrum: np.ndarray


def refine_shifts(
    frames: np.ndarray,
    shifts: np.ndarray,
    template: np.ndarray,
    n_used: int,
    mask_half: np.ndarray,
    common: CropBounds,
    *,
    spectra: np.ndarray | None = None,
) -> Refined:
    """Refine the shifts of a block of frames against the leave-one-out average.

    Parameters
    ----------
    frames : ndarray, shape (B, ny, nx)
        The frames as they are averaged (any real dtype).
    shifts : ndarray, shape (B, 2)
        The solve's displacement ``(dy, dx)`` of each frame; NaN rows are left out.
    template : ndarray of complex128, shape (ny, nx // 2 + 1)
        Real FFT of the registered sum of all ``n_used`` used frames with the solve's
        shifts (:func:`daskreg.kernels.shift.registered_sum`): each frame's own part is
        taken out of it.
    n_used : int
        Frames in that sum (at least 3).
    mask_half : ndarray, shape (ny, nx // 2 + 1)
        The registration's Fourier mask in the real FFT's layout, applied to the
        template: the frame's noise beyond it is then orthogonal to the model.
    common : CropBounds
        The region of the aligned frames every used frame covers
        (:func:`daskreg.kernels.shift.crop_bounds` of the solve's shifts).
    spectra : ndarray of complex128, shape (B, ny, nx // 2 + 1), optional
        ``rfft2`` of each frame, when already computed (else one transform per frame
        here).

    Returns
    -------
    Refined

    Notes
    -----
    Each step evaluates the template at the frame's current shift (one inverse
    transform) and takes its gradient by a five-point central difference: the step's
    fixed point is then still where the residual is orthogonal to the model's
    derivatives as evaluated, an unbiased estimate (measured: the same RMS error as
    the exact spectral gradient to 1e-4 px, at a third of the transforms). The
    uncertainty is the least-squares one, ``s^2 (J^T J)^-1`` with ``s^2`` the
    residuals' variance; the template's own noise (``1 / (n_used - 1)`` of a frame's)
    is neglected.
    """
    frames = np.asarray(frames)
    shifts = np.asarray(shifts, dtype=np.float64)
    n_frames, ny, nx = frames.shape
    out = shifts.copy()
    sigma = np.full_like(shifts, np.nan)
    refined = np.zeros(n_frames, dtype=bool)
    spectrum = np.zeros((ny, nx // 2 + 1), np.complex128)
    real = None if frames.dtype == np.float64 and frames.flags.c_contiguous else np.empty((ny, nx))
    buffer = np.empty((1, ny, nx // 2 + 1), np.complex128) if spectra is None else None
    # The masked template is zero beyond the mask's last column: only those columns
    # are shifted and transformed along y (the rest of the inverse's input stays 0).
    columns = slice(0, mask_columns(mask_half))
    band_mask = mask_half[:, columns] / (n_used - 1)
    work = _Inverse((ny, nx), columns)
    others = np.empty((ny, columns.stop), np.complex128)
    for k in np.flatnonzero(np.isfinite(shifts).all(axis=1)):
        # Frames already in float64 are read where they are (a copy each cost a tenth of
        # the refinement).
        frame = frames[k] if real is None else real
        if real is not None:
            np.copyto(real, frames[k])
        own = rfft2_into(frame[None], buffer)[0] if spectra is None else spectra[k]
        start = shifts[k]
        region = _region(common, start, (ny, nx))
        if region is not None and n_used >= 3:
            # The masked template less the frame's own (moved) part, in reused arrays.
            np.copyto(others, own[:, columns])
            shift_spectrum(others, -start, (ny, nx))
            np.subtract(template[:, columns], others, out=others)
            others *= band_mask
            others[0, 0] = 0.0
            step = _gauss_newton(frame, others, start, region, work)
            if step is not None and np.all(np.abs(step[0] - start) <= MAX_STEP):
                out[k], sigma[k], refined[k] = step[0], step[1], True
        add_shifted(own, -out[k], (ny, nx), spectrum)
    return Refined(out, sigma, refined, spectrum)


def mask_columns(mask_half: np.ndarray) -> int:
    """Columns of a real-FFT-layout mask up to its last nonzero one (at least 1)."""
    kept = np.flatnonzero(np.any(mask_half != 0, axis=0))
    return int(kept.max()) + 1 if len(kept) else 1


def _region(
    common: CropBounds, shift: np.ndarray, shape: tuple[int, int]
) -> tuple[slice, slice] | None:
    """The frame's pixels inside the common region, less the margin; None if too small."""
    bounds = []
    for low, high, s, size in zip(
        (common.ymin, common.xmin), (common.ymax, common.xmax), shift, shape, strict=True
    ):
        # Rounded with a tolerance: shifts a round-off away from whole pixels (the
        # pixel estimator's) would otherwise move the region by a pixel at random.
        start = max(math.ceil(low + s - _ROUND_OFF) + MARGIN, 2)
        stop = min(math.floor(high + s + _ROUND_OFF) - MARGIN, size - 2)
        if stop - start < MIN_REGION:
            return None
        bounds.append(slice(start, stop))
    return bounds[0], bounds[1]


def _gauss_newton(
    frame: np.ndarray,
    others: np.ndarray,
    start: np.ndarray,
    region: tuple[slice, slice],
    work: _Inverse,
) -> tuple[np.ndarray, np.ndarray] | None:
    """:data:`STEPS` Gauss-Newton steps of ``(d, g, c)``; the shift and its sigma."""
    ys, xs = region
    d = start.copy()
    for _ in range(STEPS):
        model = work.model(others, d)
        # Sums of products of (dt/dy, dt/dx, t, 1, f) over the region: every term of
        # the least-squares problems below.
        gram = _gram(model, frame, ys.start, ys.stop, xs.start, xs.stop)
        # Gain and offset at the current shift (t, 1 against f) ...
        try:
            g, c = np.linalg.solve(gram[2:4, 2:4], gram[2:4, 4])
        except np.linalg.LinAlgError:
            return None
        if not np.isfinite(g) or g <= 0:
            return None
        # ... then the joint linearised step: the shift's columns of the Jacobian are
        # -g grad t (the model moves with d), the others t and 1; the residual is
        # r = f - g t - c.
        scale = np.array([-g, -g, 1.0, 1.0])
        normal = gram[:4, :4] * np.outer(scale, scale)
        jr = scale * (gram[:4, 4] - g * gram[:4, 2] - c * gram[:4, 3])
        try:
            delta = np.linalg.solve(normal, jr)
        except np.linalg.LinAlgError:
            return None
        d = d + delta[:2]
    rr = gram[4, 4] - 2 * g * gram[2, 4] - 2 * c * gram[3, 4] + g * g * gram[2, 2]
    rr += 2 * g * c * gram[2, 3] + c * c * gram[3, 3]
    # |r - J delta|^2 = r.r - 2 delta.J^T r + delta^T J^T J delta, with J^T J delta = J^T r.
    left = max(float(rr - delta @ jr), 0.0)
    n_pixels = gram[3, 3]
    variance = left / max(n_pixels - 4.0, 1.0)
    covariance = np.linalg.inv(normal)[:2, :2] * variance
    return d, np.sqrt(np.diag(covariance))


class _Inverse:
    """The template at a shift: the inverse real FFT of the first columns of a spectrum.

    Transformed along y on those columns only, then along x with the other columns
    zero: at 512^2 with the reference's mask (a quarter of the columns) 0.6 instead of
    1.35 ms per frame and step.
    """

    def __init__(self, shape: tuple[int, int], columns: slice) -> None:
        ny, nx = shape
        self.shape, self.columns = shape, columns
        self.padded = np.zeros((ny, nx // 2 + 1), np.complex128)
        self.band = np.empty((ny, columns.stop), np.complex128)
        self.moved = np.empty((ny, columns.stop), np.complex128)
        self.out = np.empty(shape)

    def model(self, spectrum: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """``irfft2`` of ``spectrum`` (its first columns) moved by ``shift``; reused."""
        np.copyto(self.moved, spectrum)
        shift_spectrum(self.moved, shift, self.shape)
        self.padded[:, self.columns] = ifft_into(self.moved, 0, self.band)
        return irfft_into(self.padded, self.shape[1], 1, self.out)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _gram(model, frame, y0, y1, x0, x1):  # pragma: no cover - compiled
    """5 x 5 sums of products of (dt/dy, dt/dx, t, 1, f) over ``[y0:y1, x0:x1]``.

    ``t`` is ``model``, its derivatives five-point central differences (the region
    keeps two pixels from the border), ``f`` the frame. The 15 sums are scalars of the
    inner loop (a loop over a 5 x 5 array of them ran 5x slower).
    """
    s00 = s01 = s02 = s03 = s04 = 0.0
    s11 = s12 = s13 = s14 = 0.0
    s22 = s23 = s24 = s33 = s34 = s44 = 0.0
    n = x1 - x0
    for y in range(y0, y1):
        # Rows sliced so the inner index never goes below zero: with ``x - 2`` indexing
        # the loop kept numba's negative-index wrap-around and ran 6x slower (1.1 ms
        # instead of 0.18 ms per 512^2 frame and step), same sums to the last bit.
        below2 = model[y - 2, x0 - 2 : x1 + 2]
        below1 = model[y - 1, x0 - 2 : x1 + 2]
        row = model[y, x0 - 2 : x1 + 2]
        above1 = model[y + 1, x0 - 2 : x1 + 2]
        above2 = model[y + 2, x0 - 2 : x1 + 2]
        values = frame[y, x0:x1]
        for i in range(n):
            gy = (8.0 * (above1[i + 2] - below1[i + 2]) - (above2[i + 2] - below2[i + 2])) / 12.0
            gx = (8.0 * (row[i + 3] - row[i + 1]) - (row[i + 4] - row[i])) / 12.0
            t = row[i + 2]
            f = values[i]
            s00 += gy * gy
            s01 += gy * gx
            s02 += gy * t
            s03 += gy
            s04 += gy * f
            s11 += gx * gx
            s12 += gx * t
            s13 += gx
            s14 += gx * f
            s22 += t * t
            s23 += t
            s24 += t * f
            s34 += f
            s44 += f * f
        s33 += n
    gram = np.empty((5, 5))
    sums = (s00, s01, s02, s03, s04, s11, s12, s13, s14, s22, s23, s24, s33, s34, s44)
    k = 0
    for a in range(5):
        for b in range(a, 5):
            gram[a, b] = sums[k]
            gram[b, a] = sums[k]
            k += 1
    return gram
