"""What a peak search gives for a block of correlation maps, and the periodic wrap.

Every method of :mod:`daskreg.kernels.peaks` (and the refinement of
:mod:`daskreg.kernels.upsampled`) returns a :class:`PeakResult`: signed shifts
``(P, 2)`` in ``(y, x)`` order, wrapped to ``[-n/2, n/2)`` per axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PeakResult", "wrap_shift", "wrap_signed"]


@dataclass(frozen=True)
class PeakResult:
    """Maxima of a block of correlation maps.

    Attributes
    ----------
    shifts : ndarray of float64, shape (P, 2)
        Signed shift ``(dy, dx)`` of each pair.
    ok : ndarray of bool, shape (P,)
        False where the method failed (``gf``: no candidate could be fitted; the shift
        then holds the brightest pixel so that it can still be inspected).
    peak : ndarray of float64, shape (P,)
        Height of the chosen maximum on the maps' scale (fit ``amplitude + offset`` for
        ``gf``, the correlation at the refined maximum for ``upsampled``).
    """

    shifts: np.ndarray
    ok: np.ndarray
    peak: np.ndarray

    @classmethod
    def concatenate(cls, results: list[PeakResult]) -> PeakResult:
        """One result from the results of consecutive blocks of pairs."""
        if not results:
            return cls(np.zeros((0, 2)), np.zeros(0, dtype=bool), np.zeros(0))
        return cls(
            np.concatenate([r.shifts for r in results]),
            np.concatenate([r.ok for r in results]),
            np.concatenate([r.peak for r in results]),
        )


def wrap_shift(index: np.ndarray, size: int | np.ndarray) -> np.ndarray:
    """Map positions on a periodic axis of length ``size`` to ``[-size/2, size/2)``."""
    index = np.asarray(index, dtype=float)
    return index - size * (index >= np.asarray(size) / 2)


def wrap_signed(position: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Map signed positions on periodic axes of lengths ``size`` to ``[-size/2, size/2)``."""
    return np.mod(position + size / 2, size) - size / 2
