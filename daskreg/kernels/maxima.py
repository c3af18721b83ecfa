"""The brightest local maxima of a block of maps, in one compiled pass per map.

A correlation map of a noisy lattice has hundreds of local maxima; the registration
needs the few brightest. In numpy that takes a threshold pass, a ``nonzero`` and eight
neighbour gathers over the survivors, then a sort: five or more passes over every map
and most of a band-limited pair's search time. Compiled (numba), one pass tests each
pixel against its threshold and its neighbours and keeps a short sorted list, about
three times faster. The kernel takes and returns plain numpy arrays and holds no
state, so it can be replaced by a GPU kernel of the same signature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["Maxima", "top_maxima", "thresholds", "distinct_best"]

# Neighbour ratios below this are clipped before their logarithm.
_CLIP = 1e-3
# Skipping the logarithms of maxima that cannot make the list: with the neighbour ratios
# ``r`` of a maximum clipped to ``[_CLIP, 1]``, the log-parabola along an axis rises at
# most ``-log(r_before r_after) / 8`` above the centre sample (``|b - a| <= |b + a|``
# for logarithms ``a, b <= 0``), so the height is at most ``value (r1 r2 r3 r4)^(-1/8)``,
# tested without logarithms as ``(value / worst)^8 <= r1 r2 r3 r4``. The margin keeps
# the test on the safe side of rounding (a maximum whose bound ties with the list's last
# score is interpolated, as before).
_BOUND_MARGIN = 1 - 1e-6


@dataclass(frozen=True)
class Maxima:
    """The ``k`` best local maxima of each map of a block.

    Attributes
    ----------
    positions : ndarray of int64, shape (P, k, 2)
        ``(y, x)`` of each maximum, best first; ``(0, 0)`` where a map has fewer.
    offset : ndarray of float64, shape (P, k, 2)
        Sub-sample offset of the peak from its maximum in samples, ``|offset| <= 1``
        (zero unless ``interpolate``).
    score : ndarray of float64, shape (P, k)
        Value of each maximum (its log-parabolic peak height if ``interpolate``),
        ``-inf`` where there is none.
    """

    positions: np.ndarray
    offset: np.ndarray
    score: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """True where a map has a maximum at that rank."""
        return np.isfinite(self.score)


def top_maxima(
    maps: np.ndarray, k: int, *, floor: float = 0.0, interpolate: bool = False
) -> Maxima:
    """The ``k`` brightest local maxima of each map (periodic edges).

    A local maximum is no lower than its 8 periodic neighbours; of a plateau only the
    pixel with no equal neighbour above or to its left counts. Maxima below ``floor``
    times their map's maximum (below zero if that maximum is not positive) are ignored.

    Parameters
    ----------
    maps : ndarray of float, shape (P, ny, nx)
    k : int
    floor : float, default 0
        Relative threshold; 0 keeps every non-negative maximum.
    interpolate : bool, default False
        Rank by the height of a log-parabola through each maximum and its neighbours
        along each axis (exact for a Gaussian peak however coarsely sampled), and
        return its sub-sample offset; otherwise rank by the maximum's value.

    Returns
    -------
    Maxima
        Ties in score keep the first maximum in row-major order.
    """
    maps = np.ascontiguousarray(maps)
    if maps.ndim != 3 or not np.issubdtype(maps.dtype, np.floating):
        raise ValueError(
            f"maps must be a real float array (P, ny, nx), got {maps.dtype} {maps.shape}"
        )
    n_maps = maps.shape[0]
    positions = np.zeros((n_maps, k, 2), dtype=np.int64)
    offset = np.zeros((n_maps, k, 2))
    score = np.full((n_maps, k), -np.inf)
    if maps.size:
        _search(maps, thresholds(maps, floor), interpolate, positions, offset, score)
    return Maxima(positions, offset, score)


def thresholds(maps: np.ndarray, floor: float) -> np.ndarray:
    """``floor`` times each map's maximum, 0 where that maximum is not positive (float64, (P,))."""
    top = maps.reshape(len(maps), -1).max(axis=1).astype(np.float64)
    return np.where(top > 0, floor * top, 0.0)


def distinct_best(
    positions: np.ndarray, values: np.ndarray, valid: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` brightest distinct positions of each row of candidates.

    Two candidates at the same position count once (the earlier one); invalid
    candidates never count.

    Parameters
    ----------
    positions : ndarray of int, shape (P, K, 2)
    values : ndarray of float, shape (P, K)
    valid : ndarray of bool, shape (P, K)
    k : int

    Returns
    -------
    positions : ndarray of int64, shape (P, k, 2)
        Brightest first (the earlier candidate on ties); ``(0, 0)`` where a row has
        fewer than ``k``.
    values : ndarray of float64, shape (P, k)
        ``-inf`` where a row has fewer than ``k``.
    """
    best = np.zeros((len(values), k, 2), dtype=np.int64)
    best_values = np.full((len(values), k), -np.inf)
    unused_offset = np.zeros((len(values), k, 2))
    _distinct_best(
        np.asarray(positions, dtype=np.int64), values, valid, best, best_values, unused_offset
    )
    return best, best_values


@numba.njit(cache=True, nogil=True)
def _distinct_best(positions, values, valid, best, best_values, offset):  # pragma: no cover
    k = best_values.shape[1]
    for p in range(values.shape[0]):
        count = 0
        for c in range(values.shape[1]):
            if not valid[p, c]:
                continue
            y, x = positions[p, c, 0], positions[p, c, 1]
            seen = False
            for e in range(c):
                seen |= valid[p, e] and positions[p, e, 0] == y and positions[p, e, 1] == x
            if seen:
                continue
            v = np.float64(values[p, c])
            if count == k and v <= best_values[p, k - 1]:
                continue
            count = _insert(best_values, best, offset, p, count, v, y, x, 0.0, 0.0)


@numba.njit(cache=True, nogil=True)
def _search(maps, limit, interpolate, positions, offset, score):  # pragma: no cover - compiled
    n_maps, ny, nx = maps.shape
    k = score.shape[1]
    reaching = np.empty(nx, dtype=np.intp)
    for p in range(n_maps):
        m = maps[p]
        low = limit[p]
        count = 0
        for y in range(ny):
            row = m[y]
            # Most rows hold no pixel above the threshold: a branch-free test finds them
            # (vectorised), and the rest are listed branch-free before the neighbour tests.
            if not _reaches(row, low):
                continue
            n_reach = 0
            for x in range(nx):
                reaching[n_reach] = x
                n_reach += row[x] >= low
            above = m[y - 1] if y > 0 else m[ny - 1]
            below = m[y + 1] if y < ny - 1 else m[0]
            for t in range(n_reach):
                x = reaching[t]
                v = row[x]
                xl = x - 1 if x > 0 else nx - 1
                xr = x + 1 if x < nx - 1 else 0
                # Equal neighbours above or to the left win the plateau.
                if row[xl] >= v or row[xr] > v:
                    continue
                if above[xl] >= v or above[x] >= v or above[xr] >= v:
                    continue
                if below[xl] > v or below[x] > v or below[xr] > v:
                    continue
                value = np.float64(v)
                height, dy, dx = value, 0.0, 0.0
                full = count == k
                if interpolate and value > 0:
                    r_above, r_below = above[x] / value, below[x] / value
                    r_left, r_right = row[xl] / value, row[xr] / value
                    if full and score[p, k - 1] > 0:
                        ratios = (
                            max(r_above, _CLIP)
                            * max(r_below, _CLIP)
                            * max(r_left, _CLIP)
                            * max(r_right, _CLIP)
                        )
                        if (value / score[p, k - 1]) ** 8 <= _BOUND_MARGIN * ratios:
                            continue
                    dy, gain_y = _parabola(r_above, r_below)
                    dx, gain_x = _parabola(r_left, r_right)
                    height = value * np.exp(gain_y + gain_x)
                if full and height <= score[p, k - 1]:
                    continue
                count = _insert(score, positions, offset, p, count, height, y, x, dy, dx)


@numba.njit(cache=True, nogil=True)
def _reaches(row, low):  # pragma: no cover - compiled
    """Whether any value of ``row`` is at least ``low``."""
    hit = False
    for x in range(row.shape[0]):
        hit |= row[x] >= low
    return hit


@numba.njit(cache=True, nogil=True, inline="always")
def _insert(score, positions, offset, p, count, value, y, x, dy, dx):  # pragma: no cover
    """Insert into row ``p`` of a list sorted by descending score; return the new count.

    The row holds ``count`` entries (at most ``score.shape[1]``; a full list drops its
    last). Equal scores keep the earlier entry first.
    """
    k = score.shape[1]
    i = min(count, k - 1)
    while i > 0 and score[p, i - 1] < value:
        score[p, i] = score[p, i - 1]
        # Element by element: a row assignment compiles numba's broadcasting machinery,
        # a second of a new user's first run.
        for axis in range(2):
            positions[p, i, axis] = positions[p, i - 1, axis]
            offset[p, i, axis] = offset[p, i - 1, axis]
        i -= 1
    score[p, i] = value
    positions[p, i, 0] = y
    positions[p, i, 1] = x
    offset[p, i, 0] = dy
    offset[p, i, 1] = dx
    return min(count + 1, k)


@numba.njit(cache=True, nogil=True, inline="always")
def _parabola(before, after):  # pragma: no cover - compiled
    """Offset (clipped to one sample) and log-height gain of a log-parabola.

    The parabola goes through the logarithms of ``before, 1, after`` (ratios to the
    centre sample).
    """
    b = np.log(max(before, _CLIP))
    a = np.log(max(after, _CLIP))
    curvature = b + a
    if curvature >= 0:
        return 0.0, 0.0
    return min(max((b - a) / (2 * curvature), -1.0), 1.0), -((b - a) ** 2) / (8 * curvature)
