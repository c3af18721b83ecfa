"""Correlation peaks refined by upsampled DFTs, with no peak shape assumed.

A Gaussian is not the shape of every correlation peak: broad or flat-topped peaks (a
nanoparticle's lattice of period 30 px and more, strong masks) bias a Gaussian fit by
tenths of a pixel. Here each candidate maximum is refined by evaluating the correlation
itself, exactly, on finer and finer grids around it, straight from the masked
cross-power spectrum (Guizar-Sicairos et al. 2008), and the candidate with the highest
refined peak wins. This is ``find_maxima="upsampled"`` of
:func:`daskreg.kernels.peaks.find_shifts` and :func:`~daskreg.kernels.peaks.find_shifts_band`.

References
----------
.. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image
   registration algorithms", Opt. Lett. 33, 156-158 (2008),
   DOI 10.1364/OL.33.000156.
"""

from __future__ import annotations

import numba
import numpy as np

from daskreg.kernels.band import _grid_dft, _int64, _real
from daskreg.kernels.peak_result import PeakResult, wrap_signed

__all__ = ["UPSAMPLE", "refine_upsampled"]

# upsampled: grid points per pixel of the finest grid. The stages reach it by factors of
# 4: a 5 x 5 grid every 1/4 px (1 px around the candidate pixel, where the maximum is,
# moved when it is found on the border), 7 x 7 every 1/16 px around its maximum, then
# 3 x 3 every 1/64 px, whose quadratic interpolation places the maximum to about 1e-4 px
# (noise-free). One 31 x 31 grid at 1/20 px costs five times as much per candidate.
UPSAMPLE = 64
# upsampled: (grid step in 1 / UPSAMPLE px, points on either side) of each stage.
_STAGES = np.array([[16, 2], [4, 3], [1, 1]], dtype=np.int64)
# upsampled: times a stage is evaluated again around a maximum found on its border.
_RECENTRE = 3
# upsampled: candidates whose first-stage height is below the best one's by more than
# this fraction are not refined further. On a lattice every candidate's peak is nearly
# as high as the best (within 1 % at 512^2), so the heights compared are those of the
# quadratic through the first grid's top 3 x 3 points every 1/4 px: within 1e-4 of the
# refined height for a Gaussian peak of sigma = 1.5 px, 1e-3 at sigma = 0.7 px.
_PRUNE = 2e-3


def refine_upsampled(
    spectra: np.ndarray,
    ky: np.ndarray,
    weight: np.ndarray,
    shape: tuple[int, int],
    centres: np.ndarray,
    valid: np.ndarray,
    bias: np.ndarray | None,
) -> PeakResult:
    """Refine every candidate of every pair by upsampled DFTs; keep the highest peak.

    Parameters
    ----------
    spectra : ndarray of complex, shape (P, rows, columns)
        Half-plane correlation spectra (whole, or a band's rows and first columns).
    ky : ndarray of int, shape (rows,)
        Signed frequency of each row.
    weight : ndarray, shape (columns,)
        Column weights (2 for a conjugate pair of columns, else 1).
    shape : (ny, nx)
    centres : ndarray of int, shape (P, K, 2)
        Candidate pixels (local maxima of the maps).
    valid : ndarray of bool, shape (P, K)
    bias : ndarray, shape (ny, nx), optional
        See :func:`daskreg.kernels.peaks.find_shifts`.

    Returns
    -------
    PeakResult
        The refined shift of each pair's highest peak, ``ok`` False (shift 0) where a
        pair has no valid candidate, and that peak's height on the maps' scale.

    References
    ----------
    .. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image
       registration algorithms", Opt. Lett. 33, 156-158 (2008),
       DOI 10.1364/OL.33.000156.
    """
    n_pairs, n_cand = valid.shape
    real = _real(spectra)
    bias_y, bias_x = _bias_axes(bias, shape)
    position = np.zeros((n_pairs, n_cand, 2))
    height = np.full((n_pairs, n_cand), -np.inf)
    scaled_weight = (np.asarray(weight, np.float64) / (shape[0] * shape[1])).astype(real)
    _upsample_candidates(
        np.ascontiguousarray(spectra).view(real),
        np.ascontiguousarray(ky, dtype=np.int64),
        scaled_weight,
        np.array(shape, dtype=np.int64),
        _int64(centres),
        np.ascontiguousarray(valid),
        bias_y,
        bias_x,
        position,
        height,
    )
    rows = np.arange(n_pairs)
    best = height.argmax(axis=1)
    ok = np.isfinite(height[rows, best])
    shifts = np.where(ok[:, None], wrap_signed(position[rows, best], np.array(shape)), 0.0)
    # No positive local maximum at all (e.g. a blank frame's pair): no peak to report.
    return PeakResult(shifts, ok, np.where(ok, height[rows, best], 0.0))


def _bias_axes(bias: np.ndarray | None, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The two factors of a separable ``bias`` on the ``1 / UPSAMPLE`` px grids.

    ``bias[y, x] = b_y(y) b_x(x)``, each factor interpolated between pixels by zero
    padding its spectrum: exact for the Hann window's autocorrelation (frequencies
    ``|k| <= 1``), the band-limited interpolant for the others.
    """
    if bias is None:
        return np.ones(shape[0] * UPSAMPLE), np.ones(shape[1] * UPSAMPLE)
    bias = np.asarray(bias, dtype=np.float64)
    along_y, along_x = bias[:, 0], bias[0, :] / bias[0, 0]
    if not np.allclose(np.outer(along_y, along_x), bias, rtol=1e-9, atol=0):
        raise ValueError(
            "find_maxima='upsampled' needs a separable bias (a product of a function of y "
            "and one of x, as every window's autocorrelation is); pass "
            "daskreg.kernels.correlate.window_autocorrelation(shape, window)"
        )
    return _upsample_periodic(along_y), _upsample_periodic(along_x)


def _upsample_periodic(values: np.ndarray) -> np.ndarray:
    """Trigonometric interpolation of a periodic sequence at ``UPSAMPLE`` points per sample."""
    n = len(values)
    spectrum = np.fft.rfft(values)
    padded = np.zeros(n * UPSAMPLE // 2 + 1, dtype=complex)
    padded[: len(spectrum)] = spectrum
    if n % 2 == 0:
        # The Nyquist term stands for +n/2 and -n/2, which the padding separates.
        padded[n // 2] /= 2
    return np.ascontiguousarray(np.fft.irfft(padded, n * UPSAMPLE) * UPSAMPLE)


@numba.njit(cache=True, nogil=True)
def _upsample_candidates(
    spectra, ky, weight, shape, centres, valid, bias_y, bias_x, position, height
):  # pragma: no cover - compiled
    """Fill ``position`` (P, K, 2) pixels and ``height`` (P, K) of each valid candidate.

    ``spectra`` (P, rows, 2 columns) are the complex spectra viewed as reals. Per
    candidate, each stage of ``_STAGES`` evaluates the correlation divided by the bias
    on its grid around the current maximum and moves to the grid's maximum
    (:func:`_grid_stage`). After the first stage only the candidates within ``_PRUNE``
    of the best go on. A quadratic through the last 3 x 3 grid places the maximum
    between its points. Heights are on the maps' scale (times the bias at the
    maximum), the scale on which ``gf`` ranks its candidates.
    """
    n_pairs = spectra.shape[0]
    n_cand = centres.shape[1]
    widest = 2 * _STAGES[:, 1].max() + 1
    grids = np.empty((n_cand, widest, widest))
    at = np.empty((n_cand, 2), np.int64)
    best = np.empty((n_cand, 2), np.int64)
    for p in range(n_pairs):
        # float64 sums: BLAS orders float32 sums by the arrays' alignment, which moved
        # shifts by 2e-5 px between engines; in float64 that is 1e-14 px, for 1.3x the time.
        spectrum = spectra[p].astype(np.float64)
        active = valid[p].copy()
        for k in range(n_cand):
            at[k, 0] = centres[p, k, 0] * UPSAMPLE
            at[k, 1] = centres[p, k, 1] * UPSAMPLE
        for stage in range(len(_STAGES)):
            _grid_stage(spectrum, ky, weight, shape, bias_y, bias_x, stage, at, active, grids, best)
            first = -np.inf
            for k in range(n_cand):
                if active[k]:
                    _place(stage, at[k], grids[k], best[k], bias_y, bias_x, position[p, k],
                           height[p, k:k + 1])
                    first = max(first, height[p, k])
            if stage == 0:
                for k in range(n_cand):
                    active[k] &= height[p, k] >= (1 - _PRUNE) * first


@numba.njit(cache=True, nogil=True)
def _place(stage, at, grid, best, bias_y, bias_x, position, height):  # pragma: no cover
    """Set a candidate's ``position`` (2,) and ``height`` (1,) from its last grid.

    They are the maximum of the quadratic through the grid's top 3 x 3 points (its top
    point where that is on the grid's border).
    """
    size = 2 * _STAGES[stage, 1] + 1
    best_i, best_j = best[0], best[1]
    top = grid[best_i, best_j]
    dy = dx = 0.0
    if 0 < best_i < size - 1 and 0 < best_j < size - 1:
        dy, dx, top = _quadratic_peak(grid[best_i - 1 : best_i + 2, best_j - 1 : best_j + 2])
    step = _STAGES[stage, 0]
    position[0] = (at[0] + dy * step) / UPSAMPLE
    position[1] = (at[1] + dx * step) / UPSAMPLE
    height[0] = top * bias_y[at[0]] * bias_x[at[1]]


@numba.njit(cache=True, nogil=True)
def _grid_stage(spectrum, ky, weight, shape, bias_y, bias_x, stage, at, active, grids, best):
    """One stage of :func:`_upsample_candidates` for the ``active`` candidates at once.

    Evaluates the correlation divided by the bias on the stage's grid around each
    ``at`` (K, 2) (fine units; :func:`daskreg.kernels.band._grid_dft`, all grids in one
    matrix product) and moves ``at`` to the grid's maximum, wrapped into the frame. The
    candidates whose maximum is on their grid's border are evaluated again around it
    (at most ``_RECENTRE`` times), so a poor start still ends on the peak. Fills
    ``grids`` (K, n, n) with each candidate's last grid and ``best`` (K, 2) with the
    indices of its maximum there.
    """  # pragma: no cover - compiled
    size_y, size_x = shape[0] * UPSAMPLE, shape[1] * UPSAMPLE
    step, half = _STAGES[stage, 0], _STAGES[stage, 1]
    size = 2 * half + 1
    todo = active.copy()
    for _ in range(_RECENTRE + 1):
        which = np.flatnonzero(todo)
        if not len(which):
            break
        ys = np.empty((len(which), size), np.int64)
        xs = np.empty((len(which), size), np.int64)
        for g in range(len(which)):
            for t in range(size):
                ys[g, t] = (at[which[g], 0] + (t - half) * step) % size_y
                xs[g, t] = (at[which[g], 1] + (t - half) * step) % size_x
        values = np.empty((len(which), size, size))
        _grid_dft(spectrum, ky, weight, (size_y, size_x), ys, xs, values)
        for g in range(len(which)):
            k = which[g]
            best_i, best_j = 0, 0
            for i in range(size):
                for j in range(size):
                    grids[k, i, j] = values[g, i, j] / (bias_y[ys[g, i]] * bias_x[xs[g, j]])
                    if grids[k, i, j] > grids[k, best_i, best_j]:
                        best_i, best_j = i, j
            at[k, 0] = ys[g, best_i]
            at[k, 1] = xs[g, best_j]
            best[k, 0], best[k, 1] = best_i, best_j
            todo[k] = not (0 < best_i < size - 1 and 0 < best_j < size - 1)


@numba.njit(cache=True, nogil=True)
def _quadratic_peak(f):  # pragma: no cover - compiled
    """Offset ``(dy, dx)`` and height of the maximum of the quadratic through a 3 x 3 grid.

    The offset is in grid steps, within one step, from the centre of ``f``, which is
    its largest value; no offset where the quadratic has no maximum there.
    """
    gy = (f[2, 1] - f[0, 1]) / 2
    gx = (f[1, 2] - f[1, 0]) / 2
    hyy = f[2, 1] - 2 * f[1, 1] + f[0, 1]
    hxx = f[1, 2] - 2 * f[1, 1] + f[1, 0]
    hxy = (f[2, 2] - f[2, 0] - f[0, 2] + f[0, 0]) / 4
    det = hyy * hxx - hxy * hxy
    if not (hyy < 0 and hxx < 0 and det > 0):
        return 0.0, 0.0, f[1, 1]
    dy = min(max(-(hxx * gy - hxy * gx) / det, -1.0), 1.0)
    dx = min(max(-(hyy * gx - hxy * gy) / det, -1.0), 1.0)
    return dy, dx, f[1, 1] + 0.5 * (gy * dy + gx * dx)
