"""How the synthetic microscope images a specimen: sampled Gaussian columns, then noise.

:func:`daskreg.synthetic.lattice_series` places the atomic columns and the drift; here
the columns are sampled at the integer pixel centres (not Fourier-shifted, so edges and
sub-pixel positions are exact) and the expected image becomes counts with Poisson shot
noise and Gaussian read noise.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CUTOFF_SIGMA", "render", "add_noise"]

# A Gaussian column farther than 5 sigma from a pixel adds < 4e-6 of its peak there.
CUTOFF_SIGMA = 5.0
# Rows per rendering strip: small enough to skip most columns, large enough for BLAS.
_ROW_BLOCK = 64


def render(
    positions: np.ndarray, amplitudes: np.ndarray, sigma: float, ys: np.ndarray, xs: np.ndarray
) -> np.ndarray:
    """Sample a sum of isotropic Gaussian columns at the pixel centres ``ys`` x ``xs``."""
    image = np.empty((len(ys), len(xs)), dtype=np.float32)
    # Rendering strips of rows lets each product skip the columns far from the strip,
    # which cuts the work several-fold on large frames.
    for start in range(0, len(ys), _ROW_BLOCK):
        rows = slice(start, start + _ROW_BLOCK)
        image[rows] = _render_block(positions, amplitudes, sigma, ys[rows], xs)
    return image


def _render_block(
    positions: np.ndarray, amplitudes: np.ndarray, sigma: float, ys: np.ndarray, xs: np.ndarray
) -> np.ndarray:
    """Render the rows ``ys`` (non-empty) as one matrix product.

    Isotropic Gaussians are separable, so the image is ``Gy.T @ (A * Gx)`` over the
    columns near the block.
    """
    cut = CUTOFF_SIGMA * sigma
    near = (
        (positions[:, 0] >= ys[0] - cut)
        & (positions[:, 0] <= ys[-1] + cut)
        & (positions[:, 1] >= xs[0] - cut)
        & (positions[:, 1] <= xs[-1] + cut)
    )
    yc, xc = positions[near].T
    gy = np.exp(-((ys[None, :] - yc[:, None]) ** 2) / (2 * sigma**2)).astype(np.float32)
    gx = np.exp(-((xs[None, :] - xc[:, None]) ** 2) / (2 * sigma**2)).astype(np.float32)
    gx *= amplitudes[near, None].astype(np.float32)
    return gy.T @ gx


def add_noise(
    expected: np.ndarray, dose: float, read_noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Turn an expected image in units of dose into float32 counts with shot and read noise."""
    if math.isfinite(dose):
        image = rng.poisson(expected.astype(np.float64) * dose).astype(np.float32)
    else:
        image = expected
    if read_noise > 0:
        image += np.float32(read_noise) * rng.standard_normal(image.shape, dtype=np.float32)
    return image
