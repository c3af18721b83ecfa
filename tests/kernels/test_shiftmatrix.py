"""Shift-matrix laws: antisymmetry, transitivity, outliers, correction, solvers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from daskreg.errors import RegistrationWarning
from daskreg.kernels import shiftmatrix as sm
from daskreg.kernels.frame_shifts import shifts_from_rows, solve_shifts


def consistent_matrix(shifts: np.ndarray) -> np.ndarray:
    """R[i, j] = s_j - s_i for displacements s."""
    return shifts[None, :, :] - shifts[:, None, :]


def _all_pairs(n):
    i, j = np.triu_indices(n, 1)
    return i, j


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float64, (7, 2), elements=st.floats(-50, 50)),
    st.permutations(list(zip(*np.triu_indices(7, 1), strict=True))),
    st.lists(st.booleans(), min_size=21, max_size=21),
)
def test_assembled_matrix_is_antisymmetric(shifts, pairs, swap):
    # Pairs in any order and either orientation (i > j too): each is stored as measured,
    # r_ij = s_j - s_i, and its mirror filled with the opposite sign.
    i, j = np.array(pairs).T
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    r = sm.assemble_shift_matrix(7, i, j, (shifts[j] - shifts[i]))
    # The independent construction from the shifts themselves fixes the sign, which
    # antisymmetry alone cannot (-R is antisymmetric too). Equal to the last bit: the
    # same single subtraction, and IEEE negation is exact.
    np.testing.assert_array_equal(r, consistent_matrix(shifts))
    np.testing.assert_array_equal(r, -r.transpose(1, 0, 2))
    np.testing.assert_array_equal(np.diagonal(r, axis1=0, axis2=1), 0)


def test_assembled_matrix_sign_on_a_hand_example():
    # Frame 1 shows the specimen 2 px further down and 1 px left than frame 0.
    r = sm.assemble_shift_matrix(2, np.array([0]), np.array([1]), np.array([[2.0, -1.0]]))
    np.testing.assert_array_equal(r[0, 1], [2.0, -1.0])
    np.testing.assert_array_equal(r[1, 0], [-2.0, 1.0])


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (9, 2), elements=st.floats(-30, 30)))
def test_consistent_matrix_scores_zero_and_is_unchanged_by_correction(shifts):
    r = consistent_matrix(shifts)
    used = np.ones(9, dtype=bool)
    valid = np.ones((9, 9), dtype=bool)
    scores = sm.transitivity_scores(r, valid, used, maxpaths=5)
    off = ~np.eye(9, dtype=bool)
    np.testing.assert_allclose(scores[off], 0, atol=1e-9)
    outliers, _, _ = sm.transitivity_outliers(r, valid, used, threshold=0.1)
    assert not outliers.any()
    corrected, kept = sm.correct_shift_matrix(r, valid, used)
    np.testing.assert_array_equal(corrected, r)
    assert kept.all()
    # Row means and least squares agree on a consistent matrix (gauge: zero mean).
    rows = shifts_from_rows(corrected, used)
    lsq, _ = solve_shifts(r, valid, used)
    np.testing.assert_allclose(rows, shifts - shifts.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(lsq, rows, atol=1e-9)


def test_transitivity_finds_a_unit_cell_hop_and_correction_refills_it():
    rng = np.random.default_rng(0)
    shifts = np.cumsum(rng.normal(0.5, 0.3, (12, 2)), axis=0)
    r = consistent_matrix(shifts) + rng.normal(0, 0.05, (12, 12, 2))
    r = (r - r.transpose(1, 0, 2)) / 2
    r[3, 8] += [16.0, 0.0]  # a hop by one lattice spacing
    r[8, 3] -= [16.0, 0.0]
    used = np.ones(12, dtype=bool)
    valid = np.ones((12, 12), dtype=bool)
    outliers, scores, _ = sm.transitivity_outliers(r, valid, used, threshold=4.0, maxpaths=5)
    assert outliers[3, 8] and outliers[8, 3]
    # Pairs sharing a path with the hop score about 16/5, below the threshold.
    assert outliers.sum() == 2
    assert scores[3, 8] == pytest.approx(16, abs=0.5)
    corrected, _ = sm.correct_shift_matrix(r, valid & ~outliers, used)
    np.testing.assert_allclose(corrected[3, 8], shifts[8] - shifts[3], atol=0.1)


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_tiny_stacks(n):
    # The reference raised IndexError for 3-6 frames (paths running past the end).
    # Integer shifts: every path residual is computed exactly, so the scores are exact.
    shifts = np.arange(2 * n, dtype=float).reshape(n, 2)
    r = consistent_matrix(shifts)
    used = np.ones(n, dtype=bool)
    valid = np.ones((n, n), bool)
    off = ~np.eye(n, dtype=bool)
    scores = sm.transitivity_scores(r, valid, used, maxpaths=5)
    np.testing.assert_array_equal(scores[off], 0.0)
    assert np.isnan(np.diagonal(scores)).all()
    # One corner element wrong by (3, 4), |e| = 5 px. With maxpaths >= n - 2 every
    # intermediate frame is a path: pair (0, n-1) has the error on all n - 2 of its
    # paths, a pair sharing one frame with it on one path (through the other frame),
    # a pair sharing none on no path.
    a, b = 0, n - 1
    r[a, b] += [3.0, 4.0]
    r[b, a] -= [3.0, 4.0]
    expected = np.zeros((n, n))
    expected[[a, b, a, b], :] = expected[:, [a, b, a, b]] = 5.0 / (n - 2)
    expected[a, b] = expected[b, a] = 5.0
    np.fill_diagonal(expected, np.nan)
    scores = sm.transitivity_scores(r, valid, used, maxpaths=5)
    np.testing.assert_array_equal(scores, expected)
    outliers, _, _ = sm.transitivity_outliers(r, valid, used, threshold=5.0)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(outliers, expected >= 5.0)


def test_paths_skip_unused_frames_and_invalid_legs():
    shifts = np.zeros((6, 2))
    r = consistent_matrix(shifts)
    r[2] += 100  # frame 2 is garbage ...
    r[:, 2] -= 100
    used = np.ones(6, dtype=bool)
    used[2] = False  # ... and excluded: no path may go through it
    valid = np.outer(used, used)
    scores = sm.transitivity_scores(r, valid, used)
    np.testing.assert_allclose(scores[0, 5], 0)


def test_correction_always_terminates_and_drops_unlinked_frames():
    # The reference looped forever when a frame had only its diagonal valid.
    r = consistent_matrix(np.random.default_rng(1).normal(size=(40, 2)))
    used = np.ones(40, dtype=bool)
    valid = np.ones((40, 40), dtype=bool)
    valid[7, :] = valid[:, 7] = False
    valid[7, 7] = True
    with pytest.warns(RegistrationWarning, match=r"frames \[7\]"):
        corrected, kept = sm.correct_shift_matrix(r, valid, used)
    assert not kept[7] and kept.sum() == 39


def test_correction_fills_a_sparse_but_connected_matrix():
    # Only neighbouring pairs known (a chain): every pair is reachable by paths.
    shifts = np.random.default_rng(2).normal(size=(10, 2))
    r = consistent_matrix(shifts)
    valid = np.eye(10, dtype=bool) | np.eye(10, k=1, dtype=bool) | np.eye(10, k=-1, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corrected, kept = sm.correct_shift_matrix(r, valid, np.ones(10, dtype=bool))
    assert kept.all()
    np.testing.assert_allclose(corrected, r, atol=1e-9)


def test_nn_outliers_flags_an_isolated_jump_at_any_position_including_the_edges():
    shifts = np.linspace(0, 5, 10)[:, None] * np.ones((1, 2))
    r = consistent_matrix(shifts)
    used = np.ones(10, dtype=bool)
    assert not sm.nn_outliers(r, used, max_shift=1.0).any()
    for a, b in [(0, 9), (4, 5), (8, 9)]:  # corner, inner, last row (reference off-by-one)
        bad = r.copy()
        bad[a, b] += 10
        bad[b, a] -= 10
        out = sm.nn_outliers(bad, used, max_shift=1.0)
        assert out[a, b] and out[b, a]
        assert out.sum() == 2


def test_nn_outliers_respect_the_frame_range():
    r = consistent_matrix(np.zeros((8, 2)))
    r[0, :] += 50  # frame 0 is outside the range: must not make its neighbours outliers
    r[:, 0] -= 50
    used = np.ones(8, dtype=bool)
    used[0] = False
    assert not sm.nn_outliers(r, used, max_shift=1.0).any()


def test_frame_mask():
    used = sm.frame_mask(10, np.array([2, 5]), (1, 8))
    assert np.flatnonzero(used).tolist() == [1, 3, 4, 6, 7]


def test_least_squares_uses_every_pair_and_reports_uncertainty():
    rng = np.random.default_rng(3)
    shifts = rng.normal(size=(15, 2)) * 3
    noise = rng.normal(0, 0.1, (15, 15, 2))
    r = consistent_matrix(shifts) + (noise - noise.transpose(1, 0, 2)) / np.sqrt(2)
    used = np.ones(15, dtype=bool)
    valid = np.ones((15, 15), dtype=bool)
    lsq, unc = solve_shifts(r, valid, used)
    rows = shifts_from_rows(r, used)
    # On a complete matrix the least-squares solution IS the row mean.
    np.testing.assert_allclose(lsq, rows, atol=1e-9)
    # Per-axis pair noise 0.1 px; each shift averages 14 pairs: about 0.1 / sqrt(15).
    assert np.all((unc > 0.01) & (unc < 0.05))
    err = lsq - (shifts - shifts.mean(axis=0))
    assert np.sqrt((err**2).mean()) < 0.06
