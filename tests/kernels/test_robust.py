"""The robust pair-graph solve against ground truth and an independent least squares."""

from __future__ import annotations

import numpy as np
import pytest

from daskreg.kernels import robust
from daskreg.kernels import shiftmatrix as sm
from daskreg.kernels.frame_shifts import solve_shifts
from daskreg.kernels.lattice import nearest_translation
from daskreg.kernels.layout import pair_layout
from daskreg.method.pairs import pair_indices

# A hexagonal lattice of 12 px: a1 along x, a2 at 60 degrees, as (y, x).
BASIS = np.array([[0.0, 12.0], [10.392, 6.0]])


def _graph(n, band, *, hop_fraction, junk_fraction, noise=0.1, seed=0):
    """A drifting series' pair matrix with hops by lattice translations and junk pairs."""
    rng = np.random.default_rng(seed)
    truth = np.cumsum(rng.normal([0.8, -0.6], 0.25, (n, 2)), axis=0)
    layout = pair_layout(n, band)
    i, j = pair_indices(n, band)
    r = truth[j] - truth[i] + rng.normal(0, noise, (len(i), 2))
    hop = rng.random(len(i)) < hop_fraction
    m = rng.integers(-1, 2, (len(i), 2))
    m[(m == 0).all(axis=1)] = [1, 0]
    r[hop] += m[hop] @ BASIS
    junk = ~hop & (rng.random(len(i)) < junk_fraction)
    r[junk] = rng.uniform(-100, 100, (junk.sum(), 2))
    matrix = sm.assemble_shift_matrix(n, i, j, r, layout)
    candidates = layout.full(False)
    layout.put(candidates, i, j, True)
    layout.put(candidates, j, i, True)
    return truth - truth.mean(axis=0), matrix, candidates, layout, (i, j, hop, junk, r)


def _clean_lstsq(n, i, j, r, keep):
    """Least squares on the uncontaminated pairs only, written as a design matrix."""
    design = np.zeros((keep.sum() + 1, n))
    rows = np.arange(keep.sum())
    design[rows, j[keep]] = 1.0
    design[rows, i[keep]] = -1.0
    design[-1] = 1.0  # gauge: zero mean
    rhs = np.vstack([r[keep], [0.0, 0.0]])
    return np.linalg.lstsq(design, rhs, rcond=None)[0]


@pytest.mark.parametrize("n, band", [(30, None), (120, 6), (400, 16)])
@pytest.mark.parametrize("seed", [0, 1])
def test_hops_and_junk_are_removed(n, band, seed):
    truth, matrix, candidates, layout, (i, j, hop, junk, r) = _graph(
        n, band, hop_fraction=0.15, junk_fraction=0.05, seed=seed
    )
    solution = robust.robust_solve(
        matrix, candidates, np.ones(n, bool), layout, translations=BASIS, cap=3.6
    )
    reference = _clean_lstsq(n, i, j, r, ~hop & ~junk)
    error = np.linalg.norm(solution.shifts - truth, axis=1)
    # Pair noise 0.1 px per axis: the frames' error is a fraction of that; the clean
    # least squares (which knows the outliers) sets the scale.
    assert error.max() < 0.25
    assert np.sqrt((error**2).mean()) <= 1.3 * np.sqrt(
        (np.linalg.norm(reference - truth, axis=1) ** 2).mean()
    ) + 0.005
    # Most injected hops are found and corrected (the rest is rejected), none invented
    # among good pairs (a junk pair landing by chance near a lattice translation is
    # indistinguishable from a hop, and corrected to a value within the cut-off).
    found = solution.hops & layout.upper()
    hop_matrix, junk_matrix = layout.full(False), layout.full(False)
    layout.put(hop_matrix, i[hop], j[hop], True)
    layout.put(junk_matrix, i[junk], j[junk], True)
    assert (found & ~hop_matrix & ~junk_matrix).sum() == 0
    assert found.sum() >= 0.9 * hop.sum()
    assert solution.scale == pytest.approx(0.1, rel=0.35)


def test_without_lattice_hops_are_rejected_not_followed():
    n = 40
    truth, matrix, candidates, layout, _ = _graph(n, None, hop_fraction=0.2, junk_fraction=0.1)
    solution = robust.robust_solve(matrix, candidates, np.ones(n, bool), layout)
    assert np.abs(solution.shifts - truth).max() < 0.15
    assert not solution.hops.any()
    assert 0.6 < solution.inlier_fraction < 0.8


def test_start_of_a_band_survives_many_hops():
    """The band's start places each frame from one-leg estimates: no chain of errors."""
    n = 300
    truth, matrix, candidates, layout, _ = _graph(n, 8, hop_fraction=0.25, junk_fraction=0.05)
    solution = robust.robust_solve(matrix, candidates, np.ones(n, bool), layout)
    assert np.isfinite(solution.shifts).all()
    assert np.abs(solution.shifts - truth).max() < 0.3


def test_cut_off_is_capped_and_says_so():
    n = 30
    truth, matrix, candidates, layout, _ = _graph(n, None, hop_fraction=0, junk_fraction=0, noise=3)
    solution = robust.robust_solve(matrix, candidates, np.ones(n, bool), layout, cap=2.0)
    assert solution.capped
    assert solution.cutoff == 2.0
    free = robust.robust_solve(matrix, candidates, np.ones(n, bool), layout)
    assert not free.capped
    assert free.cutoff == pytest.approx(robust._CUTOFF_SIGMAS * 3, rel=0.3)


def test_weighted_solve_matches_design_matrix_least_squares():
    rng = np.random.default_rng(5)
    n = 12
    layout = pair_layout(n, 3)
    i, j = pair_indices(n, 3)
    r = rng.normal(0, 2, (len(i), 2))
    w = rng.uniform(0.2, 3, len(i))
    matrix = sm.assemble_shift_matrix(n, i, j, r, layout)
    weights = layout.full(0.0)
    layout.put(weights, i, j, w)
    layout.put(weights, j, i, w)
    for lay, mat, wts in [
        (layout, matrix, weights),
        (pair_layout(n), sm.assemble_shift_matrix(n, i, j, r), None),
    ]:
        if wts is None:
            wts = np.zeros((n, n))
            wts[i, j] = wts[j, i] = w
        shifts, _ = solve_shifts(mat, wts > 0, np.ones(n, bool), lay, weights=wts)
        design = np.zeros((len(i) + 1, n))
        design[np.arange(len(i)), j] = np.sqrt(w)
        design[np.arange(len(i)), i] = -np.sqrt(w)
        design[-1] = 1.0
        rhs = np.vstack([np.sqrt(w)[:, None] * r, [0.0, 0.0]])
        expected = np.linalg.lstsq(design, rhs, rcond=None)[0]
        np.testing.assert_allclose(shifts, expected, atol=1e-9)


def test_nearest_translation():
    vectors = np.array([[0.2, 11.9], [-10.2, -6.3], [0.1, -0.2], [20.8, 0.3], [10.4, -5.8]])
    translation, distance = nearest_translation(vectors, BASIS)
    expected = np.array([BASIS[0], -BASIS[1], [0, 0], 2 * BASIS[1] - BASIS[0], BASIS[1] - BASIS[0]])
    np.testing.assert_allclose(translation, expected, atol=1e-9)
    np.testing.assert_allclose(distance, np.linalg.norm(vectors - expected, axis=1))
    # One-dimensional fringes.
    line, _ = nearest_translation(np.array([[3.0, 25.0]]), BASIS[:1])
    np.testing.assert_allclose(line, [[0.0, 24.0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_far_pairs_hopping_together_do_not_move_the_last_frames(seed):
    """A drift long for the frame: pairs far apart in time all hop one cell towards zero.

    The last frames then have more hopped pairs than good ones (a row median follows the
    hops: measured, frames 18-19 of a 256^2 hexagonal series a cell off and 15-17
    dropped); the near pairs decide their cell.
    """
    rng = np.random.default_rng(seed)
    n = 20
    truth = np.cumsum(rng.normal([0.85, -0.6], 0.2, (n, 2)), axis=0)
    truth -= truth.mean(axis=0)
    i, j = pair_indices(n)
    r = truth[j] - truth[i] + rng.normal(0, 0.05, (len(i), 2))
    # Frames 10 or more apart correlate at the alias one cell nearer zero: a2 - a1 lies
    # along the drift, so the hopped shifts are shorter than the true ones.
    far = (j - i) >= 10
    r[far] -= BASIS[1] - BASIS[0]
    true_length = np.linalg.norm((truth[j] - truth[i])[far], axis=1)
    assert (np.linalg.norm(r[far], axis=1) < true_length).all()
    layout = pair_layout(n)
    matrix = sm.assemble_shift_matrix(n, i, j, r, layout)
    candidates = layout.full(False)
    layout.put(candidates, i, j, True)
    layout.put(candidates, j, i, True)
    used = np.ones(n, dtype=bool)
    # More than half of the last frame's pairs hopped: its row median lies a cell off.
    assert far[j == n - 1].sum() > (j == n - 1).sum() / 2
    sol = robust.robust_solve(matrix, candidates, used, layout, translations=BASIS, cap=3.6)
    np.testing.assert_allclose(sol.shifts, truth, atol=0.1)
    assert sol.inlier_fraction == 1.0
    assert sol.hops[i[far], j[far]].all() and not sol.hops[i[~far], j[~far]].any()
