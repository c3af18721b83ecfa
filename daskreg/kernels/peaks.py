"""Correlation maxima: brightest pixel, batched Gaussian fits, upsampled DFT, centre of mass.

All functions work on a block of correlation maps ``(P, ny, nx)`` and return signed
shifts ``(P, 2)`` in ``(y, x)`` order, wrapped to ``[-n/2, n/2)`` per axis.

The Gaussian fit (``gf``) is the reference's guard against unit-cell hops: on a noisy
lattice the brightest pixel of the correlation can sit on the wrong lattice peak, so
the ``num_peaks`` brightest DISTINCT local maxima are each fitted with a 2-D elliptical
Gaussian and the fit with the largest ``amplitude + offset`` wins. All windows of all
pairs are fitted together (:mod:`daskreg.kernels.gaussfit`, no Python loop per pair
or per peak); a fit that does not converge to a peak inside its window is reported as
failed, never silently replaced by its starting guess.

A Gaussian is not the shape of every correlation peak: broad or flat-topped peaks (a
nanoparticle's lattice of period 30 px and more, strong masks) bias the fit by tenths of
a pixel. ``upsampled`` assumes no shape: the same candidates are refined by evaluating
the correlation itself, exactly, on finer and finer grids around each of them, straight
from the masked cross-power spectrum (Guizar-Sicairos et al., Opt. Lett. 33, 156 (2008)),
and the candidate with the highest refined peak wins (:mod:`daskreg.kernels.upsampled`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

import numba
import numpy as np
import scipy.fft

from daskreg.kernels._scratch import scratch
from daskreg.kernels.band import _int64, _real, _window_argmax, _window_dft, half_plane_frequencies
from daskreg.kernels.gaussfit import N_PARAMS, fit_gaussians
from daskreg.kernels.maxima import _distinct_best, _search, thresholds, top_maxima
from daskreg.kernels.peak_result import PeakResult, wrap_shift, wrap_signed
from daskreg.kernels.upsampled import refine_upsampled

if TYPE_CHECKING:
    from daskreg.kernels.band import BandGeometry

__all__ = [
    "FindMaxima",
    "FIND_MAXIMA",
    "PeakResult",
    "wrap_shift",
    "local_maxima",
    "fit_gaussians",
    "find_shifts",
    "find_shifts_band",
]

FindMaxima = Literal["pixel", "gf", "com", "upsampled"]
FIND_MAXIMA: tuple[str, ...] = get_args(FindMaxima)

# Band-limited path: coarse candidates resolved per candidate finally kept.
OVERSAMPLE = 4
# Band-limited path: coarse maxima below this fraction of the map's maximum are not
# candidates. A sample at most one coarse spacing (2 px) from the top of a peak at least
# 1.5 px wide keeps 3/4 of its height, and only peaks near the best can win.
COARSE_FLOOR = 0.5
# Band-limited path: bytes of band columns (the largest per-pair array) of the pairs
# transformed and searched at once: 3 pairs at 512^2, one at 1024^2. Their arrays are
# this thread's scratch (:mod:`daskreg.kernels._scratch`), kept between blocks, so the
# chunk is sized by bytes: a fixed count of pairs would keep hundreds of MiB per thread
# for large frames. Small chunks keep a chunk's transforms, search and windows close to
# the core (1 MiB of L2 here): at 512^2, 8 MiB chunks cost 15-30 % more per pair on one
# thread and 30 % more on two than 1.5 MiB; 1 MiB is as fast on one thread.
_BAND_CHUNK_BYTES = 3 * 2**19
# Band-limited path: pixels searched on either side of a coarse estimate.
_REACH = 2


def local_maxima(corr: np.ndarray, num_peaks: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``num_peaks`` brightest distinct local maxima of each map (periodic edges).

    Only positive maxima count: a correlation peak below zero is no match.

    Parameters
    ----------
    corr : ndarray, shape (P, ny, nx)
    num_peaks : int

    Returns
    -------
    positions : ndarray of int, shape (P, K, 2)
        ``(y, x)`` indices, brightest first, ``K = num_peaks``.
    valid : ndarray of bool, shape (P, K)
        False where a map has fewer than ``K`` such maxima.
    """
    maxima = top_maxima(corr, num_peaks)
    return maxima.positions, maxima.valid


def _windows(maps: np.ndarray, centres: np.ndarray, radius: int) -> np.ndarray:
    """Periodic ``(2r+1)^2`` windows of ``maps`` (P, ny, nx) around centres (P, K, 2)."""
    _, ny, nx = maps.shape
    offsets = np.arange(-radius, radius + 1)
    iy = (centres[..., 0, None] + offsets) % ny
    ix = (centres[..., 1, None] + offsets) % nx
    pair = np.arange(maps.shape[0])[:, None, None, None]
    return maps[pair, iy[..., :, None], ix[..., None, :]]


def _shift_pixel(corr: np.ndarray) -> PeakResult:
    n_pairs, ny, nx = corr.shape
    flat = corr.reshape(n_pairs, -1)
    best = flat.argmax(axis=1)
    iy, ix = np.unravel_index(best, (ny, nx))
    shifts = np.stack([wrap_shift(iy, ny), wrap_shift(ix, nx)], axis=1)
    return PeakResult(shifts, np.ones(n_pairs, dtype=bool), flat[np.arange(n_pairs), best])


def _fit_candidates(
    windows: np.ndarray,
    centres: np.ndarray,
    valid: np.ndarray,
    shape: tuple[int, int],
    sigma_guess: float,
    bias: np.ndarray | None,
) -> PeakResult:
    """Fit every candidate window and keep, per pair, the largest fitted height.

    Parameters
    ----------
    windows : ndarray, shape (P, K, 2r+1, 2r+1)
        Correlation around each candidate, centred on its local-maximum pixel.
    centres : ndarray of int, shape (P, K, 2)
    valid : ndarray of bool, shape (P, K)
    shape : (ny, nx)
    sigma_guess : float
    bias : ndarray, shape (ny, nx), optional
        See :func:`find_shifts`.
    """
    n_pairs, n_cand = valid.shape
    size = windows.shape[-1]
    radius = (size - 1) // 2
    scale = np.empty(n_pairs)
    data = scratch("fit data", (n_pairs * n_cand, size, size), np.float64)
    unbiased = np.ones((1, 1)) if bias is None else np.asarray(bias, dtype=np.float64)
    _fit_data(windows, valid, _int64(centres), unbiased, bias is not None, scale, data)
    params, ok = fit_gaussians(data, sigma_guess)
    params = params.reshape(n_pairs, n_cand, N_PARAMS)
    ok = ok.reshape(n_pairs, n_cand) & valid

    height = params[..., 0] + params[..., 1]
    if bias is not None:
        # Rank on the map's own scale: undoing the bias must not favour far candidates.
        height = height * bias[centres[..., 0] % shape[0], centres[..., 1] % shape[1]]
    height = np.where(ok, height, -np.inf)
    best = height.argmax(axis=1)
    rows = np.arange(n_pairs)
    fitted = ok[rows, best]
    position = centres[rows, best] + params[rows, best, 2:4]
    shifts = wrap_signed(position, np.array(shape))
    # A pair with no usable fit keeps its brightest candidate pixel, flagged as failed.
    centre_value = windows[..., radius, radius]
    brightest = np.where(valid, centre_value, -np.inf).argmax(axis=1)
    fallback = wrap_signed(centres[rows, brightest].astype(float), np.array(shape))
    shifts = np.where(fitted[:, None], shifts, fallback)
    peak = np.where(fitted, height[rows, best] * scale, centre_value[rows, brightest])
    return PeakResult(shifts, fitted, peak)


@numba.njit(cache=True, nogil=True)
def _fit_data(windows, valid, centres, bias, divide, scale, out):  # pragma: no cover
    """The windows as the fits see them, in ``out`` (P * K, 2r+1, 2r+1) float64.

    One scale per pair, the largest ``|value|`` of its valid candidates (1 if none),
    keeps the fits well conditioned without changing which candidate of a pair wins;
    with ``divide`` each value is also divided by ``bias`` at its periodic position.
    Fills ``scale`` (P,). In numpy the same steps cost five window-sized temporaries.
    """
    n_pairs, n_cand, size, _ = windows.shape
    radius = (size - 1) // 2
    ny, nx = bias.shape
    for p in range(n_pairs):
        top = 0.0
        for k in range(n_cand):
            if valid[p, k]:
                for y in range(size):
                    for x in range(size):
                        top = max(top, abs(float(windows[p, k, y, x])))
        scale[p] = top if top > 0 else 1.0
        for k in range(n_cand):
            fit = p * n_cand + k
            for y in range(size):
                row = (centres[p, k, 0] + y - radius) % ny
                for x in range(size):
                    value = float(windows[p, k, y, x]) / scale[p]
                    if divide:
                        value /= bias[row, (centres[p, k, 1] + x - radius) % nx]
                    out[fit, y, x] = value


def _shift_gaussian_fit(
    corr: np.ndarray,
    num_peaks: int,
    sigma_guess: float,
    window_radius: int,
    bias: np.ndarray | None,
) -> PeakResult:
    centres, valid = local_maxima(corr, num_peaks)
    windows = _windows(corr, centres, window_radius)
    return _fit_candidates(windows, centres, valid, corr.shape[1:], sigma_guess, bias)


def _shift_centre_of_mass(corr: np.ndarray, num_iter: int, min_window_frac: float) -> PeakResult:
    """Centre of mass in shrinking cos^2 windows around the brightest pixel.

    The reference starts from the centre of mass of the whole map, which on a
    periodic lattice correlation is meaningless; the brightest pixel is a better start.
    Negative correlation values carry no mass.
    """
    n_pairs, ny, nx = corr.shape
    start = _shift_pixel(corr)
    centre = start.shifts.copy()
    size = np.array([ny, nx], dtype=float)
    gy = wrap_shift(np.arange(ny), ny)[None, :, None]
    gx = wrap_shift(np.arange(nx), nx)[None, None, :]
    mass = np.clip(corr, 0, None)
    fracs = np.linspace(min_window_frac, 0, num_iter, endpoint=False)[::-1]
    ok = np.ones(n_pairs, dtype=bool)
    for frac in fracs:
        # Periodic distance of every pixel to the current centre, in pixels.
        ry = wrap_signed(gy - centre[:, 0, None, None], size[0])
        rx = wrap_signed(gx - centre[:, 1, None, None], size[1])
        radius = np.hypot(ry, rx)
        reach = min(ny, nx) / frac / 2
        weight = (radius < reach) * np.cos(np.pi * radius / (2 * reach)) ** 2
        total = (mass * weight).sum(axis=(1, 2))
        ok &= total > 0
        safe = np.where(total > 0, total, 1.0)
        dy = (mass * weight * ry).sum(axis=(1, 2)) / safe
        dx = (mass * weight * rx).sum(axis=(1, 2)) / safe
        centre = wrap_signed(centre + np.stack([dy, dx], axis=1), size)
    return PeakResult(centre, ok, start.peak)


def find_shifts(
    corr: np.ndarray,
    method: FindMaxima = "gf",
    *,
    num_peaks: int = 5,
    sigma_guess: float = 2.0,
    window_radius: int = 6,
    num_iter: int = 2,
    min_window_frac: float = 3.0,
    bias: np.ndarray | None = None,
) -> PeakResult:
    """Shift of each pair from the maximum of its correlation map.

    Parameters
    ----------
    corr : ndarray, shape (P, ny, nx)
        Real correlation maps (:func:`daskreg.kernels.correlate.correlation_maps`).
    method : {"pixel", "gf", "com", "upsampled"}, default "gf"
        ``pixel``: brightest pixel. ``gf``: Gaussian fits to the ``num_peaks`` brightest
        distinct local maxima, each in a ``(2 window_radius + 1)^2`` window starting
        from width ``sigma_guess``; the largest ``amplitude + offset`` wins. ``com``:
        centre of mass in ``num_iter`` shrinking windows, the smallest ``1 /
        min_window_frac`` of the frame (offered for completeness; unreliable on lattices).
        ``upsampled``: the same ``num_peaks`` candidates as ``gf``, each refined by an
        upsampled DFT of the maps' spectrum (to ``1 / UPSAMPLE`` px, then a quadratic
        through the finest grid); the highest refined peak wins. No peak shape is
        assumed. Here it costs a 2-D transform per map and sums over the whole half
        plane: :func:`find_shifts_band` is far cheaper where the mask allows.
    num_peaks, sigma_guess, window_radius : see ``method``
    num_iter, min_window_frac : see ``method``
    bias : ndarray, shape (ny, nx), optional
        ``gf``, ``upsampled``: a known smooth factor multiplying every map (the window
        autocorrelation, :func:`daskreg.kernels.correlate.window_autocorrelation`),
        divided out inside the fit windows (``gf``) or the refinement grids
        (``upsampled``: it must be separable, as every window's autocorrelation is, and
        is interpolated between pixels trigonometrically) so that the sub-pixel centres
        are unbiased. Candidates are still found and ranked on the maps' own scale.

    Returns
    -------
    PeakResult
        Shifts ``(P, 2)`` as ``(dy, dx)``, success flags and peak heights.

    References
    ----------
    .. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image
       registration algorithms", Opt. Lett. 33, 156-158 (2008),
       DOI 10.1364/OL.33.000156 (``upsampled``).
    """
    corr = np.asarray(corr)
    if method == "pixel":
        return _shift_pixel(corr)
    if method == "gf":
        return _shift_gaussian_fit(corr, num_peaks, sigma_guess, window_radius, bias)
    if method == "com":
        return _shift_centre_of_mass(corr, num_iter, min_window_frac)
    if method == "upsampled":
        centres, valid = local_maxima(corr, num_peaks)
        ky, weight = half_plane_frequencies(corr.shape[1:])
        spectra = scipy.fft.rfft2(corr)
        return refine_upsampled(spectra, ky, weight, corr.shape[1:], centres, valid, bias)
    raise ValueError(f"unknown find_maxima {method!r}; expected one of {FIND_MAXIMA}")


def find_shifts_band(
    product: np.ndarray,
    geometry: BandGeometry,
    method: Literal["pixel", "gf", "upsampled"] = "gf",
    *,
    num_peaks: int = 5,
    sigma_guess: float = 2.0,
    window_radius: int = 6,
    bias: np.ndarray | None = None,
) -> PeakResult:
    """:func:`find_shifts` for band-limited correlations, without the full-size maps.

    A coarse sample can sit half a coarse spacing from its peak, so raw coarse values
    rank peaks poorly (on a lattice whole rows of peaks can sit exactly on samples and
    crowd out the true one). The coarse local maxima are therefore ranked by their
    log-parabolic peak estimate; the ``OVERSAMPLE * num_peaks`` best are resolved to
    their full-resolution local-maximum pixel (exact values in a small window around
    the estimated position) and ranked on those exact values, as the full-size path
    ranks; the ``num_peaks`` best proceed, with their fit windows evaluated exactly
    (``gf``) or refined on fine grids evaluated from the band product (``upsampled``).

    Parameters
    ----------
    product : ndarray, shape (P, 2 ky_max + 1, kx_max + 1)
        Masked correlation spectra on the band
        (:func:`daskreg.kernels.correlate.correlation_spectra` of cropped spectra).
    geometry : BandGeometry
    method : {"pixel", "gf", "upsampled"}
    num_peaks, sigma_guess, window_radius, bias : see :func:`find_shifts`

    Returns
    -------
    PeakResult

    References
    ----------
    .. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image
       registration algorithms", Opt. Lett. 33, 156-158 (2008),
       DOI 10.1364/OL.33.000156 (``upsampled``).
    """
    if method not in ("pixel", "gf", "upsampled"):
        raise ValueError(
            f"the band-limited path supports 'pixel', 'gf' and 'upsampled', not {method!r}"
        )
    if not len(product):
        return PeakResult.concatenate([])
    n_pairs = len(product)
    real = _real(product)
    size = 2 * window_radius + 1 if method == "gf" else 0
    centres = np.zeros((n_pairs, num_peaks, 2), np.int64)
    value = np.full((n_pairs, num_peaks), -np.inf)
    windows = np.empty((n_pairs, num_peaks, size, size), real)
    reach = geometry.offset_basis(_REACH, real)
    window = reach[:0] if method != "gf" else geometry.offset_basis(window_radius, real)
    cos, sin = geometry.phases(real)
    spacing = np.array(geometry.spacing)
    chunk = -(-_BAND_CHUNK_BYTES // (geometry.pair_columns_size * product.itemsize))
    for k in range(0, n_pairs, chunk):
        part = slice(k, k + chunk)
        columns = geometry.columns(product[part])
        coarse = geometry.coarse_maps(columns)
        _band_candidates(
            columns.view(real),
            coarse,
            thresholds(coarse, COARSE_FLOOR),
            spacing,
            OVERSAMPLE * num_peaks,
            (cos, sin, reach, window, real(0)),
            centres[part],
            value[part],
            windows[part],
        )
    valid = np.isfinite(value)
    if method == "pixel":
        shifts = wrap_signed(centres[:, 0].astype(float), np.array(geometry.shape))
        return PeakResult(shifts, valid[:, 0], value[:, 0])
    if method == "upsampled":
        return refine_upsampled(
            product,
            geometry.row_frequencies,
            geometry.column_weight,
            geometry.shape,
            centres,
            valid,
            bias,
        )
    # One fit call for the whole block: the fits' warm-start sample is paid once.
    return _fit_candidates(windows, centres, valid, geometry.shape, sigma_guess, bias)


@numba.njit(cache=True, nogil=True)
def _band_candidates(columns, coarse, limit, spacing, n_coarse, tables, centres, value, windows):
    """The ``K`` best local-maximum pixels of each band-limited correlation of a chunk.

    One compiled call per chunk of pairs: in Python the chunk's dozens of small array
    steps cost about 7 % of a pair. ``columns`` are :meth:`BandGeometry.columns` viewed
    as reals, ``coarse`` the coarse maps, ``limit`` their thresholds, ``n_coarse`` the
    coarse maxima resolved; ``tables`` holds the window kernels' ``cos``, ``sin``,
    offset bases (reach and fit window; an empty one for no windows) and typed zero.

    Fills ``centres`` (P, K, 2) and ``value`` (P, K), exact, brightest first (left at
    ``(0, 0)`` and ``-inf`` where there is none), and ``windows`` (P, K, 2r+1, 2r+1),
    the exact correlation around each centre.
    """
    cos, sin, reach, window, zero = tables
    n_pairs = coarse.shape[0]
    positions = np.zeros((n_pairs, n_coarse, 2), np.int64)
    offset = np.zeros((n_pairs, n_coarse, 2))
    score = np.full((n_pairs, n_coarse), -np.inf)
    _search(coarse, limit, True, positions, offset, score)
    approx = np.empty((n_pairs, n_coarse, 2), np.int64)
    for p in range(n_pairs):
        for k in range(n_coarse):
            for axis in range(2):
                estimate = (positions[p, k, axis] + offset[p, k, axis]) * spacing[axis]
                approx[p, k, axis] = np.int64(np.rint(estimate))
    # The estimate is good to about a pixel; look one pixel further for the maximum.
    # Two coarse samples of one broad peak lead to the same pixel: it counts once.
    near = np.empty((n_pairs, n_coarse, 2), np.int64)
    near_value = np.empty((n_pairs, n_coarse), columns.dtype)
    _window_argmax(columns, approx, cos, sin, reach, zero, near, near_value)
    unused_offset = np.zeros((n_pairs, centres.shape[1], 2))
    _distinct_best(near, near_value, np.isfinite(score), centres, value, unused_offset)
    _window_dft(columns, centres, cos, sin, window, zero, windows)


