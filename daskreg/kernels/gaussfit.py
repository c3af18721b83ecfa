"""Least-squares fits of a 2-D elliptical Gaussian plus offset to a block of windows.

The model is ``f = B + A exp(-q)`` with ``q = a u^2 + 2 b u v + c v^2``, ``u = x - x0``,
``v = y - y0``, fitted to each window by Levenberg-Marquardt.

Every derivative of ``f`` is ``exp(-q)`` times a polynomial of degree at most four in
``(x, y)``, so the normal equations need only a few weighted moments of each window,
``sum_p w_p x_p^i y_p^j`` with ``i + j <= 4``, summed row by row (powers of ``x``
along a row, then of ``y``): no ``(7, W)`` Jacobian is ever formed.

Far from the minimum the steps are Gauss-Newton's (``J^T J``, always positive
semi-definite); once a fit's centre moves less than ``NEWTON_SWITCH`` pixels the full
Hessian (``J^T J - sum_p r_p d2f_p``) takes over, undamped, and the fit converges
quadratically instead of linearly. The peaks of one block of pairs share their shape (same lattice,
same mask), so a sample of ``WARM_SAMPLE`` fits is solved first and the others start
from its median shape: about 3 iterations per fit instead of 12, to the same minimum
(within about 2e-7 px on noisy windows).

The iterations run compiled (numba), one fit after another: a fit's few hundred pixels
and 7 x 7 system stay in registers and cache, where the same steps batched in numpy
cost about ten array passes each. The start stays in numpy.
"""

from __future__ import annotations

import numba
import numpy as np

from daskreg.kernels.linsolve import solve as _solve

__all__ = ["fit_gaussians", "N_PARAMS", "NEWTON_SWITCH"]

N_PARAMS = 7  # amplitude, offset, y0, x0, a, b, c
# Iterations allowed per fit. Most fits stop after 3-10; broad peaks in small windows
# (e.g. 5 x 5 pixels, width along one axis beyond the window) creep along a flat valley
# where Newton's steps are rejected, and need up to about 250 (measured on the test
# suite's series): with 30, 5 % of its fits stopped short, their centres up to 1e-3 px
# from the minimum. A fit that runs out of iterations is reported as not converged.
MAX_ITER = 300
# Centre step (pixels) below which the full Hessian is used: near a minimum it is
# positive definite, but from a distant start its curvature terms can point away.
NEWTON_SWITCH = 3e-2
# A fit stops after a Newton step smaller than this (pixels): Newton converges
# quadratically, so the centre is then within a few 1e-7 px of the minimum (measured on
# noisy windows), whatever the start: results do not depend on how pairs are batched.
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
# Powers of x and y of each moment.
_POWER_X = np.array([i for i, _ in _EXPONENTS])
_POWER_Y = np.array([j for _, j in _EXPONENTS])
# Parameter index of each derivative polynomial D_k (see ``_normal_equations``).
_ROWS = np.array([0, 2, 3, 4, 5, 6])  # A, y0, x0, a, b, c (the offset B is separate)


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


def fit_gaussians(
    windows: np.ndarray, sigma_guess: float, *, max_iter: int = MAX_ITER
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a 2-D elliptical Gaussian plus offset to each square window.

    Parameters
    ----------
    windows : ndarray, shape (M, 2r+1, 2r+1)
        Data windows, each centred on its candidate maximum.
    sigma_guess : float
        Starting width (pixels) of the fits whose central pixels do not form a peak.
    max_iter : int, default MAX_ITER
        Iterations allowed per fit; a fit still moving after them is not ``ok``.

    Returns
    -------
    params : ndarray of float64, shape (M, 7)
        ``(amplitude, offset, y0, x0, a, b, c)``; ``y0, x0`` relative to the window
        centre; the quadratic form ``a u^2 + 2 b u v + c v^2`` with ``u = x - x0``.
    ok : ndarray of bool, shape (M,)
        True where the fit converged (a Newton step under ``NEWTON_TOL`` pixels, or no
        step left that lowers the cost) within ``max_iter`` iterations, to a peak
        (positive amplitude, positive-definite form) whose centre lies inside its window.

    References
    ----------
    .. [1] D. W. Marquardt, "An algorithm for least-squares estimation of nonlinear
       parameters", J. Soc. Ind. Appl. Math. 11, 431-441 (1963), DOI 10.1137/0111030.
    """
    n_fit, size, _ = windows.shape
    radius = (size - 1) // 2
    data = np.ascontiguousarray(windows.reshape(n_fit, -1), dtype=np.float64)
    start = _initial_guess(data.reshape(windows.shape), sigma_guess)
    scale = np.where(start[:, 0] > 0, start[:, 0], 1.0)
    if n_fit < 4 * WARM_SAMPLE:
        params, stopped = _levenberg_marquardt(data, start, scale, radius, max_iter)
    else:
        # The peaks of one block share their shape (same lattice, same mask): fit a
        # sample, then start the others from its median shape, a few steps closer.
        head = slice(0, WARM_SAMPLE)
        sample, sample_stopped = _levenberg_marquardt(
            data[head], start[head], scale[head], radius, max_iter
        )
        rest = slice(WARM_SAMPLE, None)
        good = _converged(sample, sample_stopped, radius)
        warm = _warm_start(data[rest], start[rest], sample[good], radius)
        params, stopped = _levenberg_marquardt(data[rest], warm, scale[rest], radius, max_iter)
        params = np.concatenate([sample, params])
        stopped = np.concatenate([sample_stopped, stopped])
    return params, _converged(params, stopped, radius)


def _converged(params: np.ndarray, stopped: np.ndarray, radius: int) -> np.ndarray:
    """Fits that converged to a peak.

    Stopped by a convergence test (not by the iteration limit), positive amplitude,
    positive-definite form, centre inside the window.
    """
    amp, _, y0, x0, a, b, c = params.T
    return (
        stopped
        & np.isfinite(params).all(axis=1)
        & (amp > 0)
        & (a > 0)
        & (c > 0)
        & (a * c - b * b > 0)
        & (np.abs(y0) <= radius)
        & (np.abs(x0) <= radius)
    )


def _warm_start(data: np.ndarray, start: np.ndarray, fitted: np.ndarray, radius: int) -> np.ndarray:
    """Each fit's start with the median fitted shape, where that fits the data better.

    With the shape ``(a, b, c)`` and centre fixed the model is linear in ``A`` and ``B``,
    which are then solved for exactly; the start of lower cost is kept per fit.
    """
    if not len(fitted):
        return start
    return _warm_start_fits(data, start, np.median(fitted[:, 4:7], axis=0), radius)


@numba.njit(cache=True, nogil=True)
def _warm_start_fits(data, start, shape, radius):  # pragma: no cover - compiled
    """:func:`_warm_start` with the shape ``(a, b, c)`` given, one fit after another.

    Batched in numpy, its window-sized temporaries cost more than the sums.
    """
    n_fit, n_px = data.shape
    out = start.copy()
    expo, resid = np.empty(n_px), np.empty(n_px)
    warm = np.empty(N_PARAMS)
    for m in range(n_fit):
        start_cost = _evaluate(data[m], start[m], radius, expo, resid)
        # exp(-q) alone: the model with A = 1, B = 0.
        # Element by element here and below: array assignments compile numba's
        # broadcasting machinery, seconds of a new user's first run.
        for k in range(N_PARAMS):
            warm[k] = shape[k - 4] if 4 <= k < 7 else start[m, k]
        warm[0], warm[1] = 1.0, 0.0
        _evaluate(data[m], warm, radius, expo, resid)
        sum_e = sum_ee = sum_d = sum_ed = 0.0
        for k in range(n_px):
            e, d = expo[k], data[m, k]
            sum_e += e
            sum_ee += e * e
            sum_d += d
            sum_ed += e * d
        det = n_px * sum_ee - sum_e * sum_e
        if not det > 1e-12 * n_px * sum_ee:
            continue
        amp = (n_px * sum_ed - sum_e * sum_d) / det
        offset = (sum_d - amp * sum_e) / n_px
        if not amp > 0:
            continue
        warm_cost = 0.0
        for k in range(n_px):
            r = data[m, k] - offset - amp * expo[k]
            warm_cost += r * r
        if warm_cost < start_cost:
            for k in range(N_PARAMS):
                out[m, k] = warm[k]
            out[m, 0], out[m, 1] = amp, offset
    return out


@numba.njit(cache=True, nogil=True)
def _evaluate(data, p, radius, expo, resid):  # pragma: no cover - compiled
    """``exp(-q)`` and the residuals ``data - f`` of one fit, in place.

    Returns the sum of squared residuals.

    Along a row ``q`` is a parabola in ``x``, so ``exp(-q)`` follows a two-term
    recurrence: two exponentials per row instead of one per pixel. A fit that wanders
    off a peak (form not positive definite) can overflow; its cost is then infinite or
    NaN, and Levenberg-Marquardt rejects the step.
    """
    amp, offset, y0, x0, a, b, c = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    size = 2 * radius + 1
    ratio_step = np.exp(-2 * a)
    cost = 0.0
    for i in range(size):
        v = i - radius - y0
        u = -radius - x0
        # q(u + 1) - q(u) = a (2u + 1) + 2 b v, itself changing by 2a per step.
        e = np.exp(-(a * u * u + 2 * b * u * v + c * v * v))
        ratio = np.exp(-(a * (2 * u + 1) + 2 * b * v))
        for j in range(size):
            k = i * size + j
            r = data[k] - offset - amp * e
            expo[k] = e
            resid[k] = r
            cost += r * r
            e *= ratio
            ratio *= ratio_step
    return cost


@numba.njit(cache=True, nogil=True)
def _normal_equations(p, expo, resid, radius, newton, hess, grad):  # pragma: no cover
    """``H`` and ``J^T r`` of one fit, in place.

    ``H`` is ``J^T J``, or the full Hessian if ``newton``.

    The full Hessian is ``J^T J - sum_p r_p d2f_p``. With ``e = exp(-q)`` and the
    derivative polynomials ``D_k = (df / d theta_k) / e`` (``D_A = 1``,
    ``D_y0 = 2A (b u + c v)``, ``D_x0 = 2A (a u + b v)``, ``D_a = -A u^2``,
    ``D_b = -2A u v``, ``D_c = -A v^2``, written in the basis ``1, x, y, x^2, xy, y^2``),
    ``d2f / dA d theta_k = e D_k / A`` and, for the other parameters,
    ``d2f / d theta_k d theta_l = e (D_k D_l / A - A q_kl)`` (``q_kl`` the second
    derivatives of ``q``). The ``D_k D_l`` parts of both sums share one quadratic form:
    ``C (S[e^2] - S[r e] / A) C^T`` with ``S[w]`` the moments of ``w`` on products of
    basis monomials.
    """
    amp, y0, x0, a, b, c = p[0], p[2], p[3], p[4], p[5], p[6]
    size = 2 * radius + 1
    n_mono = len(_POWER_X)
    e2, re, e1 = np.zeros(n_mono), np.zeros(n_mono), np.zeros(6)
    row_e2, row_re, row_e1, powers_y = np.empty(5), np.empty(5), np.empty(3), np.empty(5)
    sum_r = 0.0
    for i in range(size):
        # Scalars, not arrays: they stay in registers through the row.
        e_0 = e_1 = e_2 = ee_0 = ee_1 = ee_2 = ee_3 = ee_4 = 0.0
        er_0 = er_1 = er_2 = er_3 = er_4 = 0.0
        for j in range(size):
            e, r = expo[i * size + j], resid[i * size + j]
            ee, er = e * e, e * r
            sum_r += r
            x = float(j - radius)
            x2 = x * x
            e_0 += e
            e_1 += e * x
            e_2 += e * x2
            ee_0 += ee
            ee_1 += ee * x
            ee_2 += ee * x2
            ee_3 += ee * x2 * x
            ee_4 += ee * x2 * x2
            er_0 += er
            er_1 += er * x
            er_2 += er * x2
            er_3 += er * x2 * x
            er_4 += er * x2 * x2
        row_e1[0], row_e1[1], row_e1[2] = e_0, e_1, e_2
        row_e2[0], row_e2[1], row_e2[2], row_e2[3], row_e2[4] = ee_0, ee_1, ee_2, ee_3, ee_4
        row_re[0], row_re[1], row_re[2], row_re[3], row_re[4] = er_0, er_1, er_2, er_3, er_4
        y = float(i - radius)
        powers_y[0] = 1.0
        for n in range(1, 5):
            powers_y[n] = powers_y[n - 1] * y
        for k in range(n_mono):
            weight_y = powers_y[_POWER_Y[k]]
            e2[k] += row_e2[_POWER_X[k]] * weight_y
            re[k] += row_re[_POWER_X[k]] * weight_y
            if k < 6:
                e1[k] += row_e1[_POWER_X[k]] * weight_y
    # 1/A where the full Hessian is wanted, 0 where Gauss-Newton's.
    weight = 1.0 / amp if newton and amp != 0 else 0.0
    coef = np.zeros((6, 6))
    coef[0, 0] = 1.0
    coef[1, 0] = -2 * amp * (b * x0 + c * y0)
    coef[1, 1] = 2 * amp * b
    coef[1, 2] = 2 * amp * c
    coef[2, 0] = -2 * amp * (a * x0 + b * y0)
    coef[2, 1] = 2 * amp * a
    coef[2, 2] = 2 * amp * b
    # -A u^2 = -A (x^2 - 2 x0 x + x0^2), -2A u v and -A v^2 likewise.
    coef[3, 0] = -amp * x0**2
    coef[3, 1] = 2 * amp * x0
    coef[3, 3] = -amp
    coef[4, 0] = -2 * amp * x0 * y0
    coef[4, 1] = 2 * amp * y0
    coef[4, 2] = 2 * amp * x0
    coef[4, 4] = -2 * amp
    coef[5, 0] = -amp * y0**2
    coef[5, 2] = 2 * amp * y0
    coef[5, 5] = -amp
    moments = np.empty((6, 6))
    for i in range(6):
        for j in range(6):
            moments[i, j] = e2[_PRODUCT[i, j]] - weight * re[_PRODUCT[i, j]]
    # C M C^T by hand: a BLAS call costs more than these 432 products.
    half = np.zeros((6, 6))
    for i in range(6):
        for k in range(6):
            if coef[i, k] != 0.0:
                for j in range(6):
                    half[i, j] += coef[i, k] * moments[k, j]
    for i in range(6):
        cross = 0.0
        g = 0.0
        for j in range(6):
            inner = 0.0
            for k in range(6):
                inner += half[i, k] * coef[j, k]
            hess[_ROWS[i], _ROWS[j]] = inner
            cross += coef[i, j] * e1[j]
            g += coef[i, j] * re[j]
        hess[1, _ROWS[i]] = cross
        hess[_ROWS[i], 1] = cross
        grad[_ROWS[i]] = g
    hess[0, 0] += weight * re[0]  # f is linear in A: no curvature term there
    hess[1, 1] = len(expo)
    grad[1] = sum_r
    if weight != 0:
        # The A q_kl parts: q_x0x0 = 2a, q_y0y0 = 2c, q_x0y0 = 2b, q_a,x0 = q_b,y0 = -2u,
        # q_b,x0 = q_c,y0 = -2v; weighted by r e and summed: sum r e u = re_x - x0 re_1.
        r1 = re[0]
        ru = re[1] - x0 * r1
        rv = re[2] - y0 * r1
        hess[3, 3] += amp * 2 * a * r1
        hess[2, 2] += amp * 2 * c * r1
        for k, m, value in (
            (2, 3, 2 * b * r1),
            (3, 4, -2 * ru),
            (3, 5, -2 * rv),
            (2, 5, -2 * ru),
            (2, 6, -2 * rv),
        ):
            hess[k, m] += amp * value
            hess[m, k] += amp * value


@numba.njit(cache=True, nogil=True)
def _levenberg_marquardt(data, start, scale, radius, max_iter):  # pragma: no cover
    """Levenberg-Marquardt from ``start`` for every window (rows of ``data``).

    Returns the parameters, and whether each fit stopped by a convergence test within
    ``max_iter`` iterations.
    """
    n_fit, n_px = data.shape
    params = start.copy()
    stopped = np.zeros(n_fit, dtype=np.bool_)
    expo, resid = np.empty(n_px), np.empty(n_px)
    trial_expo, trial_resid = np.empty(n_px), np.empty(n_px)
    hess = np.empty((N_PARAMS, N_PARAMS))
    lhs = np.empty((N_PARAMS, N_PARAMS))
    grad = np.empty(N_PARAMS)
    trial = np.empty(N_PARAMS)
    for m in range(n_fit):
        work = params[m]
        norm = scale[m] ** 2
        cost = _evaluate(data[m], work, radius, expo, resid) / norm
        damping = 1e-3
        last_step = np.inf
        for _ in range(max_iter):
            newton = last_step < NEWTON_SWITCH
            _normal_equations(work, expo, resid, radius, newton, hess, grad)
            # Newton steps are taken undamped: damping would shrink them most along the
            # weakly determined directions, and a short step would pass the test below
            # with the centre still 1e-6 px or more from the minimum.
            # Element by element (not hess.copy(), work + step, work[:] = trial): array
            # expressions cost seconds of a new user's first compile.
            for k in range(N_PARAMS):
                for j in range(N_PARAMS):
                    lhs[k, j] = hess[k, j]
                lhs[k, k] += (0.0 if newton else damping) * (abs(hess[k, k]) + 1e-12 * norm)
            step = _solve(lhs, grad)
            for k in range(N_PARAMS):
                trial[k] = work[k] + step[k]
            trial_cost = _evaluate(data[m], trial, radius, trial_expo, trial_resid) / norm
            better = np.isfinite(trial_cost) and trial_cost <= cost
            centre_step = max(abs(step[2]), abs(step[3]))
            if better:
                for k in range(N_PARAMS):
                    work[k] = trial[k]
                expo, trial_expo = trial_expo, expo
                resid, trial_resid = trial_resid, resid
                cost = trial_cost
                damping /= 3.0
                last_step = centre_step
                # Done when a Newton step barely moves the centre: far below any useful
                # precision, and the same minimum from any start. (A stalling cost is no
                # test: near the minimum it stalls while the centre still moves 1e-5 px.)
                if newton and centre_step < NEWTON_TOL:
                    stopped[m] = True
                    break
            else:
                damping *= 4.0
                last_step = np.inf
                if damping > 1e8:  # no step downhill is left: a minimum to rounding
                    stopped[m] = True
                    break
    return params, stopped
