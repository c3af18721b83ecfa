"""Shared test fixtures: the real-data folder and small synthetic series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daskreg.synthetic import lattice_series

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
requires_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data not present")


def rms_error(measured: np.ndarray, true: np.ndarray, used: np.ndarray | None = None) -> float:
    """RMS of the 2-D shift error over used frames after removing the common offset."""
    used = np.ones(len(true), dtype=bool) if used is None else used
    diff = measured[used] - true[used]
    diff = diff - diff.mean(axis=0)
    return float(np.sqrt((diff**2).sum(axis=1).mean()))


def gaussian_windows(
    n: int, seed: int, noise: float, radius: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elliptical Gaussians plus offset on square windows; true (y0, x0) and height."""
    rng = np.random.default_rng(seed)
    r = np.arange(-radius, radius + 1, dtype=float)
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


@pytest.fixture(scope="session")
def small_series():
    """Eight 96x96 frames, moderate dose: quick to register, lattice clearly visible."""
    return lattice_series(8, (96, 96), dose=100, seed=11)
