"""Per-frame shifts from a shift matrix: the reference's row means, and least squares.

The matrix conventions (``R[i, j] = s_j - s_i``, ``(y, x)`` order, the ``valid`` and
``used`` masks, dense or banded storage) are those of :mod:`daskreg.kernels.shiftmatrix`,
which assembles, screens and refills the matrix these functions read. The shifts are
relative to the mean position of the used frames.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cholesky_banded, solveh_banded

from daskreg.kernels.layout import BandLayout, PairLayout, layout_for

__all__ = ["shifts_from_rows", "solve_shifts"]


def shifts_from_rows(
    corrected: np.ndarray, used: np.ndarray, layout: PairLayout | None = None
) -> np.ndarray:
    """Per-frame shifts ``s_i = -mean_j R[i, j]`` over used frames (the reference's row means).

    Parameters
    ----------
    corrected : ndarray, shape (N, N, 2) or the layout's
        From :func:`correct_shift_matrix`.
    used : ndarray of bool, shape (N,)
    layout : PairLayout, optional
        Storage of ``corrected`` (default dense).

    Returns
    -------
    ndarray of float64, shape (N, 2)
        ``(dy, dx)`` displacement of each used frame relative to the mean position of
        the used frames; NaN for unused frames.

    Notes
    -----
    In a band a row holds only the frames near ``i``, so its mean would be relative
    to a different set of frames for every row. The shifts are then the least-squares
    solve (:func:`solve_shifts`) over the filled band, which is the row mean's
    generalisation: on a complete matrix, with the same gauge, it gives exactly the
    row means.
    """
    layout = layout_for(corrected, layout)
    if layout.band is not None:
        filled = layout.outer(used, used) & np.isfinite(corrected).all(axis=-1)
        return solve_shifts(corrected, filled, used, layout)[0]
    index = np.flatnonzero(used)
    shifts = np.full((corrected.shape[0], 2), np.nan)
    shifts[index] = -corrected[np.ix_(index, index)].mean(axis=1)
    return shifts


def solve_shifts(
    matrix: np.ndarray,
    valid: np.ndarray,
    used: np.ndarray,
    layout: PairLayout | None = None,
    *,
    weights: np.ndarray | None = None,
    uncertainty: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares shifts from all valid pairs, with a per-frame uncertainty.

    Minimises ``sum over valid i<j of w_ij |s_j - s_i - r_ij|^2`` with the mean of the
    used frames' shifts fixed at zero (the gauge of :func:`shifts_from_rows`; on a
    complete, consistent matrix both give the same answer).

    Parameters
    ----------
    matrix : ndarray, shape (N, N, 2)
    valid : ndarray of bool, shape (N, N)
    used : ndarray of bool, shape (N,)
        Frames to solve for; they must be connected by valid pairs.
    layout : PairLayout, optional
        Storage of ``matrix`` and ``valid`` (default dense). A band is solved as a
        banded system (LAPACK band Cholesky), never as an N x N matrix.
    weights : ndarray of float, shape (N, N) or the layout's, optional
        Non-negative weight of each pair, symmetric (default 1 for every valid pair);
        only valid pairs count.
    uncertainty : bool, default True
        Compute the uncertainties (False: NaN, and the solve skips the inverse's
        diagonal, for iterative callers).

    Returns
    -------
    shifts : ndarray, shape (N, 2)
        NaN for unused frames.
    uncertainty : ndarray, shape (N, 2)
        One-sigma standard error of each shift from the pair residuals (NaN when the
        pairs leave no redundancy).

    Notes
    -----
    The variances need the diagonal of the inverse of the pairs' graph Laplacian. Dense,
    it is inverted whole; in a band only the band of the inverse is computed, by
    Takahashi's recurrence on the band Cholesky factor [1]_ (a selected inverse), in
    ``O(N w^2)``.

    References
    ----------
    .. [1] K. Takahashi, J. Fagan and M.-S. Chin, "Formation of a sparse bus impedance
       matrix and its application to short circuit study", Proc. 8th PICA Conference,
       Minneapolis, 63-69 (1973).
    """
    layout = layout_for(matrix, layout)
    index = np.flatnonzero(used)
    m = len(index)
    weight = np.where(valid, 1.0 if weights is None else weights, 0.0)
    solve = _solve_band if isinstance(layout, BandLayout) else _solve_dense
    solution, resid, pair_weight, cov_diag = solve(matrix, weight, used, layout, uncertainty)
    dof = resid.shape[0] - (m - 1)
    shifts = np.full((layout.n_frames, 2), np.nan)
    sigma = np.full((layout.n_frames, 2), np.nan)
    shifts[index] = solution
    if dof > 0 and cov_diag is not None:
        variance = (pair_weight[:, None] * resid**2).sum(axis=0) / dof
        sigma[index] = np.sqrt(np.clip(cov_diag, 0, None)[:, None] * variance[None, :])
    return shifts, sigma


def _solve_dense(
    matrix: np.ndarray, weights: np.ndarray, used: np.ndarray, layout: PairLayout, inverse: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Solution, residuals and weights of the weighted pairs, ``diag(pinv(L))``."""
    index = np.flatnonzero(used)
    m = len(index)
    weight = np.where(np.eye(m, dtype=bool), 0.0, weights[np.ix_(index, index)])
    sub = np.nan_to_num(matrix[np.ix_(index, index)])
    laplacian = np.diag(weight.sum(axis=1)) - weight
    rhs = -(weight[..., None] * sub).sum(axis=1)
    gauge = np.full((m, m), 1.0 / m)
    cov_diag = None
    if inverse:
        full = np.linalg.inv(laplacian + gauge)
        solution = full @ rhs
        cov_diag = np.diag(full - gauge)
    else:
        solution = np.linalg.solve(laplacian + gauge, rhs)
    upper = np.triu(weight, 1) > 0
    resid = (solution[None, :, :] - solution[:, None, :] - sub)[upper]
    return solution, resid, weight[upper], cov_diag


def _solve_band(
    matrix: np.ndarray, weights: np.ndarray, used: np.ndarray, layout: BandLayout, inverse: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`_solve_dense` for a band, in O(N w^2).

    The graph Laplacian ``L`` of the valid pairs is singular (shifts are defined up to
    a common offset). Grounding the first used frame leaves ``L0`` (symmetric positive
    definite, banded with the band's width, since dropping frames only brings the
    others closer); its solution re-centred to zero mean is the dense gauge's, and
    ``pinv(L) = P Z P`` with ``Z = L0^-1`` padded by a zero row and column and
    ``P = I - 1 1^T / m`` gives the variances from the band of ``Z`` alone.
    """
    index = np.flatnonzero(used)
    m = len(index)
    # Two frames among the grounded ones are at most m - 2 apart.
    w = min(layout.width, m - 2)
    position = np.full(layout.n_frames, -1)
    position[index] = np.arange(m)
    i, j = layout.nonzero((weights > 0) & layout.upper() & layout.outer(used, used))
    a, b = position[i], position[j]
    shifts = layout.take(matrix, i, j, 0.0)
    weight = layout.take(weights, i, j, 0.0)
    rhs = np.zeros((m, 2))
    np.add.at(rhs, a, -weight[:, None] * shifts)
    np.add.at(rhs, b, weight[:, None] * shifts)
    # L0 = L without the grounded frame 0, in LAPACK upper band storage: ab[w + r - c, c].
    ab = np.zeros((w + 1, m - 1))
    ab[w] = np.bincount(np.concatenate([a, b]), np.concatenate([weight, weight]), minlength=m)[1:]
    inner = a > 0
    np.add.at(ab, (w + a[inner] - b[inner], b[inner] - 1), -weight[inner])
    grounded = np.zeros((m, 2))
    ones = np.ones((m - 1, 1))
    solved = solveh_banded(ab, np.hstack([rhs[1:], ones]))
    grounded[1:] = solved[:, :2]
    solution = grounded - grounded.mean(axis=0)
    resid = solution[b] - solution[a] - shifts
    if not inverse:
        return solution, resid, weight, None
    z_ones = np.concatenate([[0.0], solved[:, 2]])
    z_diag = np.concatenate([[0.0], _band_inverse_diagonal(ab)])
    cov_diag = z_diag - 2.0 * z_ones / m + z_ones.sum() / m**2
    return solution, resid, weight, cov_diag


def _band_inverse_diagonal(ab: np.ndarray) -> np.ndarray:
    """Diagonal of ``A^-1`` for a banded SPD ``A`` (upper band storage), in O(n w^2).

    Takahashi's recurrence on the Cholesky factor ``A = U^T U``: for ``j >= i``,
    ``Z_ij = (delta_ij / u_ii - sum_k u_ik Z_kj) / u_ii`` over ``i < k <= i + w``, run
    from the last row up, needs only the band of ``Z``.
    """
    w, n = ab.shape[0] - 1, ab.shape[1]
    u = cholesky_banded(ab, lower=False)
    # Row i of U in the band, u_row[i, d] = U[i, i + d]; zero past the matrix.
    u_row = np.zeros((n + w, w + 1))
    for d in range(w + 1):
        u_row[: n - d, d] = u[w - d, d:]
    z_band = np.zeros((n + w, w + 1))  # z_band[i, d] = Z[i, i + d]
    ks = np.arange(1, w + 1)
    low, dist = np.minimum.outer(ks, ks), np.abs(ks[:, None] - ks[None, :])
    for i in range(n - 1, -1, -1):
        block = z_band[i + low, dist]
        coupling = u_row[i, 1:]
        diag = u_row[i, 0]
        z_row = -(coupling @ block) / diag
        z_band[i, 1:] = z_row
        z_band[i, 0] = (1.0 / diag - coupling @ z_row) / diag
    return z_band[:n, 0]
