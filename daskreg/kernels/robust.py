"""Robust global solve of the pair graph: shifts from every pair, hops found and fixed.

At low dose single pair measurements ``r_ij`` hop by whole lattice translations or land
anywhere. The shifts are the solution of ``s_j - s_i = r_ij`` over the measured pairs
(dense or banded), found by iteratively reweighted least squares (IRLS) with Tukey's
biweight on the pair residuals ``e_ij = r_ij - (s_j - s_i)``:

1. a robust start: each frame placed from the frames just before it in time (the band's
   width, or 4 for all pairs) by the consensus of ``s_k + r_kb`` (one pair per estimate,
   so a hop spoils only one; near pairs, because far pairs of a long drift hop together);
   then consensus sweeps ``s_i <- consensus_j (s_j - r_ij)`` (the median for all pairs,
   the largest agreeing group of estimates for a band); with all pairs and a lattice,
   runs of consecutive frames are then moved by a lattice translation where pairs
   weighted ``1 / |i - j|`` agree better (:func:`_segments_in_their_cells`);
2. IRLS: the residual scatter ``sigma`` is measured on the pairs in use (median
   absolute residual, which for Gaussian pair errors is ``1.1774 sigma`` per axis), the
   cut-off is ``k sigma`` (never below ``floor``, never above ``cap``, which stays well
   below the lattice spacing), and pairs beyond it get weight 0;
3. hops: a rejected pair whose residual is within the cut-off of a lattice translation
   ``m1 a1 + m2 a2`` is corrected by that translation and used again (counted).

The cut-off never silently switches rejection off: when the measured scatter asks for
a cut-off above ``cap``, the cap is used and :attr:`RobustSolution.capped` says so.

References
----------
Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI 10.1016/j.ultramic.2018.04.008:
the outlier rejection this refines.
P. W. Holland and R. E. Welsch, "Robust regression using iteratively reweighted
least-squares", Commun. Stat. Theory Methods 6, 813-827 (1977).
DOI 10.1080/03610927708827533
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from daskreg.kernels import shiftmatrix as sm
from daskreg.kernels._blas import one_blas_thread
from daskreg.kernels.frame_shifts import solve_shifts
from daskreg.kernels.lattice import nearest_translation
from daskreg.kernels.layout import DenseLayout, PairLayout, layout_for

__all__ = [
    "RobustSolution",
    "robust_solve",
    "RAYLEIGH_MEDIAN",
    "CUTOFF_FLOOR",
]

#: Median of the norm of a 2-D Gaussian vector of per-axis standard deviation 1.
RAYLEIGH_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))
# Cut-off in units of the per-axis residual scatter: a good pair lies beyond 4.5 sigma
# with probability exp(-4.5^2 / 2) = 4e-5.
_CUTOFF_SIGMAS = 4.5
#: Smallest cut-off (pixels): systematic sub-pixel errors of the peak estimator must
#: not reject good pairs of very clean data.
CUTOFF_FLOOR = 0.3
# A rejected pair is a gross error when its residual exceeds this many cut-offs.
_GROSS = 2.0
# Estimates of a frame's position closer than this (pixels) agree (band start).
_CONSENSUS_RADIUS = 1.0
# Estimate pairs compared at once by the band's consensus (bounds its temporaries).
_CONSENSUS_ELEMENTS = 2**20
# All pairs: each frame's start is the consensus of its pairs with this many frames
# before it (the band's own width for a band).
_START_REACH = 4
# Most runs of frames moved to another cell after the sweeps (each move raises the
# time-weighted agreement; measured: one or two where any).
_SEGMENT_MOVES = 16
# A move must raise the weighted agreement by more than round-off.
_MIN_GAIN = 1e-9
# Sweeps after the start: each spreads consensus over the pair graph once.
_MEDIAN_SWEEPS = 8
_MAX_ITERATIONS = 30
# IRLS has converged when no shift moves by more than this (pixels).
_TOLERANCE = 1e-6


@dataclass(frozen=True)
class RobustSolution:
    """Outcome of :func:`robust_solve`.

    Attributes
    ----------
    shifts : ndarray, shape (N, 2)
        ``(dy, dx)`` of each used frame relative to their mean; NaN for unused frames.
    weights : ndarray of float, layout-shaped
        Final weight of each pair (0: rejected).
    matrix : ndarray, layout-shaped with a trailing axis of 2
        The shift matrix with the hopped pairs corrected by their lattice translation.
    hops : ndarray of bool, layout-shaped
        Pairs corrected by a lattice translation (both ``(i, j)`` and ``(j, i)``).
    residual : ndarray of float, layout-shaped
        ``|r_ij - (s_j - s_i)|`` of every candidate pair after correction (NaN elsewhere).
    gross : ndarray of bool, layout-shaped
        Rejected pairs whose residual is far beyond their cut-off: measurements that
        are wrong, not merely noisier than the rest.
    scale : float
        Per-axis scatter (pixels) of the residuals of a pair of typical quality.
    cutoff : float
        Residual norm (pixels) beyond which a pair of typical quality is rejected
        (each pair's cut-off scales with 1 / its quality).
    capped : bool
        True when the scatter asked for a cut-off above ``cap``: the data are too noisy
        for the lattice, and rejection ran at the cap.
    inlier_fraction : float
        Fraction of the candidate pairs in use at the end.
    hop_fraction : float
        Fraction of the candidate pairs in use only after a hop correction.
    iterations : int
        IRLS iterations run.
    """

    shifts: np.ndarray
    weights: np.ndarray
    matrix: np.ndarray
    hops: np.ndarray
    residual: np.ndarray
    gross: np.ndarray
    scale: float
    cutoff: float
    capped: bool
    inlier_fraction: float
    hop_fraction: float
    iterations: int

    @property
    def inliers(self) -> np.ndarray:
        """Pairs in use (weight above zero)."""
        return self.weights > 0


def _row_values(
    shifts: np.ndarray, matrix: np.ndarray, candidates: np.ndarray, layout: PairLayout
) -> np.ndarray:
    """``s_j - r_ij`` of every candidate element, NaN elsewhere (layout-shaped, 2)."""
    cols, inside = layout.columns(np.arange(layout.n_frames))
    values = shifts[np.broadcast_to(cols, candidates.shape)] - matrix
    return np.where((candidates & inside)[..., None], values, np.nan)


def _sweep(
    shifts: np.ndarray,
    matrix: np.ndarray,
    candidates: np.ndarray,
    used: np.ndarray,
    layout: PairLayout,
) -> np.ndarray:
    """One update ``s_i <- consensus_j (s_j - r_ij)`` of every frame at once.

    All pairs: the median (a row holds N estimates, most of them right). A band: the
    consensus of :func:`_consensus`, since a row holds only ``2 w`` estimates and a
    median of a few is often spoilt by hops going different ways.
    """
    values = _row_values(shifts, matrix, candidates, layout)
    if isinstance(layout, DenseLayout):
        new = _nanmedian(values, axis=1)
    else:
        # Rows in blocks: the consensus compares every two estimates of a row.
        block = max(1, _CONSENSUS_ELEMENTS // values.shape[1] ** 2)
        new = np.concatenate(
            [_consensus(values[a : a + block]) for a in range(0, len(values), block)]
        )
    new = np.where(np.isfinite(new) & used[:, None], new, shifts)
    return new - new[used].mean(axis=0)


def _start(
    matrix: np.ndarray, candidates: np.ndarray, used: np.ndarray, layout: PairLayout
) -> np.ndarray:
    """A robust first estimate of the shifts (see the module's notes)."""
    n = layout.n_frames
    index = np.flatnonzero(used)
    # Each frame placed from the frames just before it, by the consensus of those pairs'
    # s_k + r_kb; one leg per estimate, so a hop spoils only one. All pairs too are
    # started from the near ones: pairs far apart in time are those that hop together
    # (see _segments_in_their_cells), and a row median then follows them.
    reach = _START_REACH if isinstance(layout, DenseLayout) else layout.band
    out = np.zeros((n, 2))
    placed = np.zeros(n, dtype=bool)
    for b in index:
        ks = np.arange(max(0, b - reach), b)
        ks = ks[placed[ks]]
        ks = ks[layout.take(candidates, ks, b, False)] if ks.size else ks
        if ks.size:
            out[b] = _consensus((out[ks] + layout.take(matrix, ks, b, 0.0))[None])[0]
        elif placed.any():
            out[b] = out[np.flatnonzero(placed)[-1]]
        placed[b] = True
    return out - out[index].mean(axis=0)


def _consensus(estimates: np.ndarray) -> np.ndarray:
    """Per row, the mean of the largest group of estimates near one of them.

    Parameters
    ----------
    estimates : ndarray, shape (R, C, 2)
        ``C`` estimates of a 2-D position per row; NaN for none.

    Returns
    -------
    ndarray, shape (R, 2)
        The mean of the estimates within ``_CONSENSUS_RADIUS`` of the estimate with the
        most such neighbours (NaN for a row without estimates). Unlike a median this
        holds when most estimates are wrong, as long as the wrong ones disagree among
        themselves (hops go to different lattice translations).
    """
    with np.errstate(invalid="ignore"):
        distance = np.linalg.norm(estimates[:, :, None] - estimates[:, None], axis=-1)
        near = distance < _CONSENSUS_RADIUS
    best = near.sum(axis=2).argmax(axis=1)
    members = near[np.arange(len(estimates)), best]
    count = members.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(members[..., None], estimates, 0.0).sum(axis=1)
        return np.where(count[:, None] > 0, total / count[:, None], np.nan)


def _residual(
    shifts: np.ndarray, matrix: np.ndarray, candidates: np.ndarray, layout: PairLayout
) -> np.ndarray:
    """Residual vectors ``r_ij - (s_j - s_i)`` of candidates, NaN elsewhere."""
    values = _row_values(shifts, matrix, candidates, layout)
    return shifts[:, None, :] - values


def robust_solve(
    matrix: np.ndarray,
    candidates: np.ndarray,
    used: np.ndarray,
    layout: PairLayout | None = None,
    *,
    translations: np.ndarray | None = None,
    cap: float = np.inf,
    floor: float = CUTOFF_FLOOR,
    quality: np.ndarray | None = None,
) -> RobustSolution:
    """Shifts of the frames from a shift matrix with outliers and unit-cell hops.

    Parameters
    ----------
    matrix : ndarray, shape (N, N, 2) or the layout's
        Measured ``R[i, j] = s_j - s_i`` (antisymmetric).
    candidates : ndarray of bool, shape (N, N) or the layout's
        Pairs that may be used (measured, peak found, both frames usable); symmetric,
        diagonal ignored.
    used : ndarray of bool, shape (N,)
        Frames to solve for; they should be linked by candidate pairs.
    layout : PairLayout, optional
        Storage of the matrices (default dense).
    translations : ndarray, shape (B, 2), optional
        Lattice basis ``a1`` (and ``a2``) in pixels, ``(y, x)``: pairs off by a lattice
        translation are corrected instead of dropped.
    cap : float, default inf
        Largest cut-off (pixels); with a lattice, a fraction of its shortest translation.
    floor : float, default 0.3
        Smallest cut-off (pixels): systematic sub-pixel errors of the peak estimator
        must not reject good pairs of very clean data.
    quality : ndarray, layout-shaped, optional
        A positive quality per pair (e.g. the correlation coefficient): weights scale
        with it (normalised to its median), so weak pairs count less.

    Returns
    -------
    RobustSolution

    Notes
    -----
    The solve is :func:`daskreg.kernels.frame_shifts.solve_shifts` with weights, so a
    band is solved as a banded system in O(N w^2) per iteration.
    """
    # The systems are small: BLAS threads only fight each other (and a busy machine's
    # other work), measured 0.8 s instead of 5 ms for a band Cholesky of 2,000 frames.
    with one_blas_thread():
        return _robust_solve(matrix, candidates, used, layout, translations, cap, floor, quality)


def _robust_solve(
    matrix: np.ndarray,
    candidates: np.ndarray,
    used: np.ndarray,
    layout: PairLayout | None,
    translations: np.ndarray | None,
    cap: float,
    floor: float,
    quality: np.ndarray | None,
) -> RobustSolution:
    layout = layout_for(matrix, layout)
    matrix = np.array(matrix, dtype=np.float64)
    candidates = candidates & layout.outer(used, used) & ~layout.diagonal()
    candidates &= np.isfinite(matrix).all(axis=-1)
    # Relative precision of each pair: a pair's error scales with 1 / its correlation
    # quality (less overlap, less signal), so residuals are compared in those units.
    precision = np.ones(candidates.shape)
    if quality is not None:
        q = np.where(candidates, quality, np.nan)
        typical = np.nanmedian(q) if np.isfinite(q).any() else 1.0
        precision = np.clip(np.nan_to_num(q / typical, nan=1.0), 0.1, 10.0)
    hops = np.zeros_like(candidates)

    shifts = _start(matrix, candidates, used, layout)
    for _ in range(_MEDIAN_SWEEPS):
        shifts = _sweep(shifts, matrix, candidates, used, layout)
    if translations is not None and isinstance(layout, DenseLayout):
        shifts = _segments_in_their_cells(shifts, matrix, candidates, used, translations)

    def reweight(shifts: np.ndarray) -> tuple:
        resid = _residual(shifts, matrix, candidates, layout)
        norm = np.linalg.norm(resid, axis=-1)
        values = (norm * precision)[candidates & layout.upper()]
        scale = float(np.median(values) / RAYLEIGH_MEDIAN) if values.size else 0.0
        wanted = _CUTOFF_SIGMAS * scale
        cutoff = np.clip(wanted / precision, floor, cap)
        ratio = np.where(candidates, norm / cutoff, np.inf)
        weights = np.where(ratio < 1, (1 - ratio**2) ** 2, 0.0) * precision**2
        typical = float(min(max(wanted, floor), cap))
        return weights, scale, typical, bool(wanted > cap), norm, cutoff

    iterations = 0
    for _pass in range(2):
        for _ in range(_MAX_ITERATIONS):
            iterations += 1
            weights, scale, cutoff, capped, norm, cutoffs = reweight(shifts)
            keep = sm.connected_frames(weights > 0, used, layout)
            new, _ = solve_shifts(
                matrix, weights > 0, keep, layout, weights=weights, uncertainty=False
            )
            new = np.where(keep[:, None], new, shifts)
            moved = np.nanmax(np.abs(new - shifts)) if used.any() else 0.0
            shifts = new - new[used].mean(axis=0)
            if moved < _TOLERANCE:
                break
        if translations is None or _pass:
            break
        # Rejected pairs that sit a lattice translation away from the consensus hopped.
        resid = _residual(shifts, matrix, candidates, layout)
        rejected = candidates & (weights == 0)
        if not rejected.any():
            break
        ii, jj = layout.nonzero(rejected)
        vectors = resid[rejected]
        translation, distance = nearest_translation(vectors, translations)
        hopped = (distance < cutoffs[rejected]) & (np.linalg.norm(translation, axis=1) > 0)
        if not hopped.any():
            break
        layout.put(matrix, ii[hopped], jj[hopped], matrix[rejected][hopped] - translation[hopped])
        layout.put(hops, ii[hopped], jj[hopped], True)

    weights, scale, cutoff, capped, norm, cutoffs = reweight(shifts)
    keep = sm.connected_frames(weights > 0, used, layout)
    shifts = np.where(keep[:, None], shifts, np.nan)
    shifts = shifts - np.nanmean(shifts[keep], axis=0)
    in_use = (weights > 0) & layout.upper()
    total = (candidates & layout.upper()).sum()
    return RobustSolution(
        shifts=shifts,
        weights=weights,
        matrix=matrix,
        hops=hops & (weights > 0),
        residual=np.where(candidates, norm, np.nan),
        gross=candidates & (weights == 0) & (norm > _GROSS * cutoffs),
        scale=scale,
        cutoff=cutoff,
        capped=capped,
        inlier_fraction=float(in_use.sum() / total) if total else 0.0,
        hop_fraction=float((in_use & hops).sum() / total) if total else 0.0,
        iterations=iterations,
    )


def _segments_in_their_cells(
    shifts: np.ndarray,
    matrix: np.ndarray,
    candidates: np.ndarray,
    used: np.ndarray,
    translations: np.ndarray,
) -> np.ndarray:
    """Move runs of consecutive frames by a lattice translation where near pairs say so.

    On a drift long for the frame, frames far apart in time correlate at a nearer
    lattice translation than their true shift: the window's envelope (its
    autocorrelation) lifts the alias nearer zero above the true peak when the specimen's
    non-periodic detail is faint. Those long pairs hop the same way, and where they
    outnumber a frame's near pairs the row medians place a run of frames at one end of
    the series a cell off (measured: hexagonal a = 12 px, 5 counts per column, 256^2,
    17 px of drift: frames 18-19 a cell off and 15-17 dropped). Pairs near in time have
    small true shifts and do not hop that way, so here each pair's vote counts
    ``1 / |i - j|``: a run of consecutive used frames is moved by a translation when
    that raises the weighted number of pairs agreeing with the shifts (residual under a
    quarter of the shortest translation), the best move first, until none does.
    """
    index = np.flatnonzero(used)
    n = len(index)
    if n < 3:
        return shifts
    basis = [np.asarray(t, dtype=np.float64) for t in translations]
    if len(basis) > 1:
        basis += [basis[0] + basis[1], basis[0] - basis[1]]
    moves = basis + [-t for t in basis]
    tol = 0.25 * float(np.linalg.norm(translations, axis=1).min())
    sub = np.ix_(index, index)
    pairs = candidates[sub] & np.isfinite(matrix[sub]).all(axis=-1)
    pairs &= np.triu(np.ones((n, n), bool), 1)
    separation = np.abs(np.subtract.outer(index, index))
    weight = np.where(pairs, 1.0 / np.maximum(separation, 1), 0.0)
    measured = np.where(pairs[..., None], matrix[sub], 0.0)
    first, last = np.triu_indices(n)  # the runs first..last, inclusive
    whole = (first == 0) & (last == n - 1)
    out = shifts.copy()
    for _ in range(_SEGMENT_MOVES):
        placed = out[index]
        resid = measured - (placed[None, :, :] - placed[:, None, :])
        agree = weight * (np.linalg.norm(resid, axis=-1) < tol)
        best_gain, best = _MIN_GAIN, None
        for move in moves:
            # The run moved by ``move``: a pair from before it into it sees its residual
            # minus ``move``, a pair from it to after it its residual plus ``move``.
            into = _summed_area(weight * (np.linalg.norm(resid - move, axis=-1) < tol) - agree)
            out_of = _summed_area(weight * (np.linalg.norm(resid + move, axis=-1) < tol) - agree)
            gain = (into[first, last + 1] - into[first, first]) + (
                out_of[last + 1, n]
                - out_of[first, n]
                - out_of[last + 1, last + 1]
                + out_of[first, last + 1]
            )
            gain[whole] = -np.inf
            k = int(np.argmax(gain))
            if gain[k] > best_gain:
                best_gain, best = float(gain[k]), (first[k], last[k], move)
        if best is None:
            break
        out[index[best[0] : best[1] + 1]] += best[2]
    return out - out[index].mean(axis=0)


def _summed_area(values: np.ndarray) -> np.ndarray:
    """``table[r, c]`` = sum of ``values[:r, :c]``."""
    return np.pad(values.cumsum(0).cumsum(1), ((1, 0), (1, 0)))


def _nanmedian(values: np.ndarray, axis: int) -> np.ndarray:
    # A row without candidates is all NaN: its median is NaN, not a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)
