"""The running shifts of a live registration: each frame placed, the last ones re-solved."""

from __future__ import annotations

import warnings

import numpy as np

from daskreg.errors import RegistrationWarning, TooFewFramesError
from daskreg.kernels.peak_result import PeakResult
from daskreg.kernels.robust import _consensus
from daskreg.live.store import PairTable
from daskreg.method.analyse import analyse_shift_matrix
from daskreg.params import RegistrationParams
from daskreg.validate import MIN_FRAMES

__all__ = ["RunningShifts"]


class RunningShifts:
    """Shifts, uncertainties and bad frames of a growing series.

    Shifts are kept about a fixed internal origin (the first solve's mean); the public
    ones are taken about the mean of the frames used.

    Parameters
    ----------
    listed : sequence of int
        Frames the user left out (``bad_frames``).
    """

    def __init__(self, listed: tuple[int, ...]) -> None:
        self.listed = frozenset(listed)
        self.unusable: dict[int, str] = {}
        self.bad: dict[int, str] = {}
        self.shifts = np.full((0, 2), np.nan)
        self.sigma = np.full((0, 2), np.nan)
        self._typical_sigma = np.full(2, np.nan)

    def grow(self, n: int) -> None:
        """Room for frame ``n``."""
        if n < len(self.shifts):
            return
        size = max(2 * len(self.shifts), 256)
        for name in ("shifts", "sigma"):
            old = getattr(self, name)
            new = np.full((size, 2), np.nan)
            new[: len(old)] = old
            setattr(self, name, new)

    def excluded(self, k: int) -> bool:
        """Frame ``k`` is left out (unusable, found bad, or listed)."""
        return k in self.unusable or k in self.bad or k in self.listed

    def used(self, n: int) -> np.ndarray:
        """``(n,)`` frames with a shift and not left out."""
        used = np.isfinite(self.shifts[:n]).all(axis=1)
        used[[k for k in (*self.unusable, *self.bad, *self.listed) if k < n]] = False
        return used

    def place(self, n: int, earlier: np.ndarray, found: PeakResult) -> None:
        """Frame ``n`` from its pairs with ``earlier``: the consensus of ``s_k + r_kn``.

        The band start of :func:`daskreg.kernels.robust.robust_solve`: one pair per
        estimate, so a pair that hopped spoils one estimate, not the frame.
        """
        if self.excluded(n):
            return
        if n == 0:
            self.shifts[0] = 0.0
            return
        keep = found.ok & np.isfinite(self.shifts[earlier]).all(axis=1)
        keep &= np.array([not self.excluded(int(k)) for k in earlier], bool)
        if keep.any():
            estimates = self.shifts[earlier[keep]] + found.shifts[keep]
            self.shifts[n] = _consensus(estimates[None])[0]
            self.sigma[n] = self._typical_sigma

    def refine(
        self,
        table: PairTable,
        start: int,
        params: RegistrationParams,
        lattice_basis: np.ndarray | None,
    ) -> None:
        """Solve frames ``[start, n)`` again by the batch analysis; earlier frames stay.

        The window's solution (about its own mean) is put where the frames it shares
        with the previous estimate were. Frames it finds bad are left out, frames it
        clears are taken back.
        """
        stop = table.n_frames
        if stop - start < MIN_FRAMES:
            return
        split = table.split[start:stop].copy()
        # The uncertainties' noise sample: the latest checkerboard splits measured, spread
        # over the window's frames (a frame's own split says nothing else about it).
        noise = table.split[:stop, 0]
        noise = noise[np.isfinite(noise).all(axis=1)][-(stop - start) :]
        split[:, 0] = np.resize(noise, (stop - start, 2)) if len(noise) else np.nan
        pairs = table.measurements(start, stop, lattice_basis, split)
        initial = {k - start: r for k, r in self.unusable.items() if start <= k < stop}
        listed = tuple(b - start for b in self.listed if start <= b < stop)
        try:
            with warnings.catch_warnings():
                # Said once, by finish(), as a batch run says it.
                warnings.simplefilter("ignore", RegistrationWarning)
                analysis = analyse_shift_matrix(pairs, params.replace(bad_frames=listed), initial)
        except TooFewFramesError:
            return
        old, new = self.shifts[start:stop], analysis.shifts
        both = np.isfinite(old).all(axis=1) & np.isfinite(new).all(axis=1)
        offset = (old[both] - new[both]).mean(axis=0) if both.any() else np.zeros(2)
        self.shifts[start:stop] = new + offset
        self.sigma[start:stop] = analysis.uncertainty
        for k in range(start, stop):
            reason = analysis.bad_reason.get(k - start)
            if reason is None or k in self.unusable or k in self.listed:
                self.bad.pop(k, None)
            else:
                self.bad[k] = reason
        if np.isfinite(analysis.uncertainty).any():
            self._typical_sigma = np.nanmedian(analysis.uncertainty, axis=0)

    def reasons(self, n: int) -> dict[int, str]:
        """Frames left out among the first ``n``, and why."""
        out = {b: "listed in bad_frames" for b in self.listed if b < n}
        out.update(self.bad)
        out.update(self.unusable)
        return dict(sorted(out.items()))
