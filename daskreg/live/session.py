"""Registration of a series while it is acquired: :class:`LiveRegistration`.

Each new frame is prepared, transformed and correlated with the ``band`` frames before
it by the pair stage's own functions (:mod:`daskreg.method.pairs`); the frame is placed
at once from those pairs, and every ``refine_every`` frames the last ``window`` frames
are solved again by the batch analysis (:func:`~daskreg.method.analyse.analyse_shift_matrix`:
robust solve, bad frames, uncertainties), older frames staying fixed. The running
average is the Fourier-shift sum of :func:`~daskreg.kernels.shift.registered_sum`,
updated only for frames whose shift moved by more than ``tolerance``. :meth:`finish`
runs the batch analysis and average on everything kept, which is
``register(stack, band=band, **params_used)``.

References
----------
B. H. Savitzky, I. El Baggari, C. B. Clement, et al., "Image registration of low
signal-to-noise cryo-STEM data", Ultramicroscopy 191, 56-65 (2018).
DOI 10.1016/j.ultramic.2018.04.008
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import xarray as xr

from daskreg import autoparams
from daskreg.errors import (
    NonFiniteError,
    ParameterError,
    RegistrationWarning,
    StackDtypeError,
    StackShapeError,
    TooFewFramesError,
)
from daskreg.kernels import shift as shift_kernels
from daskreg.kernels.peak_result import PeakResult
from daskreg.kernels.robust import _consensus
from daskreg.live.forecast import DriftForecast
from daskreg.live.store import FrameStore, PairTable
from daskreg.method.analyse import analyse_shift_matrix
from daskreg.method.pairs import half_shifts, measure_pairs, pair_setup
from daskreg.method.screening import (
    initial_bad_frames,
    prepare_frames,
    survey_frames,
    unusable_frames,
)
from daskreg.params import RegistrationParams
from daskreg.registration import Registration
from daskreg.result import RegistrationResult
from daskreg.signatures import PARAM_NAMES, check_names
from daskreg.validate import FRAME_DIMS, MIN_FRAMES, check_stack, frame_quality

__all__ = ["LiveRegistration"]

# The parameters a live registration takes through **params (band is its own argument;
# a frame range means nothing for a series that is still growing).
_LIVE_PARAMS = tuple(name for name in PARAM_NAMES if name not in ("band", "frames"))
# Recent adds whose times give the rate of the summary line.
_RATE_FRAMES = 50
# The checkerboard split (the per-frame noise, a statistic of the series that a batch run
# measures on 16 frames) is measured on the warm-up frames and every this many after.
_NOISE_EVERY = 8


class LiveRegistration:
    """Register frames as they arrive: running shifts, average, bad frames and forecast.

    Parameters
    ----------
    frame_shape : (int, int)
        ``(ny, nx)`` of every frame.
    band : int, default 32
        Each new frame is correlated with the ``band`` frames before it (the pairs
        ``|i - j| <= band`` of a batch run with the same ``band``).
    dtype : numpy float dtype, default float32
        Frames are kept (and registered) in this dtype.
    warmup : int, optional
        Frames collected before anything is measured (default
        :data:`daskreg.autoparams.SAMPLE_FRAMES`, 16): the automatic parameters
        (``mask="auto"``, ``n``, ``sigma_guess``, ``window_radius``), the series' scale
        and its hot pixels are decided from them and then fixed (:attr:`params_used`).
        At least 3.
    window : int, optional
        Trailing frames solved again at each refinement (default ``band + 1``: every
        pair among them is measured, and the robust solve of a complete graph costs a
        few ms). Frames before the window keep their shift until :meth:`finish`.
    refine_every : int, optional
        Frames between refinements (default ``max(1, band // 16)``); in between, a new
        frame is placed from its own pairs (the consensus of ``s_k + r_kn``).
    tolerance : float, default 0.05
        Pixels: a refinement re-shifts a frame in the running average only when its
        shift moved by more than this.
    forecast_frames : int, default 12
        Last shifts the drift forecast's line is fitted to.
    store_dir : str or path, optional
        Folder of the temporary file holding every frame for :meth:`finish` (default:
        the system temporary folder). Removed with the object.
    mask, n, ..., precision
        The method parameters of :func:`daskreg.register` (not ``frames``).

    Attributes
    ----------
    frame_shape : (int, int)
    band : int

    Raises
    ------
    ParameterError
        An unknown or invalid parameter (naming the valid ones / the fix).
    StackShapeError
        ``frame_shape`` is not two sizes of at least 4 pixels.

    Notes
    -----
    Memory: the spectra of the last ``band`` frames (band-limited, typically a few per
    cent of a frame each), the last ``window`` frames, the pairs' numbers (about 40 bytes
    per pair) and one float64 sum; every frame is also appended to a temporary file
    (``n_frames * ny * nx * itemsize`` bytes on disk, read only by :meth:`finish`).

    Cost per frame: one spectrum, ``band`` pairs, the top/bottom split of
    :func:`~daskreg.method.pairs.half_shifts` (for tears; the checkerboard split, for the
    noise, on every 8th frame), one Fourier shift for the average, and
    every ``refine_every`` frames a robust solve of ``window`` frames with the
    re-shifting it asks for: flat in the length of the series.

    Running shifts are relative to the mean of the frames used so far; they differ from
    the final ones by the refinements still to come (frames before the window are solved
    again only by :meth:`finish`).

    References
    ----------
    .. [1] B. H. Savitzky et al., Ultramicroscopy 191, 56-65 (2018),
       DOI 10.1016/j.ultramic.2018.04.008.

    Examples
    --------
    >>> from daskreg.synthetic import lattice_series
    >>> series = lattice_series(24, (128, 128), dose=5, seed=1)
    >>> live = LiveRegistration((128, 128), band=8)
    >>> for frame in series.stack:
    ...     live.add(frame)
    >>> live.shifts.shape
    (24, 2)
    >>> result = live.finish()
    """

    def __init__(
        self,
        frame_shape: tuple[int, int],
        *,
        band: int = 32,
        dtype: Any = np.float32,
        warmup: int | None = None,
        window: int | None = None,
        refine_every: int | None = None,
        tolerance: float = 0.05,
        forecast_frames: int = 12,
        store_dir: Any = None,
        **params: Any,
    ) -> None:
        check_names(params, _LIVE_PARAMS, "LiveRegistration()")
        if params.get("frames") is not None:
            raise ParameterError(
                f"frames={params['frames']!r} selects frames of a finished series; a live "
                "registration uses every frame added. Leave frames out (pass bad_frames=[...] "
                "to leave some out)"
            )
        _check_int("band", band, 1, "e.g. band=32 (each new frame pairs with 32 before it)")
        self.band = int(band)
        self.frame_shape = _check_shape(frame_shape)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise StackDtypeError(
                f"dtype={self.dtype} cannot hold registered frames; pass dtype=np.float32 "
                "(the default) or np.float64"
            )
        self.warmup = _check_int(
            "warmup", autoparams.SAMPLE_FRAMES if warmup is None else warmup, MIN_FRAMES, ""
        )
        self.window = _check_int("window", band + 1 if window is None else window, 3, "")
        self.refine_every = _check_int(
            "refine_every", max(1, band // 16) if refine_every is None else refine_every, 1, ""
        )
        self.tolerance = _check_positive("tolerance", tolerance)
        self._given = RegistrationParams(band=self.band, **params)
        # Frame size against the fit window, as a batch run checks it (no memory used).
        zeros = np.broadcast_to(np.zeros((), self.dtype), (MIN_FRAMES, *self.frame_shape))
        check_stack(xr.DataArray(zeros, dims=FRAME_DIMS), self._given.replace(band=None))
        self._forecast = DriftForecast(_check_int("forecast_frames", forecast_frames, 2, ""))
        self._store = FrameStore(self.frame_shape, self.dtype, store_dir)
        self._table = PairTable(self.band)
        self._buffer: list[np.ndarray] = []
        self._times: list[float] = []
        self._params: RegistrationParams | None = None
        self._resolved: autoparams.Resolved | None = None
        self._setup = None
        self._correction = None
        self._unusable: dict[int, str] = {}
        self._bad: dict[int, str] = {}
        self._shifts = np.full((0, 2), np.nan)
        self._sigma = np.full((0, 2), np.nan)
        self._applied = np.full((0, 2), np.nan)
        self._sum = np.zeros(self.frame_shape)
        self._spectra: np.ndarray | None = None
        self._frames = np.zeros((self.window, *self.frame_shape), self.dtype)
        self._typical_sigma = np.full(2, np.nan)
        #: True when :meth:`finish` had to measure every pair again (see there).
        self.remeasured = False

    # -- adding frames -------------------------------------------------------------------
    def add(self, frame: Any) -> None:
        """Register one more frame.

        Parameters
        ----------
        frame : array_like, shape ``frame_shape``
            Real values; converted to ``dtype``. A frame with NaN/inf pixels or no
            contrast becomes a bad frame (as in a batch run).

        Raises
        ------
        StackShapeError
            The frame's shape is not ``frame_shape``.
        StackDtypeError
            The frame does not hold real numbers.
        NonFiniteError
            NaN/inf pixels or no contrast while ``detect_bad_frames=False``.
        """
        frame = self._check_frame(frame)
        self._times.append(time.perf_counter())
        if self._setup is None:
            self._buffer.append(frame)
            if len(self._buffer) >= self.warmup:
                self._start()
            return
        self._ingest(frame)

    def add_many(self, frames: Any) -> None:
        """:meth:`add` each frame of ``frames`` (an array ``(F, ny, nx)`` or an iterable)."""
        for frame in frames:
            self.add(frame)

    def _check_frame(self, frame: Any) -> np.ndarray:
        values = np.asarray(frame)
        index = self.n_frames
        if values.shape != self.frame_shape:
            raise StackShapeError(
                f"frame {index} has shape {values.shape}, but this live registration takes "
                f"frames of {self.frame_shape}; pass frames of that shape (or start another "
                f"LiveRegistration with frame_shape={values.shape})"
            )
        if values.dtype.kind not in "uif":
            raise StackDtypeError(
                f"frame {index} has dtype {values.dtype}; frames must hold real numbers. "
                "Convert first, e.g. frame.astype('float32') (for complex data its abs())"
            )
        values = values.astype(self.dtype, copy=False)
        if not self._given.detect_bad_frames:
            finite, std = frame_quality(values[None])
            reason = unusable_frames(finite, std).get(0)
            if reason is not None:
                raise NonFiniteError(
                    f"frame {index} cannot be registered: it {reason}, and "
                    "detect_bad_frames=False. Replace its invalid pixels first (e.g. "
                    "np.nan_to_num(frame, nan=float(np.nanmedian(frame)))), skip it, or "
                    "pass detect_bad_frames=True to keep it as a bad frame"
                )
        return values

    def _start(self) -> None:
        """Fix the automatic parameters, scale and hot pixels from the warm-up frames."""
        frames = np.stack(self._buffer)
        self._buffer = []
        survey = survey_frames(frames)
        correction = survey.correction()
        prepared = prepare_frames(
            frames, initial_bad_frames(survey.unusable, self._given), correction
        )
        # The sample a batch run of these frames would resolve its parameters from.
        sample = prepared[autoparams.sample_indices(len(frames))] / correction.scale
        self._resolved = autoparams.resolve(self._given, sample)
        self._params = self._resolved.params
        check_stack(
            xr.DataArray(
                np.broadcast_to(frames[:1], (MIN_FRAMES, *self.frame_shape)), dims=FRAME_DIMS
            ),
            self._params.replace(band=None),
        )
        self._correction = correction
        self._setup = pair_setup(self._params, self.frame_shape)
        for frame in frames:
            self._ingest(frame)

    def _grow(self, n: int) -> None:
        if n < len(self._shifts):
            return
        size = max(2 * len(self._shifts), 256)
        for name in ("_shifts", "_sigma", "_applied"):
            old = getattr(self, name)
            new = np.full((size, 2), np.nan)
            new[: len(old)] = old
            setattr(self, name, new)

    def _ingest(self, frame: np.ndarray) -> None:
        """Measure a frame's pairs, place it, refine the window, update the average."""
        n = self._table.n_frames
        self._grow(n)
        bad = unusable_frames(*frame_quality(frame[None]))
        if bad:
            self._unusable[n] = bad[0]
        prepared = prepare_frames(frame[None], bad, self._correction)
        # The frames as given: finish() screens them again as a batch run does.
        self._store.append(frame)
        self._frames[n % self.window] = prepared[0]
        scale = self._correction.scale
        spectrum = self._setup.spectra(prepared, scale=scale)
        if self._spectra is None:
            self._spectra = np.empty((self.band, *spectrum.shape[1:]), spectrum.dtype)
        earlier = np.arange(max(0, n - self.band), n)
        if len(earlier):
            found = measure_pairs(
                self._spectra,
                spectrum,
                earlier % self.band,
                np.zeros(len(earlier), int),
                self._setup,
            )
        else:
            found = PeakResult.concatenate([])
        self._spectra[n % self.band] = spectrum[0]
        noisy = np.array([n < self.warmup or n % _NOISE_EVERY == 0])
        split = half_shifts(
            prepared, self._setup, scale=scale, noise_frames=noisy, spectra=spectrum
        )[0]
        self._table.append(found, float(self._setup.energy(spectrum)[0]), split)
        self._place(n, earlier, found)
        if (n + 1) % self.refine_every == 0:
            self._refine()
        else:
            self._update_average(n, n + 1)
        self._forecast.record(self._shifts[: n + 1])

    def _excluded(self, k: int) -> bool:
        return k in self._unusable or k in self._bad or k in self._given.bad_frames

    def _place(self, n: int, earlier: np.ndarray, found: PeakResult) -> None:
        """The new frame's shift from its own pairs: consensus of ``s_k + r_kn``."""
        if self._excluded(n):
            return
        if n == 0:
            self._shifts[0] = 0.0
            return
        keep = found.ok & np.isfinite(self._shifts[earlier]).all(axis=1)
        keep &= np.array([not self._excluded(int(k)) for k in earlier], bool)
        if keep.any():
            estimates = self._shifts[earlier[keep]] + found.shifts[keep]
            self._shifts[n] = _consensus(estimates[None])[0]
            self._sigma[n] = self._typical_sigma

    def _refine(self) -> None:
        """Solve the last ``window`` frames again (batch analysis), older ones fixed."""
        stop = self._table.n_frames
        start = max(0, stop - self.window)
        if stop - start < MIN_FRAMES:
            self._update_average(start, stop)
            return
        split = self._table.split[start:stop].copy()
        # The noise sample of the uncertainties: the latest checkerboard splits measured,
        # spread over the window's frames (the split of a frame says nothing else).
        noise = self._table.split[:stop, 0]
        noise = noise[np.isfinite(noise).all(axis=1)][-(stop - start) :]
        split[:, 0] = np.resize(noise, (stop - start, 2)) if len(noise) else np.nan
        pairs = self._table.measurements(start, stop, self._resolved.lattice_basis, split)
        initial = {k - start: r for k, r in self._unusable.items() if start <= k < stop}
        listed = [b - start for b in self._given.bad_frames if start <= b < stop]
        params = self._params.replace(bad_frames=tuple(listed))
        try:
            with warnings.catch_warnings():
                # Said once, by finish(), as a batch run says it.
                warnings.simplefilter("ignore", RegistrationWarning)
                analysis = analyse_shift_matrix(pairs, params, initial)
        except TooFewFramesError:
            self._update_average(start, stop)
            return
        old = self._shifts[start:stop]
        new = analysis.shifts
        both = np.isfinite(old).all(axis=1) & np.isfinite(new).all(axis=1)
        # The window's solve is relative to its own mean: put it where the frames it
        # shares with the previous estimate were.
        offset = (old[both] - new[both]).mean(axis=0) if both.any() else np.zeros(2)
        self._shifts[start:stop] = new + offset
        self._sigma[start:stop] = analysis.uncertainty
        for k in range(start, stop):
            reason = analysis.bad_reason.get(k - start)
            if reason is None or k in self._unusable:
                self._bad.pop(k, None)
            else:
                self._bad[k] = reason
        if np.isfinite(analysis.uncertainty).any():
            self._typical_sigma = np.nanmedian(analysis.uncertainty, axis=0)
        self._update_average(start, stop)

    def _update_average(self, start: int, stop: int) -> None:
        """Re-shift the frames of ``[start, stop)`` whose shift moved beyond the tolerance."""
        current = self._shifts[start:stop].copy()
        for k in range(start, stop):
            if self._excluded(k):
                current[k - start] = np.nan
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
        # Linear: the old contribution is subtracted by adding the negated frame.
        stack = np.concatenate([frames[add], -frames[remove]])
        shifts = np.concatenate([current[changed][add], applied[changed][remove]])
        self._sum += shift_kernels.registered_sum(stack, shifts)
        self._applied[index] = current[changed]

    # -- what is known so far ------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """Frames added so far."""
        return self._table.n_frames + len(self._buffer)

    @property
    def params(self) -> RegistrationParams:
        """The parameters in force (automatic ones resolved once ``warmup`` frames came)."""
        return self._given if self._params is None else self._params

    @property
    def params_used(self) -> dict[str, Any]:
        """Every method parameter used, automatic ones resolved (not ``band``).

        ``register(stack, band=band, **params_used)`` on the same frames is the batch
        run :meth:`finish` reproduces. Before ``warmup`` frames have come the automatic
        parameters are still ``"auto"``/None.
        """
        params = self.params
        return {name: getattr(params, name) for name in _LIVE_PARAMS}

    def _public(self, values: np.ndarray) -> np.ndarray:
        """Internal positions relative to the mean of the frames used so far."""
        used = self._used()
        mean = self._shifts[: len(used)][used].mean(axis=0) if used.any() else np.zeros(2)
        return values - mean

    def _used(self) -> np.ndarray:
        n = self._table.n_frames
        used = np.isfinite(self._shifts[:n]).all(axis=1)
        for k in (*self._unusable, *self._bad, *self._given.bad_frames):
            if k < n:
                used[k] = False
        return used

    @property
    def shifts(self) -> np.ndarray:
        """``(n_frames, 2)`` running ``(dy, dx)`` of each frame, pixels.

        NaN for frames not measured yet or left out; relative to the mean of the frames
        used so far.
        """
        out = np.full((self.n_frames, 2), np.nan)
        used = self._used()
        out[: len(used)][used] = self._public(self._shifts[: len(used)][used])
        return out

    @property
    def shift_uncertainty(self) -> np.ndarray:
        """``(n_frames, 2)`` one-sigma of :attr:`shifts` (the last refinement's; NaN before one)."""
        out = np.full((self.n_frames, 2), np.nan)
        used = self._used()
        out[: len(used)][used] = self._sigma[: len(used)][used]
        return out

    @property
    def bad_reason(self) -> dict[int, str]:
        """Frames left out so far, and why."""
        n = self.n_frames
        reasons = {b: "listed in bad_frames" for b in self._given.bad_frames if b < n}
        reasons.update(self._bad)
        reasons.update(self._unusable)
        return dict(sorted(reasons.items()))

    @property
    def bad_frames(self) -> np.ndarray:
        """Indices of the frames left out so far."""
        return np.array(sorted(self.bad_reason), dtype=int)

    @property
    def average(self) -> np.ndarray:
        """The running registered average ``(ny, nx)``, uncropped (zeros before any frame)."""
        count = np.isfinite(self._applied[: self._table.n_frames]).all(axis=1).sum()
        if not count:
            return np.zeros(self.frame_shape)
        # The sum is aligned on the internal origin; the shifts are reported about the
        # mean of the used frames, so the average is moved there once.
        origin = self._public(np.zeros(2))
        return shift_kernels.registered_sum(self._sum[None], origin[None]) / count

    @property
    def coverage(self) -> np.ndarray:
        """Frames in the running average covering each pixel ``(ny, nx)``."""
        return shift_kernels.coverage(self.shifts, self.frame_shape)

    def forecast(self, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Predicted shifts of the next ``k`` frames, with a measured one-sigma.

        A line fitted to the last ``forecast_frames`` shifts, extrapolated; its sigma
        is the RMS of this forecaster's own past errors at the same horizon over the
        recent frames (:class:`~daskreg.live.forecast.DriftForecast`).

        Parameters
        ----------
        k : int, default 1
            Frames ahead.

        Returns
        -------
        predicted, sigma : ndarray, shape (k, 2)
            ``(dy, dx)`` in the gauge of :attr:`shifts`; NaN until frames are measured.
        """
        k = _check_int("k", k, 1, "e.g. forecast(1) for the next frame")
        n = self._table.n_frames
        internal = self._shifts[:n].copy()
        internal[~self._used()] = np.nan
        predicted, sigma = self._forecast.forecast(internal, k)
        return self._public(predicted), sigma

    def summary(self) -> dict[str, Any]:
        """Numbers for a live status line.

        Returns
        -------
        dict
            ``frames`` (added), ``bad_frames`` (count), ``drift`` (px from the first used
            frame to the last), ``velocity`` (px per frame, forecast), ``rate`` (frames
            per second over the recent adds), ``sigma`` (median one-sigma of the shifts,
            px), ``next`` (forecast shift of the next frame, px) and ``next_sigma``.
        """
        shifts = self.shifts
        valid = shifts[np.isfinite(shifts).all(axis=1)]
        drift = float(np.linalg.norm(valid[-1] - valid[0])) if len(valid) else float("nan")
        times = self._times[-_RATE_FRAMES:]
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
        predicted, sigma = self.forecast(2)
        sigmas = self.shift_uncertainty
        finite = np.isfinite(sigmas).all(axis=1)
        return {
            "frames": self.n_frames,
            "bad_frames": len(self.bad_reason),
            "drift": drift,
            "velocity": float(np.linalg.norm(predicted[1] - predicted[0])),
            "rate": float(rate),
            "sigma": float(np.median(sigmas[finite])) if finite.any() else float("nan"),
            "next": predicted[0].tolist(),
            "next_sigma": sigma[0].tolist(),
        }

    # -- the end -------------------------------------------------------------------------
    def finish(self) -> RegistrationResult:
        """The batch result on every frame added: ``register(stack, band=band, **params_used)``.

        The pair measurements made live are reused; the batch analysis (robust solve,
        bad frames, uncertainties) and the average run on all of them, with the lattice
        and the half-frame noise sample a batch run takes from the whole series. Should
        the whole series' scale or hot pixels differ from those of the warm-up frames,
        every pair is measured again from the kept frames (:attr:`remeasured`), so the
        result is still the batch one. A series no longer than the band registers all
        pairs (``band=None``), as a batch run must.

        Returns
        -------
        RegistrationResult

        Raises
        ------
        TooFewFramesError
            Fewer than 3 frames were added.
        """
        if self._setup is None:
            if self.n_frames < MIN_FRAMES:
                raise TooFewFramesError(
                    f"a registration needs at least {MIN_FRAMES} frames; {self.n_frames} were "
                    "added. Add more frames before finish()"
                )
            self._start()
        frames = self._store.frames()
        n = len(frames)
        stack = xr.DataArray(
            frames,
            dims=FRAME_DIMS,
            coords={d: np.arange(s) for d, s in zip(FRAME_DIMS, frames.shape, strict=True)},
        )
        band = self.band if self.band < n - 1 else None
        finishing = _Finish(stack, self, band=band, **self.params_used)
        return finishing.run()


class _Finish(Registration):
    """The batch flow on the kept frames, its pair stage replaced by the live one's."""

    def __init__(self, stack: xr.DataArray, live: LiveRegistration, **params: Any) -> None:
        super().__init__(stack, **params)
        self._live = live

    def _measure(self):
        if self._raw is not None:
            return self._raw
        live = self._live
        loaded, resolved = self._load(), self._resolve()
        same = loaded.correction.scale == live._correction.scale and np.array_equal(
            loaded.correction.hot_pixels, live._correction.hot_pixels
        )
        if not same:
            live.remeasured = True
            return super()._measure()
        n = self.n_frames
        # A batch run measures the checkerboard noise on its sample of frames only.
        split = live._table.split[:n].copy()
        split[:, 0] = np.nan
        sample = autoparams.sample_indices(n)
        frames = loaded.frames[sample]
        scale = loaded.correction.scale
        spectra = live._setup.spectra(frames, scale=scale)
        split[sample, 0] = half_shifts(frames, live._setup, scale=scale, spectra=spectra)[:, 0]
        self._raw = live._table.measurements(0, n, resolved.lattice_basis, split)
        self.timings["pairs"] = 0.0
        return self._raw


def _check_int(name: str, value: Any, minimum: int, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(
            f"{name} must be an integer >= {minimum}; got {value!r}. "
            + (f"Pass {example}" if example else f"Pass e.g. {name}={max(minimum, 16)}")
        )
    return int(value)


def _check_positive(name: str, value: Any) -> float:
    if not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
        raise ParameterError(f"{name} must be a positive number of pixels; got {value!r}")
    return float(value)


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        ny = nx = -1
    if ny < 4 or nx < 4:
        raise StackShapeError(
            f"frame_shape must be (ny, nx) with at least 4 pixels each; got {shape!r}. "
            "Pass the shape of one frame, e.g. frame_shape=frame.shape"
        )
    return ny, nx
