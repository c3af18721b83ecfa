"""Where the next frames will be: a local linear fit of the drift, its error measured.

The drift of a STEM stage over a few tens of frames is close to linear (thermal creep)
with a random wander on top, and each measured shift carries its own noise. A straight
line fitted to the last ``m`` measured shifts and extrapolated follows the creep and
averages the noise; "next = last" carries a whole frame's drift and the last shift's
full noise. The forecast's sigma is not derived from a noise model but measured: every
forecast made is kept, and compared with the shift later measured for that frame; the
RMS of those errors over the recent frames, per horizon and axis, is the sigma.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DriftForecast"]


def linear_forecast(shifts: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    """Extrapolate a straight line through ``shifts (m, 2)`` to ``horizons`` frames ahead.

    Frames without a shift (NaN) are skipped; with one shift the forecast is it, with
    none NaN. Returns ``(len(horizons), 2)``.
    """
    t = np.arange(len(shifts), dtype=float)
    ok = np.isfinite(shifts).all(axis=1)
    out = np.full((len(horizons), 2), np.nan)
    if not ok.any():
        return out
    if ok.sum() == 1:
        out[:] = shifts[ok][0]
        return out
    t, y = t[ok], shifts[ok]
    centre = t.mean()
    slope = ((t - centre)[:, None] * (y - y.mean(axis=0))).sum(axis=0) / ((t - centre) ** 2).sum()
    target = len(shifts) - 1 + np.asarray(horizons, dtype=float)
    return y.mean(axis=0) + (target - centre)[:, None] * slope


class DriftForecast:
    """Forecasts of the next ``horizon`` frames made after each frame, and their errors.

    Parameters
    ----------
    fit_frames : int
        Shifts the line is fitted to (the last ones).
    horizon : int
        Largest horizon whose error is measured; longer forecasts scale the last
        measured sigma by ``sqrt(k / horizon)`` (a random wander's growth).
    error_frames : int
        Recent frames whose forecast errors give the sigma.
    """

    def __init__(self, fit_frames: int, horizon: int = 8, error_frames: int = 64) -> None:
        self.fit_frames = fit_frames
        self.horizon = horizon
        self.error_frames = error_frames
        self._made = np.full((0, horizon, 2), np.nan)

    def record(self, shifts: np.ndarray) -> None:
        """Forecast from ``shifts (N, 2)`` (every frame so far) and keep it for frame N."""
        n = len(shifts)
        if n > len(self._made):
            grown = np.full((max(2 * len(self._made), n, 64), self.horizon, 2), np.nan)
            grown[: len(self._made)] = self._made
            self._made = grown
        ahead = linear_forecast(shifts[-self.fit_frames :], np.arange(1, self.horizon + 1))
        self._made[n - 1] = ahead

    def errors(self, shifts: np.ndarray) -> np.ndarray:
        """Measured forecast errors ``(horizon, M, 2)`` against ``shifts`` (current values).

        Row ``k - 1`` compares the forecast made ``k`` frames before each of the last
        ``error_frames`` frames with the shift measured for it.
        """
        n = len(shifts)
        out = np.full((self.horizon, self.error_frames, 2), np.nan)
        targets = np.arange(max(0, n - self.error_frames), n)
        for k in range(1, self.horizon + 1):
            made = targets - k
            keep = made >= 0
            rows = np.arange(len(targets))[keep]
            out[k - 1, rows] = shifts[targets[keep]] - self._made[made[keep], k - 1]
        return out

    def forecast(self, shifts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Predicted shifts of the next ``k`` frames and their measured one-sigma.

        Returns
        -------
        predicted, sigma : ndarray, shape (k, 2)
            ``sigma`` is NaN until some forecast of that horizon could be checked.
        """
        horizons = np.arange(1, k + 1)
        predicted = linear_forecast(shifts[-self.fit_frames :], horizons)
        errors = self.errors(shifts)
        counted = np.isfinite(errors).all(axis=-1).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt(np.nansum(errors**2, axis=1) / counted[:, None])
        rms[counted < 2] = np.nan
        measured = np.minimum(horizons, self.horizon)
        sigma = rms[measured - 1] * np.sqrt(horizons / measured)[:, None]
        return predicted, sigma
