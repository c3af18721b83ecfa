"""Batched least-squares fits of a 2-D elliptical Gaussian plus offset.

The model is ``f = B + A exp(-q)`` with ``q = a u^2 + 2 b u v + c v^2``, ``u = x - x0``,
``v = y - y0``, fitted to every window of a block at once by Levenberg-Marquardt.

Every derivative of ``f`` is ``exp(-q)`` times a polynomial of degree at most four in
``(x, y)``, so the normal equations need only a few weighted moments of each window,
``sum_p w_p x_p^i y_p^j`` with ``i + j <= 4``. Those are one matrix product of the
``(M, W)`` weights with a fixed ``(W, 15)`` table of monomials on the window's grid: no
``(M, 7, W)`` Jacobian is ever formed, which makes an iteration about three times cheaper.

Far from the minimum the steps are Gauss-Newton's (``J^T J``, always positive
semi-definite); once a fit's centre moves less than ``NEWTON_SWITCH`` pixels the full
Hessian (``J^T J - sum_p r_p d2f_p``) takes over and the fit converges quadratically
instead of linearly. The peaks of one block of pairs share their shape (same lattice,
same mask), so a sample of ``WARM_SAMPLE`` fits is solved first and the others start
from its median shape: about 3 iterations per fit instead of 12, to the same minimum
(within 1e-7 px).
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_gaussians", "N_PARAMS", "NEWTON_SWITCH"]

N_PARAMS = 7  # amplitude, offset, y0, x0, a, b, c
MAX_ITER = 30
# Centre step (pixels) below which the full Hessian is used: near a minimum it is
# positive definite, but from a distant start its curvature terms can point away.
NEWTON_SWITCH = 3e-2
# A fit stops after a Newton step smaller than this (pixels): Newton converges
# quadratically, so the centre is then within about 1e-7 px of the minimum, whatever
# the start (which keeps results independent of how pairs are batched).
NEWTON_TOL = 1e-5
# Fits of a block solved first; the others start from their median shape.
WARM_SAMPLE = 32

# Monomials x^i y^j with i + j <= 4, by degree; the first six (degree <= 2) are the basis
# in which every polynomial factor of a derivative is written: 1, x, y, x^2, xy, y^2.
_EXPONENTS = [(i, d - i) for d in range(5) for i in range(d, -1, -1)]
_BASIS = _EXPONENTS[:6]
# Moment index of the product of two basis monomials.
_PRODUCT = np.array(
    [[_EXPONENTS.index((a[0] + b[0], a[1] + b[1])) for b in _BASIS] for a in _BASIS]
)
# Rows of the derivative polynomials in ``_coefficients``, as parameter indices.
_ROWS = np.array([0, 2, 3, 4, 5, 6])  # A, y0, x0, a, b, c (the offset B is separate)


def _monomials(radius: int) -> np.ndarray:
    """``x^i y^j`` on the window grid, shape ``(W, 15)``, pixels in row-major order."""
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    y, x = np.meshgrid(r, r, indexing="ij")
    x, y = x.ravel(), y.ravel()
    return np.stack([x**i * y**j for i, j in _EXPONENTS], axis=1)


def _quadratic_form(params: np.ndarray) -> np.ndarray:
    """Coefficients of ``q`` in the basis ``1, x, y, x^2, xy, y^2``, shape (M, 6)."""
    y0, x0, a, b, c = (params[:, k] for k in range(2, N_PARAMS))
    return np.stack(
        [
            a * x0**2 + 2 * b * x0 * y0 + c * y0**2,
            -2 * (a * x0 + b * y0),
            -2 * (b * x0 + c * y0),
            a,
            2 * b,
            c,
        ],
        axis=1,
    )


def _exp_minus_q(params: np.ndarray, basis_t: np.ndarray) -> np.ndarray:
    """``exp(-q)`` on every window's grid, shape (M, W)."""
    q = _quadratic_form(params) @ basis_t
    # Clipped so a wandering fit (not positive definite) overflows neither way.
    np.clip(q, -50.0, 700.0, out=q)
    np.negative(q, out=q)
    return np.exp(q, out=q)


def _residuals(data: np.ndarray, params: np.ndarray, expo: np.ndarray) -> np.ndarray:
    """``data - B - A exp(-q)``, in place of one temporary."""
    resid = expo * -params[:, 0, None]
    resid += data
    resid -= params[:, 1, None]
    return resid


def _coefficients(params: np.ndarray) -> np.ndarray:
    """Polynomials ``D_k = (df / d theta_k) / exp(-q)`` in the basis, shape (M, 6, 6).

    Rows follow ``_ROWS``: ``D_A = 1``, ``D_y0 = 2A (b u + c v)``, ``D_x0 = 2A (a u + b v)``,
    ``D_a = -A u^2``, ``D_b = -2A u v``, ``D_c = -A v^2``, expanded in ``x, y``.
    """
    amp, _, y0, x0, a, b, c = params.T
    coef = np.zeros((len(params), 6, 6))
    coef[:, 0, 0] = 1.0
    # 2A (b u + c v) and 2A (a u + b v): constant, x and y terms.
    coef[:, 1, 0] = -2 * amp * (b * x0 + c * y0)
    coef[:, 1, 1] = 2 * amp * b
    coef[:, 1, 2] = 2 * amp * c
    coef[:, 2, 0] = -2 * amp * (a * x0 + b * y0)
    coef[:, 2, 1] = 2 * amp * a
    coef[:, 2, 2] = 2 * amp * b
    # -A u^2 = -A (x^2 - 2 x0 x + x0^2), -2A u v and -A v^2 likewise.
    coef[:, 3, 0] = -amp * x0**2
    coef[:, 3, 1] = 2 * amp * x0
    coef[:, 3, 3] = -amp
    coef[:, 4, 0] = -2 * amp * x0 * y0
    coef[:, 4, 1] = 2 * amp * y0
    coef[:, 4, 2] = 2 * amp * x0
    coef[:, 4, 4] = -2 * amp
    coef[:, 5, 0] = -amp * y0**2
    coef[:, 5, 2] = 2 * amp * y0
    coef[:, 5, 5] = -amp
    return coef


def _normal_equations(
    params: np.ndarray,
    expo: np.ndarray,
    resid: np.ndarray,
    monomials: np.ndarray,
    newton: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``(H, J^T r)`` of each fit; ``H`` is ``J^T J``, or the full Hessian where ``newton``.

    The full Hessian is ``J^T J - sum_p r_p d2f_p``. With ``e = exp(-q)`` and the
    polynomials ``D_k`` of :func:`_coefficients`, ``d2f / dA d theta_k = e D_k / A`` and,
    for the other parameters, ``d2f / d theta_k d theta_l = e (D_k D_l / A - A q_kl)``
    (``q_kl`` the second derivatives of ``q``). The ``D_k D_l`` parts of both sums share
    one quadratic form: ``C (S[e^2] - S[r e] / A) C^T`` with ``S[w]`` the moments of
    ``w`` on products of basis monomials.
    """
    n_fit = len(params)
    amp, _, y0, x0, a, b, c = params.T
    coef = _coefficients(params)
    e2 = (expo * expo) @ monomials
    re = (resid * expo) @ monomials
    e1 = expo @ monomials[:, :6]
    # 1/A where the full Hessian is wanted, 0 where Gauss-Newton's.
    weight = np.where(newton & (amp != 0), 1.0 / np.where(amp != 0, amp, 1.0), 0.0)
    moments = e2[:, _PRODUCT] - weight[:, None, None] * re[:, _PRODUCT]

    hess = np.empty((n_fit, N_PARAMS, N_PARAMS))
    hess[:, _ROWS[:, None], _ROWS[None, :]] = coef @ moments @ coef.transpose(0, 2, 1)
    hess[:, 0, 0] += weight * re[:, 0]  # f is linear in A: no curvature term there
    cross = (coef @ e1[:, :, None])[:, :, 0]
    hess[:, 1, _ROWS] = cross
    hess[:, _ROWS, 1] = cross
    hess[:, 1, 1] = monomials.shape[0]
    # The A q_kl parts: q_x0x0 = 2a, q_y0y0 = 2c, q_x0y0 = 2b, q_a,x0 = q_b,y0 = -2u,
    # q_b,x0 = q_c,y0 = -2v; weighted by r e and summed: sum r e u = re_x - x0 re_1.
    scaled = amp * (weight != 0)
    r1 = re[:, 0]
    ru = re[:, 1] - x0 * r1
    rv = re[:, 2] - y0 * r1
    for (k, m), value in {
        (3, 3): 2 * a * r1,
        (2, 2): 2 * c * r1,
        (2, 3): 2 * b * r1,
        (3, 4): -2 * ru,
        (3, 5): -2 * rv,
        (2, 5): -2 * ru,
        (2, 6): -2 * rv,
    }.items():
        hess[:, k, m] += scaled * value
        if k != m:
            hess[:, m, k] += scaled * value
    grad = np.empty((n_fit, N_PARAMS))
    grad[:, _ROWS] = (coef @ re[:, :6, None])[:, :, 0]
    grad[:, 1] = resid.sum(axis=1)
    return hess, grad


def _initial_guess(windows: np.ndarray, sigma_guess: float) -> np.ndarray:
    """Start of each fit: a log-parabola through the central 3x3 pixels above the minimum.

    Exact for a noise-free Gaussian, so Levenberg-Marquardt needs only a few steps;
    where the central pixels do not form a peak the start is the window centre with
    width ``sigma_guess`` (the reference's start).
    """
    n_fit, size, _ = windows.shape
    r = (size - 1) // 2
    low = windows.reshape(n_fit, -1).min(axis=1)
    core = windows[:, r - 1 : r + 2, r - 1 : r + 2] - low[:, None, None]
    logs = np.log(np.maximum(core, 1e-12 * np.maximum(core[:, 1, 1], 1e-300)[:, None, None]))
    centre = logs[:, 1, 1]
    curv_y = logs[:, 0, 1] + logs[:, 2, 1] - 2 * centre
    curv_x = logs[:, 1, 0] + logs[:, 1, 2] - 2 * centre
    mixed = (logs[:, 2, 2] - logs[:, 2, 0] - logs[:, 0, 2] + logs[:, 0, 0]) / 4
    a, c, b = -curv_x / 2, -curv_y / 2, -mixed / 2
    det = a * c - b * b
    good = (core[:, 1, 1] > 0) & (a > 0) & (c > 0) & (det > 0)
    safe_det = np.where(good, det, 1.0)
    # Centre of the quadratic form: solve [[a, b], [b, c]] (x0, y0) = gradient / 2.
    gx = (logs[:, 1, 2] - logs[:, 1, 0]) / 2
    gy = (logs[:, 2, 1] - logs[:, 0, 1]) / 2
    x0 = (c * gx - b * gy) / (2 * safe_det)
    y0 = (a * gy - b * gx) / (2 * safe_det)
    good &= (np.abs(x0) <= 1) & (np.abs(y0) <= 1)
    peak = centre + a * x0**2 + 2 * b * x0 * y0 + c * y0**2
    params = np.zeros((n_fit, N_PARAMS))
    params[:, 1] = low
    params[:, 0] = np.where(good, np.exp(np.minimum(peak, 700)), core[:, 1, 1])
    params[:, 2] = np.where(good, y0, 0.0)
    params[:, 3] = np.where(good, x0, 0.0)
    start = 1.0 / (2.0 * sigma_guess**2)
    params[:, 4] = np.where(good, a, start)
    params[:, 5] = np.where(good, b, 0.0)
    params[:, 6] = np.where(good, c, start)
    return params


def fit_gaussians(windows: np.ndarray, sigma_guess: float) -> tuple[np.ndarray, np.ndarray]:
    """Fit a 2-D elliptical Gaussian plus offset to each square window, all at once.

    Parameters
    ----------
    windows : ndarray, shape (M, 2r+1, 2r+1)
        Data windows, each centred on its candidate maximum.
    sigma_guess : float
        Starting width (pixels) of the fits whose central pixels do not form a peak.

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
    monomials = _monomials(radius)
    basis_t = np.ascontiguousarray(monomials[:, :6].T)
    start = _initial_guess(windows.astype(np.float64), sigma_guess)
    scale = np.where(start[:, 0] > 0, start[:, 0], 1.0)[:, None]
    if n_fit < 4 * WARM_SAMPLE:
        params = _levenberg_marquardt(data, start, scale, monomials, basis_t)
    else:
        # The peaks of one block share their shape (same lattice, same mask): fit a
        # sample, then start the others from its median shape, a few steps closer.
        head = slice(0, WARM_SAMPLE)
        sample = _levenberg_marquardt(data[head], start[head], scale[head], monomials, basis_t)
        rest = slice(WARM_SAMPLE, None)
        warm, expo = _warm_start(
            data[rest], start[rest], sample[_converged(sample, radius)], basis_t
        )
        params = np.concatenate(
            [sample, _levenberg_marquardt(data[rest], warm, scale[rest], monomials, basis_t, expo)]
        )
    return params, _converged(params, radius)


def _converged(params: np.ndarray, radius: int) -> np.ndarray:
    """Fits that reached a peak: positive amplitude, positive-definite form, centre inside."""
    amp, _, y0, x0, a, b, c = params.T
    return (
        np.isfinite(params).all(axis=1)
        & (amp > 0)
        & (a > 0)
        & (c > 0)
        & (a * c - b * b > 0)
        & (np.abs(y0) <= radius)
        & (np.abs(x0) <= radius)
    )


def _warm_start(
    data: np.ndarray, start: np.ndarray, fitted: np.ndarray, basis_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each fit's start with the median fitted shape, where that fits the data better.

    With the shape ``(a, b, c)`` and centre fixed the model is linear in ``A`` and ``B``,
    which are then solved for exactly; the start of lower cost is kept per fit.

    Returns
    -------
    start : ndarray, shape (M, 7)
    expo : ndarray, shape (M, W)
        ``exp(-q)`` of each start, already computed here for the comparison.
    """
    start_expo = _exp_minus_q(start, basis_t)
    if not len(fitted):
        return start, start_expo
    warm = start.copy()
    warm[:, 4:7] = np.median(fitted[:, 4:7], axis=0)
    expo = _exp_minus_q(warm, basis_t)
    n_px = data.shape[1]
    sum_e, sum_ee = expo.sum(axis=1), (expo * expo).sum(axis=1)
    sum_d, sum_ed = data.sum(axis=1), (expo * data).sum(axis=1)
    det = n_px * sum_ee - sum_e**2
    solvable = det > 1e-12 * n_px * sum_ee
    safe = np.where(solvable, det, 1.0)
    warm[:, 0] = (n_px * sum_ed - sum_e * sum_d) / safe
    warm[:, 1] = (sum_d - warm[:, 0] * sum_e) / n_px
    warm_cost = (_residuals(data, warm, expo) ** 2).sum(axis=1)
    start_cost = (_residuals(data, start, start_expo) ** 2).sum(axis=1)
    better = solvable & (warm[:, 0] > 0) & (warm_cost < start_cost)
    return np.where(better[:, None], warm, start), np.where(better[:, None], expo, start_expo)


def _levenberg_marquardt(
    data: np.ndarray,
    start: np.ndarray,
    scale: np.ndarray,
    monomials: np.ndarray,
    basis_t: np.ndarray,
    expo: np.ndarray | None = None,
) -> np.ndarray:
    """Levenberg-Marquardt from ``start`` for every window (rows of ``data``) at once.

    ``expo``, if given, is ``exp(-q)`` of ``start`` (it is updated in place).
    """
    n_fit = len(data)
    params = start.copy()
    # The working set holds only the fits still running; it shrinks as they converge.
    idx = np.arange(n_fit)
    work = start.copy()
    if expo is None:
        expo = _exp_minus_q(work, basis_t)
    resid = _residuals(data, work, expo)
    cost = ((resid / scale) ** 2).sum(axis=1)
    damping = np.full(n_fit, 1e-3)
    last_step = np.full(n_fit, np.inf)
    eye = np.eye(N_PARAMS)
    for _ in range(MAX_ITER):
        if not len(idx):
            break
        newton = last_step < NEWTON_SWITCH
        hess, grad = _normal_equations(work, expo, resid, monomials, newton)
        diag = np.abs(np.einsum("mii->mi", hess))
        lhs = hess + (damping[:, None] * (diag + 1e-12 * scale**2))[:, :, None] * eye
        try:
            step = np.linalg.solve(lhs, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            # A degenerate window (e.g. flat) makes its system singular; pinv steps it safely.
            step = (np.linalg.pinv(lhs) @ grad[:, :, None])[:, :, 0]
        trial = work + step
        trial_expo = _exp_minus_q(trial, basis_t)
        trial_resid = _residuals(data, trial, trial_expo)
        trial_cost = ((trial_resid / scale) ** 2).sum(axis=1)
        better = np.isfinite(trial_cost) & (trial_cost <= cost)
        rel_change = (cost - trial_cost) / np.maximum(cost, 1e-300)
        work[better] = trial[better]
        expo[better] = trial_expo[better]
        resid[better] = trial_resid[better]
        cost[better] = trial_cost[better]
        damping = np.where(better, damping / 3.0, damping * 4.0)
        # Done when the centre stops moving (far below any useful precision), the cost
        # stalls, or no step downhill is left.
        centre_step = np.abs(step[:, 2:4]).max(axis=1)
        last_step = np.where(better, centre_step, np.inf)
        done = np.where(
            better, (newton & (centre_step < NEWTON_TOL)) | (rel_change < 1e-12), damping > 1e8
        )
        if done.any():
            params[idx[done]] = work[done]
            keep = ~done
            idx, work, data, expo, resid = (
                idx[keep], work[keep], data[keep], expo[keep], resid[keep]
            )
            cost, damping, scale = cost[keep], damping[keep], scale[keep]
            last_step = last_step[keep]
    params[idx] = work

    return params
