"""The batched Gaussian fit: exact on clean peaks, start-independent, right Hessian."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

from daskreg.kernels import gaussfit, linsolve
from tests.conftest import gaussian_windows

RADIUS = 6


def test_clean_peaks_are_fitted_exactly():
    windows, centre, height = gaussian_windows(300, seed=1, noise=0.0)
    params, ok = gaussfit.fit_gaussians(windows, sigma_guess=2.0)
    assert ok.all()
    np.testing.assert_allclose(params[:, 2:4], centre, atol=1e-6)
    np.testing.assert_allclose(params[:, 0] + params[:, 1], height, rtol=1e-6)


def test_warm_started_block_equals_each_fit_alone():
    # A block large enough for the warm start (its sample's median shape) against the
    # same windows fitted one at a time from their own log-parabola start.
    n = 4 * gaussfit.WARM_SAMPLE + 40
    windows, _, _ = gaussian_windows(n, seed=2, noise=0.05)
    together, ok = gaussfit.fit_gaussians(windows, sigma_guess=2.0)
    alone = np.concatenate([gaussfit.fit_gaussians(w[None], 2.0)[0] for w in windows[::7]])
    assert ok.all()
    np.testing.assert_allclose(together[::7, 2:4], alone[:, 2:4], atol=1e-6)


def test_warm_start_keeps_each_start_or_a_better_one():
    """The warm start (median fitted shape, exact amplitude and offset) replaces a
    start only where it fits its window better; for starts of the wrong width it does
    so for most windows."""
    n = 60
    windows, _, _ = gaussian_windows(n, seed=5, noise=0.05)
    data = windows.reshape(n, -1)
    start = gaussfit._initial_guess(windows, 2.0)
    start[:, 4:7] *= 1.6  # starts of the wrong width
    fitted, _ = gaussfit.fit_gaussians(windows[:8], 2.0)
    warm = gaussfit._warm_start(data, start, fitted, RADIUS)

    def cost(params):
        expo, resid = np.empty(data.shape[1]), np.empty(data.shape[1])
        pairs = zip(data, params, strict=True)
        return np.array([gaussfit._evaluate(d, p, RADIUS, expo, resid) for d, p in pairs])

    assert (cost(warm) <= cost(start)).all()
    replaced = (warm != start).any(axis=1)
    assert replaced.mean() > 0.5
    median = np.median(fitted[:, 4:7], axis=0)
    np.testing.assert_array_equal(warm[replaced, 4:7], np.broadcast_to(median, (replaced.sum(), 3)))
    np.testing.assert_array_equal(warm[replaced, 2:4], start[replaced, 2:4])
    # Without fitted shapes the starts are kept as they are.
    np.testing.assert_array_equal(gaussfit._warm_start(data, start, fitted[:0], RADIUS), start)


def _normal_equations(params: np.ndarray, data: np.ndarray, newton: bool):
    expo, resid = np.empty(len(data)), np.empty(len(data))
    gaussfit._evaluate(data, params, RADIUS, expo, resid)
    hess, grad = np.empty((gaussfit.N_PARAMS,) * 2), np.empty(gaussfit.N_PARAMS)
    gaussfit._normal_equations(params, expo, resid, RADIUS, newton, hess, grad)
    return hess, grad


def test_newton_hessian_matches_finite_differences():
    windows, _, _ = gaussian_windows(3, seed=3, noise=0.05)
    starts = gaussfit._initial_guess(windows, 2.0) + [0, 0, 0.1, -0.15, 0.01, 0.005, -0.01]
    for window, params in zip(windows.reshape(3, -1), starts, strict=True):
        hessian, _ = _normal_equations(params, window, newton=True)
        numeric = np.empty_like(hessian)
        for k in range(gaussfit.N_PARAMS):
            step = np.zeros(gaussfit.N_PARAMS)
            step[k] = 1e-6
            # J^T r is minus half the cost's gradient; the Hessian is its negative derivative.
            ahead = _normal_equations(params + step, window, newton=False)[1]
            behind = _normal_equations(params - step, window, newton=False)[1]
            numeric[:, k] = -(ahead - behind) / 2e-6
        np.testing.assert_allclose(hessian, numeric, atol=1e-5 * np.abs(numeric).max())
        # Gauss-Newton's J^T J differs from it by the residual curvature.
        assert not np.allclose(_normal_equations(params, window, newton=False)[0], hessian)


def _model(params: np.ndarray, radius: int) -> np.ndarray:
    """The fitted model written out directly in numpy (x along columns, y along rows)."""
    amp, offset, y0, x0, a, b, c = params
    r = np.arange(-radius, radius + 1, dtype=float)
    y, x = np.meshgrid(r, r, indexing="ij")
    u, v = x - x0, y - y0
    return offset + amp * np.exp(-(a * u**2 + 2 * b * u * v + c * v**2))


def _rotated_peaks(n: int, seed: int, radius: int, noise: float):
    """Noisy elliptical peaks of random widths (1.2-3.5 px), angles, centres and
    offsets; windows and the true parameters."""
    rng = np.random.default_rng(seed)
    truth = np.empty((n, gaussfit.N_PARAMS))
    for k in range(n):
        s1, s2 = rng.uniform(1.2, 3.5, 2)
        angle = rng.uniform(0, np.pi)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        form = rot @ np.diag([0.5 / s1**2, 0.5 / s2**2]) @ rot.T  # in (x, y)
        truth[k, :4] = rng.uniform(0.5, 2.0), rng.uniform(-0.2, 0.5), *rng.uniform(-1, 1, 2)
        truth[k, 4:] = form[0, 0], form[0, 1], form[1, 1]
    windows = np.array([_model(p, radius) for p in truth])
    return windows + rng.normal(0, noise, windows.shape), truth


@pytest.mark.parametrize(
    ("seed", "n", "radius"),
    # 12 windows: each fitted from its own start; 4 * WARM_SAMPLE + 8: the warm start.
    [(0, 12, 6), (1, 12, 6), (2, 12, 4), (3, 4 * gaussfit.WARM_SAMPLE + 8, 6)],
)
def test_fit_equals_scipy_least_squares(seed, n, radius):
    # Noise 0.1 on amplitudes 0.5-2: the centres are off the truth by up to ~0.3 px, so
    # agreement with scipy's fit of the same model, to the same minimum, is far tighter
    # than agreement with the truth could show.
    windows, truth = _rotated_peaks(n, seed, radius, noise=0.1)
    params, ok = gaussfit.fit_gaussians(windows, sigma_guess=2.0)
    assert ok.all()
    reference = np.array(
        [
            least_squares(
                lambda p, w=w: (_model(p, radius) - w).ravel(),
                start,  # from the truth: independent of the kernel's own start
                method="lm",
                xtol=1e-15,
                ftol=1e-15,
                gtol=1e-15,
            ).x
            for w, start in zip(windows, truth, strict=True)
        ]
    )
    # The kernel stops after a Newton step under NEWTON_TOL = 1e-5 px, i.e. within a few
    # 1e-7 px of the minimum (quadratic convergence); measured: <= 3e-8 px for the
    # centres and <= 1e-6 relative for the other parameters. A wrong derivative or
    # model moves the minimum by far more than these bounds.
    np.testing.assert_allclose(params[:, 2:4], reference[:, 2:4], rtol=0, atol=1e-6)
    np.testing.assert_allclose(params, reference, rtol=1e-5, atol=1e-6)


def test_gradient_and_gauss_newton_matrix_match_finite_differences():
    # The Jacobian J = df/dtheta of the numpy model by central differences (step 1e-6:
    # truncation ~1e-12, rounding ~1e-10 relative), then J^T r and J^T J from it.
    windows, truth = _rotated_peaks(4, seed=7, radius=RADIUS, noise=0.1)
    starts = truth + [0.1, -0.05, 0.3, -0.2, 0.02, -0.01, 0.015]  # away from the minimum
    for window, params in zip(windows, starts, strict=True):
        data = window.ravel()
        jacobian = np.empty((data.size, gaussfit.N_PARAMS))
        for k in range(gaussfit.N_PARAMS):
            step = np.zeros(gaussfit.N_PARAMS)
            step[k] = 1e-6
            ahead, behind = _model(params + step, RADIUS), _model(params - step, RADIUS)
            jacobian[:, k] = (ahead - behind).ravel() / 2e-6
        resid = data - _model(params, RADIUS).ravel()
        for newton in (False, True):
            _, grad = _normal_equations(params, data, newton=newton)
            expected = jacobian.T @ resid
            np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
        gauss_newton = _normal_equations(params, data, newton=False)[0]
        expected = jacobian.T @ jacobian
        np.testing.assert_allclose(
            gauss_newton, expected, rtol=0, atol=1e-6 * np.abs(expected).max()
        )


@pytest.mark.parametrize("n", [12, 4 * gaussfit.WARM_SAMPLE + 8])
def test_a_fit_stopped_by_the_iteration_limit_is_not_ok(n):
    # One iteration can meet neither stopping test (the Newton test needs an accepted
    # step before it; the damping one twenty rejections): every fit runs out, and none
    # may be reported as converged, though most are plausible peaks.
    windows, _ = _rotated_peaks(n, seed=4, radius=RADIUS, noise=0.1)
    params, ok = gaussfit.fit_gaussians(windows, sigma_guess=2.0, max_iter=1)
    assert not ok.any()
    assert gaussfit._converged(params, np.ones(n, dtype=bool), RADIUS).mean() > 0.8
    # With the default limit the same fits converge.
    assert gaussfit.fit_gaussians(windows, sigma_guess=2.0)[1].all()


@pytest.mark.parametrize("n", [2, 5, gaussfit.N_PARAMS])
def test_degenerate_systems_solved_as_pinv(n):
    """Singular systems (a flat window's) get numpy's pseudo-inverse solution, for
    definite and indefinite (Newton) symmetric matrices of every rank."""
    rng = np.random.default_rng(n)
    for rank in range(n + 1):
        for _ in range(5):
            basis = rng.normal(size=(n, rank))
            signs = rng.choice([-1.0, 1.0], rank)
            lhs = basis @ np.diag(signs * rng.uniform(0.1, 100, rank)) @ basis.T
            rhs = rng.normal(size=n)
            expected = np.linalg.pinv(lhs) @ rhs
            # Rounding of a 7 x 7 eigen-solve against LAPACK's SVD: measured <= 1e-11
            # relative to the solution's size.
            scale = max(1.0, np.abs(expected).max())
            got = linsolve.pseudo_solve(lhs, rhs)
            np.testing.assert_allclose(got, expected, atol=1e-9 * scale)
            # Exactly singular (parameters a window does not constrain at all): the
            # elimination meets a zero pivot and falls back to the pseudo-inverse.
            padded = np.zeros((n + 2, n + 2))
            padded[1:-1, 1:-1] = lhs
            rhs_padded = np.concatenate([[0.5], rhs, [-2.0]])
            expected = np.linalg.pinv(padded) @ rhs_padded
            np.testing.assert_allclose(
                linsolve.solve(padded, rhs_padded), expected, atol=1e-9 * scale
            )
