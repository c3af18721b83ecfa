"""The banded pair layout: same answers as the dense kernels on the band, no N x N arrays.

Compared against the dense kernels run on the same band of pairs (everything outside
it unmeasured), which the dense tests in tests/kernels pin down.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

from daskreg.kernels import shiftmatrix as sm
from daskreg.kernels.frame_shifts import shifts_from_rows, solve_shifts
from daskreg.kernels.layout import BandLayout, DenseLayout, pair_layout
from daskreg.kernels.peak_result import PeakResult
from daskreg.method.analyse import analyse_shift_matrix
from daskreg.method.measurements import assemble_pairs
from daskreg.method.pairs import pair_indices
from daskreg.params import RegistrationParams


def _problem(n, width, seed, hop_fraction=0.05, noise=0.05):
    rng = np.random.default_rng(seed)
    truth = np.cumsum(rng.normal(0.5, 0.3, (n, 2)), axis=0)
    i, j = pair_indices(n, width)
    shifts = truth[j] - truth[i] + rng.normal(0, noise, (len(i), 2))
    shifts[rng.random(len(i)) < hop_fraction] += 16.0
    return truth, i, j, shifts


def _dense(layout, stored, fill):
    """The dense matrix a banded storage stands for (``fill`` outside the band)."""
    n = layout.n_frames
    out = np.full((n, n, *stored.shape[2:]), fill, dtype=stored.dtype)
    ii, jj = np.nonzero(np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= layout.band)
    out[ii, jj] = layout.take(stored, ii, jj, fill)
    return out


@pytest.mark.parametrize(("n", "width"), [(12, 1), (17, 3), (30, 7), (25, 23)])
@pytest.mark.parametrize("seed", [0, 1])
def test_kernels_match_dense_on_the_band(n, width, seed):
    _, i, j, shifts = _problem(n, width, seed)
    band = BandLayout(n, width)
    used = np.ones(n, bool)
    used[np.random.default_rng(seed).integers(0, n)] = False
    matrix_b = sm.assemble_shift_matrix(n, i, j, shifts, band)
    matrix_d = sm.assemble_shift_matrix(n, i, j, shifts)
    np.testing.assert_array_equal(_dense(band, matrix_b, 0.0), matrix_d)
    valid_b = band.outer(used, used) & ~band.diagonal()
    valid_d = _dense(band, valid_b, False)

    scores_b = sm.transitivity_scores(matrix_b, valid_b, used, 5, band)
    scores_d = sm.transitivity_scores(matrix_d, valid_d, used, 5)
    inside = _dense(band, np.ones_like(valid_b), False)
    np.testing.assert_array_equal(
        _dense(band, scores_b, np.nan), np.where(inside, scores_d, np.nan)
    )
    np.testing.assert_array_equal(
        sm.connected_frames(valid_b, used, band), sm.connected_frames(valid_d, used)
    )
    keep = sm.connected_frames(valid_d, used)
    valid_b &= band.outer(keep, keep)
    valid_d &= np.outer(keep, keep)
    # Least squares over the same pairs: same shifts and uncertainties (round-off).
    for got, want in zip(
        solve_shifts(matrix_b, valid_b, keep, band),
        solve_shifts(matrix_d, valid_d, keep),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, atol=1e-10, equal_nan=True)


def test_band_row_means_are_the_least_squares_generalisation():
    # On a complete band of a consistent matrix the banded "row means" give the truth.
    truth, i, j, _ = _problem(40, 4, 3)
    band = BandLayout(40, 4)
    matrix = sm.assemble_shift_matrix(40, i, j, truth[j] - truth[i], band)
    used = np.ones(40, bool)
    got = shifts_from_rows(matrix, used, band)
    np.testing.assert_allclose(got, truth - truth.mean(axis=0), atol=1e-9)


def test_correction_refills_the_band():
    truth, i, j, shifts = _problem(20, 3, 4, hop_fraction=0.0, noise=0.01)
    band = BandLayout(20, 3)
    matrix = sm.assemble_shift_matrix(20, i, j, shifts, band)
    used = np.ones(20, bool)
    valid = band.outer(used, used)
    holes = [(5, 6), (5, 8), (11, 12)]
    for a, b in holes:
        band.put(valid, np.array([a, b]), np.array([b, a]), False)
    corrected, keep = sm.correct_shift_matrix(matrix, valid, used, band)
    assert keep.all()
    for a, b in holes:
        filled = band.take(corrected, np.array([a]), np.array([b]), np.nan)[0]
        # A refill from a single two-step path carries two pairs' noise (0.014 px per
        # axis); a wrong path would be off by a frame's drift (~0.5 px).
        np.testing.assert_allclose(filled, truth[b] - truth[a], atol=0.06)


def test_layout_choice():
    assert isinstance(pair_layout(10), DenseLayout)
    assert isinstance(pair_layout(10, 9), DenseLayout)  # the band holds every pair
    assert isinstance(pair_layout(10, 3), BandLayout)


def test_ten_thousand_frames_never_allocate_n_by_n():
    n, width = 10_000, 32
    truth, i, j, shifts = _problem(n, width, 5, hop_fraction=0.0)
    found = PeakResult(shifts, np.ones(len(i), bool), np.ones(len(i)))
    tracemalloc.start()
    pairs = assemble_pairs(n, i, j, found, np.ones(n), band=width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = analyse_shift_matrix(pairs, RegistrationParams(band=width))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # One dense (N, N, 2) float64 matrix alone would be 1.6 GB.
    assert peak < 400 * 2**20
    assert pairs.matrix.shape == (n, 2 * width + 1, 2)
    used = analysis.used
    err = analysis.shifts[used] - (truth[used] - truth[used].mean(axis=0))
    assert np.abs(err).max() < 0.1
