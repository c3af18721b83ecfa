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


def test_newton_hessian_matches_finite_differences():
    windows, _, _ = _windows(3, seed=3, noise=0.05)
    data = windows.reshape(3, -1)
    monomials = gaussfit._monomials(RADIUS)
    basis_t = np.ascontiguousarray(monomials[:, :6].T)
    params = gaussfit._initial_guess(windows, 2.0) + [0, 0, 0.1, -0.15, 0.01, 0.005, -0.01]

    def gradient(p: np.ndarray) -> np.ndarray:
        expo = gaussfit._exp_minus_q(p, basis_t)
        resid = gaussfit._residuals(data, p, expo)
        return gaussfit._normal_equations(p, expo, resid, monomials, np.zeros(3, bool))[1]

    expo = gaussfit._exp_minus_q(params, basis_t)
    resid = gaussfit._residuals(data, params, expo)
    hessian, _ = gaussfit._normal_equations(params, expo, resid, monomials, np.ones(3, bool))
    numeric = np.empty_like(hessian)
    for k in range(gaussfit.N_PARAMS):
        step = np.zeros(gaussfit.N_PARAMS)
        step[k] = 1e-6
        # J^T r is minus half the cost's gradient; the Hessian is its negative derivative.
        numeric[:, :, k] = -(gradient(params + step) - gradient(params - step)) / 2e-6
    np.testing.assert_allclose(hessian, numeric, atol=1e-5 * np.abs(numeric).max())
