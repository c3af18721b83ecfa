"""The running registered average of a live registration, re-shifted only where needed."""

from __future__ import annotations

import numpy as np

from daskreg.kernels import shift as shift_kernels

__all__ = ["RunningAverage"]


class RunningAverage:
    """Sum of the frames aligned by the Fourier shift theorem, kept up to date.

    Each frame enters with the shift it has when it arrives; when a later solve moves
    it by more than ``tolerance`` (or leaves it out, or takes it back), its old
    contribution is taken out and the new one added. Only the last ``window`` frames
    can still move, so only they are kept.

    Parameters
    ----------
    shape : (ny, nx)
    window : int
        Frames kept for re-shifting (the last ones).
    dtype : numpy dtype
        Of the kept frames.
    tolerance : float
        Pixels a shift must move before its frame is shifted again.
    """

    def __init__(self, shape: tuple[int, int], window: int, dtype, tolerance: float) -> None:
        self.window = window
        self.tolerance = tolerance
        self._frames = np.zeros((window, *shape), dtype)
        self._sum = np.zeros(shape)
        self._applied = np.full((0, 2), np.nan)

    def keep(self, n: int, frame: np.ndarray) -> None:
        """Keep frame ``n`` (as correlated: hot pixels repaired) until it leaves the window."""
        if n >= len(self._applied):
            grown = np.full((max(2 * len(self._applied), 256), 2), np.nan)
            grown[: len(self._applied)] = self._applied
            self._applied = grown
        self._frames[n % self.window] = frame

    def update(self, start: int, current: np.ndarray) -> None:
        """Bring frames ``start, start + 1, ...`` to the shifts ``current`` (NaN: left out).

        Every frame given must be among the last ``window`` kept.
        """
        stop = start + len(current)
        applied = self._applied[start:stop]
        has_now, had = np.isfinite(current).all(axis=1), np.isfinite(applied).all(axis=1)
        with np.errstate(invalid="ignore"):
            moved = np.abs(current - applied).max(axis=1) > self.tolerance
        changed = (has_now != had) | (has_now & had & moved)
        if not changed.any():
            return
        index = start + np.flatnonzero(changed)
        frames = self._frames[index % self.window]
        add, remove = has_now[changed], had[changed]
        # Linear: the old contribution is taken out by adding the negated frame.
        stack = np.concatenate([frames[add], -frames[remove]])
        shifts = np.concatenate([current[changed][add], applied[changed][remove]])
        self._sum += shift_kernels.registered_sum(stack, shifts)
        self._applied[index] = current[changed]

    @property
    def count(self) -> int:
        """Frames in the sum."""
        return int(np.isfinite(self._applied).all(axis=1).sum())

    def value(self, origin: np.ndarray) -> np.ndarray:
        """The average ``(ny, nx)`` with the shifts measured from ``origin`` (zeros if empty).

        The frames were aligned on the shifts as given to :meth:`update`; shifts reported
        relative to another origin move the average by it, once for the whole sum.
        """
        if not self.count:
            return np.zeros(self._sum.shape)
        return shift_kernels.registered_sum(self._sum[None], origin[None]) / self.count
