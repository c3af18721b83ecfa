"""Where element ``(i, j)`` of an N x N pair matrix is stored: dense or banded.

Every pair matrix of the method (shift matrix, valid/outlier masks, scores) has one
element per frame pair. With all pairs measured it is stored dense, shape ``(N, N)``.
With a band of pairs ``|i - j| <= w`` (long time series) it is stored by offset,
shape ``(N, 2w + 1)``: column ``c`` of row ``i`` holds element ``(i, i + c - w)``, so
10,000 frames with ``w = 32`` take 650,000 elements instead of 10^8. Both layouts keep
both ``(i, j)`` and ``(j, i)``, so a row of the storage is a row of the matrix and
per-row reductions (sums, medians) read the same either way.

The kernels of :mod:`daskreg.kernels.shiftmatrix` reach elements only through a
layout's accessors, so one implementation serves both storages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PairLayout", "DenseLayout", "BandLayout", "pair_layout", "layout_for"]


@dataclass(frozen=True)
class PairLayout:
    """Storage of an N x N pair matrix; see :class:`DenseLayout` and :class:`BandLayout`.

    Attributes
    ----------
    n_frames : int
        N, the number of frames.
    """

    n_frames: int

    @property
    def band(self) -> int | None:
        """Largest ``|i - j|`` stored (None: all pairs)."""
        return None

    @property
    def n_cols(self) -> int:
        """Columns of the storage."""
        raise NotImplementedError

    def columns(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Matrix column ``j`` of each storage column of ``rows``.

        Returns
        -------
        cols : ndarray of int, shape (R, n_cols) or (1, n_cols)
            Clipped into ``[0, N)``.
        inside : ndarray of bool, same shape
            False where a storage column holds no element (beyond the matrix edge).
        """
        raise NotImplementedError

    def position(self, i: Any, j: Any) -> tuple[np.ndarray, np.ndarray]:
        """Storage column of elements ``(i, j)`` and whether the layout holds them."""
        raise NotImplementedError

    def take(self, array: np.ndarray, i: Any, j: Any, fill: Any) -> np.ndarray:
        """Elements ``(i, j)`` (broadcast index arrays) of a stored matrix.

        Elements the layout does not hold (outside the band) read as ``fill``.
        """
        col, held = self.position(i, j)
        values = array[i, col]
        if held is True:
            return values
        held = held.reshape(held.shape + (1,) * (values.ndim - held.ndim))
        return np.where(held, values, fill)

    def put(self, array: np.ndarray, i: np.ndarray, j: np.ndarray, values: Any) -> None:
        """Set elements ``(i, j)``, all of which the layout must hold."""
        col, _ = self.position(i, j)
        array[i, col] = values

    def full(self, fill: Any, dtype: Any = None, trailing: tuple[int, ...] = ()) -> np.ndarray:
        """A stored matrix with every element ``fill``."""
        return np.full((self.n_frames, self.n_cols, *trailing), fill, dtype=dtype)

    def outer(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a[i] & b[j]`` for every stored element (False outside the matrix)."""
        raise NotImplementedError

    def diagonal(self) -> np.ndarray:
        """True on the diagonal ``i == j``."""
        raise NotImplementedError

    def upper(self) -> np.ndarray:
        """True on the elements ``j > i`` (each pair once)."""
        raise NotImplementedError

    def set_diagonal(self, array: np.ndarray, values: Any) -> None:
        """Write ``values`` (scalar or one per frame) on the diagonal, in place."""
        raise NotImplementedError

    def nonzero(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Matrix indices ``(i, j)`` of the True elements of a stored boolean matrix."""
        raise NotImplementedError

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Matrix product ``(a @ b)[i, j] = sum_k a[i, k] b[k, j]`` on the stored elements."""
        raise NotImplementedError


@dataclass(frozen=True)
class DenseLayout(PairLayout):
    """All N x N elements, stored as an ``(N, N)`` array."""

    @property
    def n_cols(self) -> int:  # noqa: D102
        return self.n_frames

    def columns(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: D102
        cols = np.arange(self.n_frames)[None, :]
        return cols, np.ones(cols.shape, dtype=bool)

    def position(self, i: Any, j: Any) -> tuple[np.ndarray, Any]:  # noqa: D102
        return np.asarray(j), True

    def outer(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # noqa: D102
        return np.outer(a, b)

    def diagonal(self) -> np.ndarray:  # noqa: D102
        return np.eye(self.n_frames, dtype=bool)

    def upper(self) -> np.ndarray:  # noqa: D102
        return np.triu(np.ones((self.n_frames, self.n_frames), dtype=bool), 1)

    def set_diagonal(self, array: np.ndarray, values: Any) -> None:  # noqa: D102
        np.fill_diagonal(array, values)

    def nonzero(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: D102
        return np.nonzero(mask)

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # noqa: D102
        return a @ b


@dataclass(frozen=True)
class BandLayout(PairLayout):
    """Elements with ``|i - j| <= width``, stored by offset as ``(N, 2 width + 1)``.

    Attributes
    ----------
    width : int
        Half-width ``w`` of the band; column ``c`` of row ``i`` is element
        ``(i, i + c - w)``.
    """

    width: int = 1

    @property
    def band(self) -> int:  # noqa: D102
        return self.width

    @property
    def n_cols(self) -> int:  # noqa: D102
        return 2 * self.width + 1

    @property
    def offsets(self) -> np.ndarray:
        """``j - i`` of each storage column."""
        return np.arange(-self.width, self.width + 1)

    def columns(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: D102
        cols = np.asarray(rows)[:, None] + self.offsets
        inside = (cols >= 0) & (cols < self.n_frames)
        return np.clip(cols, 0, self.n_frames - 1), inside

    def position(self, i: Any, j: Any) -> tuple[np.ndarray, np.ndarray]:  # noqa: D102
        offset = np.asarray(j) - np.asarray(i)
        j = np.asarray(j)
        held = (np.abs(offset) <= self.width) & (j >= 0) & (j < self.n_frames)
        return np.clip(offset, -self.width, self.width) + self.width, held

    def outer(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # noqa: D102
        cols, inside = self.columns(np.arange(self.n_frames))
        return np.asarray(a)[:, None] & np.asarray(b)[cols] & inside

    def diagonal(self) -> np.ndarray:  # noqa: D102
        return np.broadcast_to(self.offsets == 0, (self.n_frames, self.n_cols)).copy()

    def upper(self) -> np.ndarray:  # noqa: D102
        return self.outer(np.ones(self.n_frames, bool), np.ones(self.n_frames, bool)) & (
            self.offsets > 0
        )

    def set_diagonal(self, array: np.ndarray, values: Any) -> None:  # noqa: D102
        array[:, self.width] = values

    def nonzero(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: D102
        rows, cols = np.nonzero(mask)
        return rows, rows + cols - self.width

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # noqa: D102
        # Only k within the band of both i and j contributes: one pass per offset k - i.
        w, n = self.width, self.n_frames
        out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b))
        for p in range(-w, w + 1):
            rows = slice(max(0, -p), min(n, n - p))
            k_rows = slice(max(0, p), min(n, n + p))
            # Offsets o = j - i reachable through k: |o - p| <= w.
            lo, hi = max(-w, p - w), min(w, p + w)
            out[rows, lo + w : hi + w + 1] += (
                a[rows, p + w, None] * b[k_rows, lo - p + w : hi - p + w + 1]
            )
        return out


def pair_layout(n_frames: int, band: int | None = None) -> PairLayout:
    """The storage for pairs of ``n_frames`` frames: banded when a band leaves pairs out."""
    if band is None or band >= n_frames - 1:
        return DenseLayout(n_frames)
    return BandLayout(n_frames, band)


def layout_for(matrix: np.ndarray, layout: PairLayout | None) -> PairLayout:
    """``layout``, or the dense storage of the square pair matrix ``matrix`` when None."""
    return DenseLayout(matrix.shape[0]) if layout is None else layout
