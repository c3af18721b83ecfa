"""The end of a live registration: the batch flow on the kept frames and live pairs."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from daskreg import autoparams
from daskreg.kernels.detector import FrameCorrection
from daskreg.live.store import PairTable
from daskreg.method.measurements import PairMeasurements
from daskreg.method.pairs import PairSetup, half_shifts
from daskreg.registration import Registration
from daskreg.result import RegistrationResult
from daskreg.validate import FRAME_DIMS

__all__ = ["finish_batch"]


def finish_batch(
    frames: np.ndarray,
    table: PairTable,
    setup: PairSetup,
    correction: FrameCorrection,
    band: int,
    params: dict[str, Any],
) -> tuple[RegistrationResult, bool]:
    """``register(frames, band=band, **params)`` with the pairs ``table`` holds.

    Parameters
    ----------
    frames : ndarray, shape (N, ny, nx)
        Every frame, as added.
    table : PairTable
        The pairs measured live (with ``setup``, on frames corrected by ``correction``).
    setup : PairSetup
    correction : FrameCorrection
        The scale and hot pixels the live pairs were measured with.
    band : int
    params : dict
        :attr:`LiveRegistration.params_used`.

    Returns
    -------
    result : RegistrationResult
    remeasured : bool
        True when the whole series' scale or hot pixels are not those the live pairs
        were measured with: every pair was then measured again from ``frames``.
    """
    n = len(frames)
    stack = xr.DataArray(
        frames,
        dims=FRAME_DIMS,
        coords={d: np.arange(s) for d, s in zip(FRAME_DIMS, frames.shape, strict=True)},
    )
    # A series no longer than the band has every pair, which a batch run asks as None.
    band = band if band < n - 1 else None
    run = _LivePairs(stack, table, setup, correction, band=band, **params)
    return run.run(), run.remeasured


class _LivePairs(Registration):
    """The batch flow on the kept frames, its pair stage replaced by the live one's."""

    def __init__(
        self,
        stack: xr.DataArray,
        table: PairTable,
        setup: PairSetup,
        correction: FrameCorrection,
        **params: Any,
    ) -> None:
        super().__init__(stack, **params)
        self._table, self._setup, self._correction = table, setup, correction
        self.remeasured = False

    def _measure(self) -> PairMeasurements:
        if self._raw is not None:
            return self._raw
        loaded, resolved = self._load(), self._resolve()
        correction = loaded.correction
        if correction.scale != self._correction.scale or not np.array_equal(
            correction.hot_pixels, self._correction.hot_pixels
        ):
            self.remeasured = True
            return super()._measure()
        n = self.n_frames
        # The checkerboard noise on the batch run's own sample of frames only; the pairs
        # and the top/bottom split of every frame are the live ones.
        split = self._table.split[:n].copy()
        split[:, 0] = np.nan
        sample = autoparams.sample_indices(n)
        frames = loaded.frames[sample]
        split[sample, 0] = half_shifts(frames, self._setup, scale=correction.scale)[:, 0]
        self._raw = self._table.measurements(0, n, resolved.lattice_basis, split)
        self.timings["pairs"] = 0.0
        return self._raw
