"""Correlation maxima: brightest pixel, batched Gaussian fits, centre of mass.

All functions work on a block of correlation maps ``(P, ny, nx)`` and return signed
shifts ``(P, 2)`` in ``(y, x)`` order, wrapped to ``[-n/2, n/2)`` per axis.

The Gaussian fit (``gf``) is the reference's guard against unit-cell hops: on a noisy
lattice the brightest pixel of the correlation can sit on the wrong lattice peak, so
the ``num_peaks`` brightest DISTINCT local maxima are each fitted with a 2-D elliptical
Gaussian and the fit with the largest ``amplitude + offset`` wins. All windows of all
pairs are fitted together by a vectorised Levenberg-Marquardt (no Python loop per pair
or per peak); a fit that does not converge to a peak inside its window is reported as
failed, never silently replaced by its starting guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from scipy import ndimage

__all__ = [
    "FindMaxima",
    "FIND_MAXIMA",
    "PeakResult",
    "wrap_shift",
    "local_maxima",
    "fit_gaussians",
    "find_shifts",
]

FindMaxima = Literal["pixel", "gf", "com"]
FIND_MAXIMA: tuple[str, ...] = get_args(FindMaxima)

_MAX_ITER = 40
_N_PARAMS = 7  # amplitude, offset, y0, x0, a, b, c


@dataclass(frozen=True)
class PeakResult:
    """Maxima of a block of correlation maps.

    Attributes
    ----------
    shifts : ndarray of float64, shape (P, 2)
        Signed shift ``(dy, dx)`` of each pair.
    ok : ndarray of bool, shape (P,)
        False where the method failed (``gf``: no candidate could be fitted; the shift
        then holds the brightest pixel so that it can still be inspected).
    peak : ndarray of float64, shape (P,)
        Height of the chosen maximum (fit ``amplitude + offset`` for ``gf``).
    """

    shifts: np.ndarray
    ok: np.ndarray
    peak: np.ndarray


def wrap_shift(index: np.ndarray, size: int | np.ndarray) -> np.ndarray:
    """Map positions on a periodic axis of length ``size`` to ``[-size/2, size/2)``."""
    index = np.asarray(index, dtype=float)
    return index - size * (index >= np.asarray(size) / 2)


def _wrap_signed(position: np.ndarray, size: np.ndarray) -> np.ndarray:
    return np.mod(position + size / 2, size) - size / 2


def local_maxima(corr: np.ndarray, num_peaks: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``num_peaks`` brightest distinct local maxima of each map (periodic edges).

    Parameters
    ----------
    corr : ndarray, shape (P, ny, nx)
    num_peaks : int

    Returns
    -------
    positions : ndarray of int, shape (P, K, 2)
        ``(y, x)`` indices, brightest first, ``K = min(num_peaks, ny * nx)``.
    valid : ndarray of bool, shape (P, K)
        False where a map has fewer than ``K`` local maxima.
    """
    n_pairs, ny, nx = corr.shape
    is_max = ndimage.maximum_filter(corr, size=(1, 3, 3), mode="wrap") == corr
    # A plateau gives several equal maxima side by side; keep only its first pixel.
    left = np.roll(corr, 1, axis=2) == corr
    up = np.roll(corr, 1, axis=1) == corr
    is_max &= ~(left | up)
    candidates = np.where(is_max, corr, -np.inf).reshape(n_pairs, -1)
    k = min(num_peaks, ny * nx)
    top = np.argpartition(-candidates, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(candidates, top, axis=1), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    valid = np.isfinite(np.take_along_axis(candidates, top, axis=1))
    return np.stack(np.unravel_index(top, (ny, nx)), axis=-1), valid


def _gauss_model(params: np.ndarray, dy: np.ndarray, dx: np.ndarray):
    """Model values and Jacobian of ``B + A exp(-(a u^2 + 2 b u v + c v^2))``.

    ``u = x - x0``, ``v = y - y0``; ``params`` has shape (M, 7) in the order
    ``(A, B, y0, x0, a, b, c)``.
    """
    amp, off, y0, x0, a, b, c = (params[:, k, None] for k in range(_N_PARAMS))
    u = dx - x0
    v = dy - y0
    quad = a * u**2 + 2 * b * u * v + c * v**2
    # Clipped so a wandering fit (not positive definite) overflows neither way.
    expo = np.exp(-np.clip(quad, -50.0, 700.0))
    g = amp * expo
    jac = np.stack(
        [
            expo,
            np.ones_like(expo),
            g * (2 * b * u + 2 * c * v),
            g * (2 * a * u + 2 * b * v),
            -g * u**2,
            -g * 2 * u * v,
            -g * v**2,
        ],
        axis=-1,
    )
    return off + g, jac


def fit_gaussians(
    windows: np.ndarray, sigma_guess: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a 2-D elliptical Gaussian plus offset to each square window, all at once.

    Parameters
    ----------
    windows : ndarray, shape (M, 2r+1, 2r+1)
        Data windows, each centred on its candidate maximum.
    sigma_guess : float
        Starting width (pixels) of every fit.

    Returns
    -------
    params : ndarray of float64, shape (M, 7)
        ``(amplitude, offset, y0, x0, a, b, c)``; ``y0, x0`` relative to the window
        centre; the quadratic form ``a u^2 + 2 b u v + c v^2`` with ``u = x - x0``.
    ok : ndarray of bool, shape (M,)
        True where the fit converged to a peak (positive amplitude, positive-definite
        form) whose centre lies inside its window.
    """
    n_fit, size, _ = windows.shape
    radius = (size - 1) // 2
    data = windows.reshape(n_fit, -1).astype(np.float64)
    grid_y, grid_x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    dy = np.broadcast_to(grid_y.ravel(), data.shape)
    dx = np.broadcast_to(grid_x.ravel(), data.shape)

    low = data.min(axis=1)
    params = np.zeros((n_fit, _N_PARAMS))
    params[:, 0] = data[:, data.shape[1] // 2] - low
    params[:, 1] = low
    params[:, 4] = params[:, 6] = 1.0 / (2.0 * sigma_guess**2)
    scale = np.where(params[:, 0] > 0, params[:, 0], 1.0)

    model, jac = _gauss_model(params, dy, dx)
    cost = (((data - model) / scale[:, None]) ** 2).sum(axis=1)
    damping = np.full(n_fit, 1e-3)
    active = np.ones(n_fit, dtype=bool)
    for _ in range(_MAX_ITER):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        resid = data[idx] - model[idx]
        jtj = np.einsum("mpi,mpj->mij", jac[idx], jac[idx])
        jtr = np.einsum("mpi,mp->mi", jac[idx], resid)
        diag = np.einsum("mii->mi", jtj)
        ridge = damping[idx, None] * (diag + 1e-12 * scale[idx, None] ** 2)
        lhs = jtj + ridge[:, :, None] * np.eye(_N_PARAMS)
        try:
            step = np.linalg.solve(lhs, jtr[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            # A degenerate window (e.g. flat) makes its system singular; pinv steps it safely.
            step = (np.linalg.pinv(lhs) @ jtr[:, :, None])[:, :, 0]
        trial = params[idx] + step
        trial_model, trial_jac = _gauss_model(trial, dy[idx], dx[idx])
        trial_cost = (((data[idx] - trial_model) / scale[idx, None]) ** 2).sum(axis=1)
        better = np.isfinite(trial_cost) & (trial_cost <= cost[idx])
        acc = idx[better]
        rel_change = (cost[acc] - trial_cost[better]) / np.maximum(cost[acc], 1e-300)
        params[acc] = trial[better]
        model[acc] = trial_model[better]
        jac[acc] = trial_jac[better]
        cost[acc] = trial_cost[better]
        damping[acc] /= 3.0
        damping[idx[~better]] *= 4.0
        converged = np.zeros(n_fit, dtype=bool)
        converged[acc] = rel_change < 1e-9
        converged[idx[~better]] = damping[idx[~better]] > 1e8
        active &= ~converged

    amp, _, y0, x0, a, b, c = params.T
    ok = (
        np.isfinite(params).all(axis=1)
        & (amp > 0)
        & (a > 0)
        & (c > 0)
        & (a * c - b * b > 0)
        & (np.abs(y0) <= radius)
        & (np.abs(x0) <= radius)
    )
    return params, ok


def _windows(corr: np.ndarray, centres: np.ndarray, radius: int) -> np.ndarray:
    """Periodic ``(2r+1)^2`` windows of ``corr`` around integer centres (P, K, 2)."""
    _, ny, nx = corr.shape
    offsets = np.arange(-radius, radius + 1)
    iy = (centres[..., 0, None] + offsets) % ny
    ix = (centres[..., 1, None] + offsets) % nx
    pair = np.arange(corr.shape[0])[:, None, None, None]
    return corr[pair, iy[..., :, None], ix[..., None, :]]


def _shift_pixel(corr: np.ndarray) -> PeakResult:
    n_pairs, ny, nx = corr.shape
    flat = corr.reshape(n_pairs, -1)
    best = flat.argmax(axis=1)
    iy, ix = np.unravel_index(best, (ny, nx))
    shifts = np.stack([wrap_shift(iy, ny), wrap_shift(ix, nx)], axis=1)
    return PeakResult(shifts, np.ones(n_pairs, dtype=bool), flat[np.arange(n_pairs), best])


def _shift_gaussian_fit(
    corr: np.ndarray,
    num_peaks: int,
    sigma_guess: float,
    window_radius: int,
    bias: np.ndarray | None,
) -> PeakResult:
    n_pairs, ny, nx = corr.shape
    centres, valid = local_maxima(corr, num_peaks)
    # One scale per pair keeps the fits well conditioned without changing which
    # candidate of a pair wins.
    scale = np.abs(corr).reshape(n_pairs, -1).max(axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    windows = _windows(corr, centres, window_radius) / scale[:, None, None, None]
    if bias is not None:
        bias_windows = _windows(np.broadcast_to(bias, (n_pairs, ny, nx)), centres, window_radius)
        windows = windows / bias_windows
    n_cand = centres.shape[1]
    params, ok = fit_gaussians(windows.reshape(-1, *windows.shape[2:]), sigma_guess)
    params = params.reshape(n_pairs, n_cand, _N_PARAMS)
    ok = ok.reshape(n_pairs, n_cand) & valid

    height = params[..., 0] + params[..., 1]
    if bias is not None:
        # Rank on the map's own scale: undoing the bias must not favour far candidates.
        height = height * bias[centres[..., 0], centres[..., 1]]
    height = np.where(ok, height, -np.inf)
    best = height.argmax(axis=1)
    rows = np.arange(n_pairs)
    fitted = ok[rows, best]
    position = centres[rows, best] + params[rows, best, 2:4]
    size = np.array([ny, nx])
    shifts = _wrap_signed(position, size)
    fallback = _shift_pixel(corr)
    shifts = np.where(fitted[:, None], shifts, fallback.shifts)
    peak = np.where(fitted, height[rows, best] * scale, fallback.peak)
    return PeakResult(shifts, fitted, peak)


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
        ry = _wrap_signed(gy - centre[:, 0, None, None], size[0])
        rx = _wrap_signed(gx - centre[:, 1, None, None], size[1])
        radius = np.hypot(ry, rx)
        reach = min(ny, nx) / frac / 2
        weight = (radius < reach) * np.cos(np.pi * radius / (2 * reach)) ** 2
        total = (mass * weight).sum(axis=(1, 2))
        ok &= total > 0
        safe = np.where(total > 0, total, 1.0)
        dy = (mass * weight * ry).sum(axis=(1, 2)) / safe
        dx = (mass * weight * rx).sum(axis=(1, 2)) / safe
        centre = _wrap_signed(centre + np.stack([dy, dx], axis=1), size)
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
    method : {"pixel", "gf", "com"}, default "gf"
        ``pixel``: brightest pixel. ``gf``: Gaussian fits to the ``num_peaks`` brightest
        distinct local maxima, each in a ``(2 window_radius + 1)^2`` window starting
        from width ``sigma_guess``; the largest ``amplitude + offset`` wins. ``com``:
        centre of mass in ``num_iter`` shrinking windows, the smallest ``1 /
        min_window_frac`` of the frame (offered for completeness; unreliable on lattices).
    num_peaks, sigma_guess, window_radius : see ``method``
    num_iter, min_window_frac : see ``method``
    bias : ndarray, shape (ny, nx), optional
        ``gf``: a known smooth factor multiplying every map (the window autocorrelation,
        :func:`daskreg.kernels.correlate.window_autocorrelation`), divided out inside
        the fit windows so that the sub-pixel centres are unbiased. Candidates are
        still found and ranked on the maps as they are.

    Returns
    -------
    PeakResult
        Shifts ``(P, 2)`` as ``(dy, dx)``, success flags and peak heights.
    """
    corr = np.asarray(corr)
    if method == "pixel":
        return _shift_pixel(corr)
    if method == "gf":
        return _shift_gaussian_fit(corr, num_peaks, sigma_guess, window_radius, bias)
    if method == "com":
        return _shift_centre_of_mass(corr, num_iter, min_window_frac)
    raise ValueError(f"unknown find_maxima {method!r}; expected one of {FIND_MAXIMA}")
