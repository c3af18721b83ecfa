"""The batched Gaussian fit: exact on clean peaks, start-independent, right Hessian."""

from __future__ import annotations

import numpy as np

from daskreg.kernels import gaussfit

RADIUS = 6


def _windows(n: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elliptical Gaussians plus offset on 13 x 13 windows; true (y0, x0) and height."""
    rng = np.random.default_rng(seed)
    r = np.arange(-RADIUS, RADIUS + 1, dtype=float)
    y, x = np.meshgrid(r, r, indexing="ij")
    centre = rng.uniform(-0.5, 0.5, (n, 2))
    a, c = rng.uniform(0.05, 0.3, (2, n))
    b = rng.uniform(-0.3, 0.3, n) * np.sqrt(a * c)
    u = x - centre[:, 1, None, None]
    v = y - centre[:, 0, None, None]
    quad = a[:, None, None] * u**2 + 2 * b[:, None, None] * u * v + c[:, None, None] * v**2
    amplitude = rng.uniform(0.5, 2.0, n)
    windows = 0.2 + amplitude[:, None, None] * np.exp(-quad)
    return windows + rng.normal(0, noise, windows.shape), centre, 0.2 + amplitude


def test_clean_peaks_are_fitted_exactly():
    windows, centre, height = _windows(300, seed=1, noise=0.0)
    params, ok = gaussfit.fit_gaussians(windows, sigma_guess=2.0)
    assert ok.all()
    np.testing.assert_allclose(params[:, 2:4], centre, atol=1e-6)
    np.testing.assert_allclose(params[:, 0] + params[:, 1], height, rtol=1e-6)


def test_warm_started_block_equals_each_fit_alone():
    # A block large enough for the warm start (its sample's median shape) against the
    # same windows fitted one at a time from their own log-parabola start.
    n = 4 * gaussfit.WARM_SAMPLE + 40
    windows, _, _ = _windows(n, seed=2, noise=0.05)
    together, ok = gaussfit.fit_gaussians(windows, sigma_guess=2.0)
    alone = np.concatenate([gaussfit.fit_gaussians(w[None], 2.0)[0] for w in windows[::7]])
    assert ok.all()
    np.testing.assert_allclose(together[::7, 2:4], alone[:, 2:4], atol=1e-6)


def test_warm_start_keeps_each_start_or_a_better_one():
    """The warm start (median fitted shape, exact amplitude and offset) replaces a
    start only where it fits its window better; for starts of the wrong width it does
    so for most windows."""
    n = 60
    windows, _, _ = _windows(n, seed=5, noise=0.05)
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
    windows, _, _ = _windows(3, seed=3, noise=0.05)
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
