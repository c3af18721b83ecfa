"""Shift matrices: assembly, outliers and correction.

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

For a band of pairs ``|i - j| <= w`` every function also takes the banded storage
``(N, 2w + 1[, 2])`` of :class:`~daskreg.kernels.layout.BandLayout` when passed
``layout=``; without it matrices are dense. The per-frame shifts are read from the
corrected matrix by :mod:`daskreg.kernels.frame_shifts`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from daskreg.errors import RegistrationWarning
from daskreg.kernels.layout import DenseLayout, PairLayout, layout_for

__all__ = [
    "assemble_shift_matrix",
    "frame_mask",
    "transitivity_scores",
    "transitivity_outliers",
    "nn_outliers",
    "connected_frames",
    "correct_shift_matrix",
]

# Rows of the matrix processed together by the path searches: bounds the temporaries
# at about block * N * paths elements whatever N is.
_ROW_BLOCK = 64
# Narrow (banded) storages take more rows per block, up to about this many elements.
_BLOCK_ELEMENTS = 2**18


def _row_blocks(rows: np.ndarray, layout: PairLayout, depth: int = 1):
    size = max(_ROW_BLOCK, _BLOCK_ELEMENTS // (layout.n_cols * depth))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def assemble_shift_matrix(
    n_frames: int,
    i: np.ndarray,
    j: np.ndarray,
    shifts: np.ndarray,
    layout: PairLayout | None = None,
) -> np.ndarray:
    """Antisymmetric shift matrix from pair measurements.

    Parameters
    ----------
    n_frames : int
    i, j : ndarray of int, shape (P,)
        Frame indices of each pair.
    shifts : ndarray, shape (P, 2)
        Measured ``r_ij = s_j - s_i`` as ``(dy, dx)``.
    layout : PairLayout, optional
        Storage (default dense); a band must hold every pair.

    Returns
    -------
    ndarray of float64, shape (n_frames, n_frames, 2) or the layout's
        ``R[i, j] = r_ij``, ``R[j, i] = -r_ij``, zero elsewhere.
    """
    layout = DenseLayout(n_frames) if layout is None else layout
    matrix = layout.full(0.0, trailing=(2,))
    layout.put(matrix, i, j, shifts)
    layout.put(matrix, j, i, -np.asarray(shifts))
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


def _path_candidates(rows: np.ndarray, cols: np.ndarray, n_offsets: int) -> np.ndarray:
    """Intermediate frames k for pairs (rows, cols), nearest the pair's midpoint first.

    Preferring k between i and j keeps both legs short, which is what matters for
    drifting series and for banded pair sets.
    """
    steps = np.arange(1, n_offsets + 1) // 2
    offsets = np.where(np.arange(1, n_offsets + 1) % 2 == 0, steps, -steps)
    mid = (rows[:, None] + cols) // 2
    return mid[..., None] + offsets


def _path_residuals(
    matrix: np.ndarray, valid: np.ndarray, used: np.ndarray, maxpaths: int, layout: PairLayout
):
    """Yield (rows, residual, selected) per row block for 2-step paths i -> k -> j."""
    n_frames = layout.n_frames
    # Offsets up to +-(N - 1) reach every frame from any midpoint: a corner pair of a
    # small stack, cut off on one side, takes all its paths from the other. Either side
    # alone holds maxpaths candidates within maxpaths + 2 + unused frames.
    n_offsets = min(2 * n_frames - 1, 2 * (maxpaths + 2 + int((~used).sum())))
    if layout.band is not None:
        # Beyond the band's reach from the midpoint no leg is stored: no candidate there.
        n_offsets = min(n_offsets, 2 * layout.band + 3)
    for rows in _row_blocks(np.arange(n_frames), layout, n_offsets):
        cols, held = layout.columns(rows)
        k = _path_candidates(rows, cols, n_offsets)
        inside = (k >= 0) & (k < n_frames) & held[..., None]
        k = np.clip(k, 0, n_frames - 1)
        ii, jj = rows[:, None, None], cols[..., None]
        ok = (
            inside
            & (k != ii)
            & (k != jj)
            & used[k]
            & layout.take(valid, ii, k, False)
            & layout.take(valid, k, jj, False)
        )
        selected = ok & (np.cumsum(ok, axis=-1) <= maxpaths)
        path = layout.take(matrix, ii, k, 0.0) + layout.take(matrix, k, jj, 0.0)
        residual = np.linalg.norm(path - matrix[rows][:, :, None, :], axis=-1)
        yield rows, residual, selected


def transitivity_scores(
    matrix: np.ndarray,
    valid: np.ndarray,
    used: np.ndarray,
    maxpaths: int = 5,
    layout: PairLayout | None = None,
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
    layout : PairLayout, optional
        Storage of ``matrix`` and ``valid`` (default dense).

    Returns
    -------
    ndarray of float64, shape (N, N) or the layout's
        NaN where a pair has no path (then it cannot be judged) and on the diagonal.

    Notes
    -----
    The reference mixes paths of every length, can repeat frames or include the
    direct edge; restricting to distinct two-step paths makes the score a plain
    statistic (for pair errors of standard deviation ``e`` per axis its mean is about
    ``1.25 * sqrt(3) * e``) and vectorises over all pairs.
    """
    layout = layout_for(matrix, layout)
    scores = layout.full(np.nan)
    for rows, residual, selected in _path_residuals(matrix, valid, used, maxpaths, layout):
        count = selected.sum(axis=-1)
        total = np.where(selected, residual, 0.0).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores[rows] = np.where(count > 0, total / count, np.nan)
    layout.set_diagonal(scores, np.nan)
    return scores


def transitivity_outliers(
    matrix: np.ndarray,
    valid: np.ndarray,
    used: np.ndarray,
    threshold: float | Callable[[np.ndarray], float],
    maxpaths: int = 5,
    layout: PairLayout | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Valid pairs whose transitivity score reaches ``threshold`` pixels.

    Parameters
    ----------
    matrix, valid, used, maxpaths, layout
        As for :func:`transitivity_scores`.
    threshold : float or callable
        Pixels; or a rule that gives them from the scores (e.g. a multiple of the
        median score of the valid pairs), called once with the scores.

    Returns
    -------
    outliers : ndarray of bool, shape (N, N) or the layout's
        Symmetric; only on valid pairs, never on the diagonal or on pairs without a
        path.
    scores : ndarray of float64, shape (N, N) or the layout's
        From :func:`transitivity_scores`.
    threshold : float
        The threshold applied.
    """
    scores = transitivity_scores(matrix, valid, used, maxpaths, layout)
    if callable(threshold):
        threshold = threshold(scores)
    with np.errstate(invalid="ignore"):
        outliers = (scores >= threshold) & valid
    return outliers, scores, threshold


def nn_outliers(
    matrix: np.ndarray, used: np.ndarray, max_shift: float, layout: PairLayout | None = None
) -> np.ndarray:
    """Outliers by nearest-neighbour smoothness of the shift matrix.

    Drift is smooth in time, so neighbouring matrix elements differ little. An element
    is an outlier when more of its 3x3 neighbours than allowed differ from it by more
    than ``max_shift`` pixels along y, or along x. Neighbours are taken within the used
    frames only (bad frames and frames outside the range are skipped, edges handled);
    the allowance is 3 for an inner element and one less for each matrix edge it sits
    on (the reference's rule, fixed at the last row). In a band, neighbours outside it
    are missing like those beyond the edges, but the allowance stays.

    Parameters
    ----------
    matrix : ndarray, shape (N, N, 2)
    used : ndarray of bool, shape (N,)
    max_shift : float
    layout : PairLayout, optional
        Storage of ``matrix`` (default dense).

    Returns
    -------
    ndarray of bool, shape (N, N) or the layout's
    """
    layout = layout_for(matrix, layout)
    index = np.flatnonzero(used)
    m = len(index)
    # Neighbours are adjacent among the used frames: work in positions among them.
    position = np.full(layout.n_frames, -1)
    position[index] = np.arange(m)
    outliers = layout.full(False)
    for rows in _row_blocks(index, layout, 9):
        cols, held = layout.columns(rows)
        a, b = position[rows][:, None], position[cols]
        centre = matrix[rows]
        jumps = np.zeros(centre.shape, dtype=int)
        for da in (-1, 0, 1):
            for db in (-1, 0, 1):
                na, nb = a + da, b + db
                exists = (na >= 0) & (na < m) & (nb >= 0) & (nb < m)
                neighbour = layout.take(
                    matrix, index[np.clip(na, 0, m - 1)], index[np.clip(nb, 0, m - 1)], np.nan
                )
                neighbour = np.where(exists[..., None], neighbour, np.nan)
                with np.errstate(invalid="ignore"):
                    jumps += np.abs(neighbour - centre) > max_shift
        edge_a = ((a == 0) | (a == m - 1)).astype(int)
        edge_b = ((b == 0) | (b == m - 1)).astype(int)
        allowed = 3 - edge_a - edge_b
        # r_ii = 0 by definition; it cannot be wrong.
        element = held & (b >= 0) & (a != b)
        outliers[rows] = (jumps > allowed[..., None]).any(axis=-1) & element
    return outliers


def connected_frames(
    valid: np.ndarray, used: np.ndarray, layout: PairLayout | None = None
) -> np.ndarray:
    """Used frames in the largest group linked by valid pairs (ties: the earliest group)."""
    layout = layout_for(valid, layout)
    index = np.flatnonzero(used)
    position = np.full(layout.n_frames, -1)
    position[index] = np.arange(len(index))
    i, j = layout.nonzero(valid & layout.outer(used, used) & ~layout.diagonal())
    links = csr_matrix(
        (np.ones(len(i), dtype=bool), (position[i], position[j])), shape=(len(index),) * 2
    )
    _, labels = connected_components(links, directed=False)
    sizes = np.bincount(labels)
    keep = np.zeros_like(used)
    keep[index[labels == sizes.argmax()]] = True
    return keep


def correct_shift_matrix(
    matrix: np.ndarray, valid: np.ndarray, used: np.ndarray, layout: PairLayout | None = None
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
    layout : PairLayout, optional
        Storage of ``matrix`` and ``valid`` (default dense). In a band only paths
        whose legs lie in the band count; an element no such path reaches stays NaN.

    Returns
    -------
    corrected : ndarray, shape (N, N, 2) or the layout's
        Valid elements unchanged; every pair of returned used frames filled.
    used : ndarray of bool, shape (N,)
        The frames kept (``used`` minus the disconnected ones).
    """
    layout = layout_for(matrix, layout)
    keep = connected_frames(valid, used, layout)
    dropped = np.flatnonzero(used & ~keep)
    if dropped.size:
        warnings.warn(
            f"frames {dropped.tolist()} share no valid shift with the other frames "
            "(all their pairs are outliers or bad); they are treated as bad frames",
            RegistrationWarning,
            stacklevel=2,
        )
    block = layout.outer(keep, keep)
    known = valid & block
    layout.set_diagonal(known, keep)
    corrected = np.where(known[..., None], matrix, 0.0)
    legs = known & ~layout.diagonal()
    while True:
        missing = block & ~known
        if not missing.any():
            break
        weight = legs.astype(float)
        count = layout.matmul(weight, weight)
        fill = missing & (count > 0)
        if not fill.any():
            break
        for axis in range(2):
            comp = corrected[..., axis] * weight
            total = layout.matmul(comp, weight) + layout.matmul(weight, comp)
            with np.errstate(invalid="ignore", divide="ignore"):
                corrected[..., axis] = np.where(fill, total / count, corrected[..., axis])
        known |= fill
        legs |= fill
    # Only a band can leave elements unreachable (a connected dense block always fills).
    corrected[block & ~known] = np.nan
    return corrected, keep


