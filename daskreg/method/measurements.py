"""The pair stage's outcome as N x N matrices (or their band), from any engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daskreg.kernels import peaks
from daskreg.kernels import shiftmatrix as sm
from daskreg.kernels.layout import PairLayout, pair_layout

__all__ = ["PairMeasurements", "assemble_pairs"]


@dataclass
class PairMeasurements:
    """The raw outcome of the pair stage, as N x N matrices (or their band).

    Attributes
    ----------
    matrix : (N, N, 2) float
        Antisymmetric ``R[i, j] = s_j - s_i``.
    measured : (N, N) bool
        Pairs whose correlation was computed.
    fit_ok : (N, N) bool
        False where the maximum finder failed.
    quality : (N, N) float
        Correlation coefficient of each pair, ``peak / sqrt(E_i E_j)`` (NaN if unmeasured).
    layout : PairLayout
        How the matrices are stored: dense ``(N, N)``, or ``(N, 2 band + 1)`` by offset
        ``j - i`` when a band leaves pairs out (:func:`daskreg.kernels.layout.pair_layout`).
    energy : (N,) float
        Masked energy of each frame (:func:`daskreg.kernels.correlate.masked_energy`).
    lattice_basis : (B, 2) float, optional
        Lattice translations of the specimen in pixels (rows ``a1``, ``a2``), when a
        lattice was found: pairs off by one are corrected by the robust solve.
    split : (N, N_SPLITS, 2) float, optional
        :func:`~.pairs.half_shifts` of every frame (NaN for unusable frames): the per-frame
        noise of a shift, which the pair residuals cannot see, and tears.
    """

    matrix: np.ndarray
    measured: np.ndarray
    fit_ok: np.ndarray
    quality: np.ndarray
    layout: PairLayout
    energy: np.ndarray
    lattice_basis: np.ndarray | None = None
    split: np.ndarray | None = None


def assemble_pairs(
    n_frames: int,
    i: np.ndarray,
    j: np.ndarray,
    found: peaks.PeakResult,
    energy: np.ndarray,
    band: int | None = None,
    split: np.ndarray | None = None,
) -> PairMeasurements:
    """N x N matrices (or their band) from the pair results of any engine.

    Parameters
    ----------
    n_frames : int
    i, j : ndarray of int, shape (P,)
        Pair indices.
    found : PeakResult
        Shifts, success flags and peak heights of the pairs, in the same order.
    energy : ndarray, shape (N,)
        :func:`daskreg.kernels.correlate.masked_energy` of every frame.
    band : int, optional
        The band the pairs were chosen with (``params.band``): picks the storage.
    split : ndarray, shape (N, N_SPLITS, 2), optional
        :func:`~.pairs.half_shifts` of every frame.
    """
    layout = pair_layout(n_frames, band)
    matrix = sm.assemble_shift_matrix(n_frames, i, j, found.shifts, layout)
    measured = layout.full(False)
    fit_ok = layout.full(True)
    quality = layout.full(np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        coefficient = found.peak / np.sqrt(energy[i] * energy[j])
    for a, b in ((i, j), (j, i)):
        layout.put(measured, a, b, True)
        layout.put(fit_ok, a, b, found.ok)
        layout.put(quality, a, b, coefficient)
    return PairMeasurements(
        matrix, measured, fit_ok, quality, layout, np.asarray(energy), split=split
    )
