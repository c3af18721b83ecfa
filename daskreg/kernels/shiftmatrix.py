"""Shift matrices: assembly, outliers, correction and the final per-frame shifts.

Sign convention, stated once for the package: frame ``i`` holds the specimen displaced
by ``+s_i`` (pixels, ``(y, x)`` order), i.e. ``frame_i[y, x] = specimen(y - s_iy, x - s_ix)``;
shifting frame ``i`` by ``-s_i`` aligns it. The shift matrix holds
``R[i, j] = s_j - s_i``, the displacement of frame ``j`` relative to frame ``i``
(the reference's ``X_ij``/``Y_ij``, with its x = rows renamed y). It is antisymmetric,
``R[j, i] = -R[i, j]``, and zero on the diagonal.

Matrices are stored as one array ``R`` of shape ``(N, N, 2)`` (last axis ``y, x``) with
a boolean ``valid`` of shape ``(N, N)``: True where the element is used. The diagonal of
a used frame is valid (its zero takes part in the row means, which is exact for a
consistent matrix: ``mean_j (s_j - s_i) = mean(s) - s_i``).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from daskreg.errors import RegistrationWarning

__all__ = [
    "assemble_shift_matrix",
    "frame_mask",
    "transitivity_scores",
    "transitivity_outliers",
    "nn_outliers",
    "connected_frames",
    "correct_shift_matrix",
    "shifts_from_rows",
    "solve_shifts",
]

# Rows of the matrix processed together by the path searches: bounds the temporaries
# at about block * N * paths elements whatever N is.
_ROW_BLOCK = 64


def assemble_shift_matrix(
    n_frames: int, i: np.ndarray, j: np.ndarray, shifts: np.ndarray
) -> np.ndarray:
    """Antisymmetric shift matrix from pair measurements.

    Parameters
    ----------
    n_frames : int
    i, j : ndarray of int, shape (P,)
        Frame indices of each pair.
    shifts : ndarray, shape (P, 2)
        Measured ``r_ij = s_j - s_i`` as ``(dy, dx)``.

    Returns
    -------
    ndarray of float64, shape (n_frames, n_frames, 2)
        ``R[i, j] = r_ij``, ``R[j, i] = -r_ij``, zero elsewhere.
    """
    matrix = np.zeros((n_frames, n_frames, 2))
    matrix[i, j] = shifts
    matrix[j, i] = -np.asarray(shifts)
    return matrix


def frame_mask(
    n_frames: int,
    bad_frames: np.ndarray | None = None,
    frames: tuple[int, int] | None = None,
) -> np.ndarray:
    """Boolean per frame: True = used (inside the frame range and not a bad frame).

    Parameters
    ----------
    n_frames : int
    bad_frames : array_like of int or bool, optional
        Indices (or a boolean mask) of frames to leave out.
    frames : (start, stop), optional
        Half-open range of frames to use (the reference's ``nz_min, nz_max``).
    """
    used = np.zeros(n_frames, dtype=bool)
    start, stop = (0, n_frames) if frames is None else frames
    used[start:stop] = True
    if bad_frames is not None:
        bad = np.asarray(bad_frames)
        if bad.dtype == bool:
            used &= ~bad
        else:
            used[bad.astype(int)] = False
    return used


def _path_candidates(n_frames: int, rows: np.ndarray, n_offsets: int) -> np.ndarray:
    """Intermediate frames k for pairs (rows, all j), nearest the pair's midpoint first.

    Preferring k between i and j keeps both legs short, which is what matters for
    drifting series and for banded pair sets.
    """
    steps = np.arange(1, n_offsets + 1) // 2
    offsets = np.where(np.arange(1, n_offsets + 1) % 2 == 0, steps, -steps)
    mid = (rows[:, None] + np.arange(n_frames)[None, :]) // 2
    return mid[..., None] + offsets


def _path_residuals(matrix: np.ndarray, valid: np.ndarray, used: np.ndarray, maxpaths: int):
    """Yield (rows, residual, selected) per row block for 2-step paths i -> k -> j."""
    n_frames = matrix.shape[0]
    n_offsets = min(n_frames + 1, 2 * (maxpaths + 2 + int((~used).sum())))
    cols = np.arange(n_frames)
    for start in range(0, n_frames, _ROW_BLOCK):
        rows = np.arange(start, min(start + _ROW_BLOCK, n_frames))
        k = _path_candidates(n_frames, rows, n_offsets)
        inside = (k >= 0) & (k < n_frames)
        k = np.clip(k, 0, n_frames - 1)
        ii, jj = rows[:, None, None], cols[None, :, None]
        ok = (
            inside
            & (k != ii)
            & (k != jj)
            & used[k]
            & valid[ii, k]
            & valid[k, jj]
        )
        selected = ok & (np.cumsum(ok, axis=-1) <= maxpaths)
        path = matrix[ii, k] + matrix[k, jj]
        residual = np.linalg.norm(path - matrix[rows][:, :, None, :], axis=-1)
        yield rows, residual, selected


def transitivity_scores(
    matrix: np.ndarray, valid: np.ndarray, used: np.ndarray, maxpaths: int = 5
) -> np.ndarray:
    """Transitivity score of every pair.

    The score of ``(i, j)`` is the mean, over up to ``maxpaths`` two-step paths
    ``i -> k -> j`` through distinct used frames ``k`` (nearest the pair's midpoint
    first, both legs valid), of the Euclidean residual ``|r_ik + r_kj - r_ij|`` in
    pixels. A consistent matrix scores 0 everywhere.

    Parameters
    ----------
    matrix : ndarray, shape (N, N, 2)
    valid : ndarray of bool, shape (N, N)
        Elements that may serve as path legs.
    used : ndarray of bool, shape (N,)
        Frames that may serve as intermediates.
    maxpaths : int, default 5

    Returns
    -------
    ndarray of float64, shape (N, N)
        NaN where a pair has no path (then it cannot be judged) and on the diagonal.

    Notes
    -----
    The reference mixes paths of every length, can repeat frames or include the
    direct edge; restricting to distinct two-step paths makes the score a plain
    statistic (for pair errors of standard deviation ``e`` per axis its mean is about
    ``1.25 * sqrt(3) * e``) and vectorises over all pairs.
    """
    n_frames = matrix.shape[0]
    scores = np.full((n_frames, n_frames), np.nan)
    for rows, residual, selected in _path_residuals(matrix, valid, used, maxpaths):
        count = selected.sum(axis=-1)
        total = np.where(selected, residual, 0.0).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores[rows] = np.where(count > 0, total / count, np.nan)
    np.fill_diagonal(scores, np.nan)
    return scores


def transitivity_outliers(
    matrix: np.ndarray,
    valid: np.ndarray,
    used: np.ndarray,
    threshold: float,
    maxpaths: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose transitivity score reaches ``threshold`` pixels.

    Returns
    -------
    outliers : ndarray of bool, shape (N, N)
        Symmetric; never on the diagonal or on pairs without a path.
    scores : ndarray of float64, shape (N, N)
        From :func:`transitivity_scores`.
    """
    scores = transitivity_scores(matrix, valid, used, maxpaths)
    with np.errstate(invalid="ignore"):
        outliers = scores >= threshold
    return outliers, scores


def nn_outliers(matrix: np.ndarray, used: np.ndarray, max_shift: float) -> np.ndarray:
    """Outliers by nearest-neighbour smoothness of the shift matrix.

    Drift is smooth in time, so neighbouring matrix elements differ little. An element
    is an outlier when more of its 3x3 neighbours than allowed differ from it by more
    than ``max_shift`` pixels along y, or along x. Neighbours are taken within the used
    frames only (bad frames and frames outside the range are skipped, edges handled);
    the allowance is 3 for an inner element and one less for each matrix edge it sits
    on (the reference's rule, fixed at the last row).

    Parameters
    ----------
    matrix : ndarray, shape (N, N, 2)
    used : ndarray of bool, shape (N,)
    max_shift : float

    Returns
    -------
    ndarray of bool, shape (N, N)
    """
    index = np.flatnonzero(used)
    sub = matrix[np.ix_(index, index)]
    m = len(index)
    padded = np.full((m + 2, m + 2, 2), np.nan)
    padded[1:-1, 1:-1] = sub
    jumps = np.zeros((m, m, 2), dtype=int)
    for da in (-1, 0, 1):
        for db in (-1, 0, 1):
            neighbour = padded[1 + da : m + 1 + da, 1 + db : m + 1 + db]
            with np.errstate(invalid="ignore"):
                jumps += np.abs(neighbour - sub) > max_shift
    edge = np.zeros(m, dtype=int)
    edge[[0, -1]] = 1
    allowed = 3 - edge[:, None] - edge[None, :]
    sub_out = (jumps > allowed[..., None]).any(axis=-1)
    outliers = np.zeros(matrix.shape[:2], dtype=bool)
    outliers[np.ix_(index, index)] = sub_out
    return outliers


def connected_frames(valid: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Used frames in the largest group linked by valid pairs (ties: the earliest group)."""
    index = np.flatnonzero(used)
    links = valid[np.ix_(index, index)] & ~np.eye(len(index), dtype=bool)
    _, labels = connected_components(csr_matrix(links), directed=False)
    sizes = np.bincount(labels)
    keep = np.zeros_like(used)
    keep[index[labels == sizes.argmax()]] = True
    return keep


def correct_shift_matrix(
    matrix: np.ndarray, valid: np.ndarray, used: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Refill invalid elements between used frames from transitivity.

    Each missing ``r_ij`` becomes the mean of ``r_ik + r_kj`` over all frames ``k``
    with both legs valid; filled elements serve as legs in the next round. Frames that
    no chain of valid pairs links to the largest group cannot be filled and are
    dropped with a :class:`~daskreg.errors.RegistrationWarning` naming them, so the
    loop always ends (each round squares the reach of the paths: at most about
    ``log2 N`` rounds).

    Parameters
    ----------
    matrix : ndarray, shape (N, N, 2)
    valid : ndarray of bool, shape (N, N)
        Elements to trust (outliers and bad frames already False).
    used : ndarray of bool, shape (N,)

    Returns
    -------
    corrected : ndarray, shape (N, N, 2)
        Valid elements unchanged; every pair of returned used frames filled.
    used : ndarray of bool, shape (N,)
        The frames kept (``used`` minus the disconnected ones).
    """
    keep = connected_frames(valid, used)
    dropped = np.flatnonzero(used & ~keep)
    if dropped.size:
        warnings.warn(
            f"frames {dropped.tolist()} share no valid shift with the other frames "
            "(all their pairs are outliers or bad); they are treated as bad frames",
            RegistrationWarning,
            stacklevel=2,
        )
    block = np.outer(keep, keep)
    known = valid & block
    np.fill_diagonal(known, keep)
    corrected = np.where(known[..., None], matrix, 0.0)
    legs = known & ~np.eye(len(keep), dtype=bool)
    while True:
        missing = block & ~known
        if not missing.any():
            break
        weight = legs.astype(float)
        count = weight @ weight
        fill = missing & (count > 0)
        if not fill.any():
            break
        for axis in range(2):
            comp = corrected[..., axis] * weight
            total = comp @ weight + weight @ comp
            with np.errstate(invalid="ignore", divide="ignore"):
                corrected[..., axis] = np.where(fill, total / count, corrected[..., axis])
        known |= fill
        legs |= fill
    return corrected, keep


def shifts_from_rows(corrected: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Per-frame shifts ``s_i = -mean_j R[i, j]`` over used frames (the reference's row means).

    Returns
    -------
    ndarray of float64, shape (N, 2)
        ``(dy, dx)`` displacement of each used frame relative to the mean position of
        the used frames; NaN for unused frames.
    """
    index = np.flatnonzero(used)
    shifts = np.full((corrected.shape[0], 2), np.nan)
    shifts[index] = -corrected[np.ix_(index, index)].mean(axis=1)
    return shifts


def solve_shifts(
    matrix: np.ndarray, valid: np.ndarray, used: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares shifts from all valid pairs, with a per-frame uncertainty.

    Minimises ``sum over valid i<j of |s_j - s_i - r_ij|^2`` with the mean of the used
    frames' shifts fixed at zero (the gauge of :func:`shifts_from_rows`; on a complete,
    consistent matrix both give the same answer).

    Parameters
    ----------
    matrix : ndarray, shape (N, N, 2)
    valid : ndarray of bool, shape (N, N)
    used : ndarray of bool, shape (N,)
        Frames to solve for; they must be connected by valid pairs.

    Returns
    -------
    shifts : ndarray, shape (N, 2)
        NaN for unused frames.
    uncertainty : ndarray, shape (N, 2)
        One-sigma standard error of each shift from the pair residuals (NaN when the
        pairs leave no redundancy).
    """
    index = np.flatnonzero(used)
    m = len(index)
    weight = (valid[np.ix_(index, index)] & ~np.eye(m, dtype=bool)).astype(float)
    sub = matrix[np.ix_(index, index)]
    laplacian = np.diag(weight.sum(axis=1)) - weight
    rhs = -(weight[..., None] * sub).sum(axis=1)
    gauge = np.full((m, m), 1.0 / m)
    inverse = np.linalg.inv(laplacian + gauge)
    solution = inverse @ rhs
    upper = np.triu(weight, 1) > 0
    resid = (solution[None, :, :] - solution[:, None, :] - sub)[upper]
    dof = resid.shape[0] - (m - 1)
    shifts = np.full((matrix.shape[0], 2), np.nan)
    uncertainty = np.full((matrix.shape[0], 2), np.nan)
    shifts[index] = solution
    if dof > 0:
        variance = (resid**2).sum(axis=0) / dof
        cov_diag = np.clip(np.diag(inverse - gauge), 0, None)
        uncertainty[index] = np.sqrt(cov_diag[:, None] * variance[None, :])
    return shifts, uncertainty
