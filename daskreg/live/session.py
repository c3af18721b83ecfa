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
from typing import Any

import numpy as np
import xarray as xr

from daskreg import autoparams
from daskreg.errors import (
    ParameterError,
    StackDtypeError,
    TooFewFramesError,
)
from daskreg.kernels import shift as shift_kernels
from daskreg.live._checks import check_frame, check_int, check_positive, check_shape
from daskreg.live.average import RunningAverage
from daskreg.live.finish import finish_batch
from daskreg.live.forecast import DriftForecast
from daskreg.live.pairs import ClusterPairs, LocalPairs, pair_work
from daskreg.live.running import RunningShifts
from daskreg.live.store import FrameStore, PairTable
from daskreg.method.pairs import half_shifts, pair_setup
from daskreg.method.screening import (
    initial_bad_frames,
    prepare_frames,
    survey_frames,
    unusable_frames,
)
from daskreg.params import RegistrationParams
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
        Frames between refinements (default ``max(1, band // 8)``); in between, a new
        frame is placed from its own pairs (the consensus of ``s_k + r_kn``). The
        running average takes in the new and the moved frames at each refinement.
    tolerance : float, default 0.05
        Pixels: a refinement re-shifts a frame in the running average only when its
        shift moved by more than this.
    forecast_frames : int, default 12
        Last shifts the drift forecast's line is fitted to.
    store_dir : str or path, optional
        Folder of the temporary file holding every frame for :meth:`finish` (default:
        the system temporary folder). Removed with the object.
    client : distributed.Client, optional
        Measure each new frame's pairs on this Dask cluster (one task per frame, its
        spectra kept there: :mod:`daskreg.live.pairs`); the same numbers as in-process.
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

    One thread at a time: ``add`` and the readers share state without locks. The
    temporary file goes with :meth:`close` (or the end of a ``with`` block, or the
    object).

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
        client: Any = None,
        **params: Any,
    ) -> None:
        check_names(params, _LIVE_PARAMS, "LiveRegistration()")
        if params.get("frames") is not None:
            raise ParameterError(
                f"frames={params['frames']!r} selects frames of a finished series; a live "
                "registration uses every frame added. Leave frames out (pass bad_frames=[...] "
                "to leave some out)"
            )
        check_int("band", band, 1, "e.g. band=32 (each new frame pairs with 32 before it)")
        self.band = int(band)
        self.frame_shape = check_shape(frame_shape)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise StackDtypeError(
                f"dtype={self.dtype} cannot hold registered frames; pass dtype=np.float32 "
                "(the default) or np.float64"
            )
        self.warmup = check_int(
            "warmup", autoparams.SAMPLE_FRAMES if warmup is None else warmup, MIN_FRAMES, ""
        )
        self.window = check_int("window", band + 1 if window is None else window, 3, "")
        self.refine_every = check_int(
            "refine_every", max(1, band // 8) if refine_every is None else refine_every, 1, ""
        )
        if self.refine_every > self.window:
            raise ParameterError(
                f"refine_every={self.refine_every} is longer than window={self.window}: frames "
                "would leave the window before being solved; pass refine_every <= window"
            )
        self.tolerance = check_positive("tolerance", tolerance)
        self._given = RegistrationParams(band=self.band, **params)
        # Frame size against the fit window, as a batch run checks it (no memory used).
        zeros = np.broadcast_to(np.zeros((), self.dtype), (MIN_FRAMES, *self.frame_shape))
        check_stack(xr.DataArray(zeros, dims=FRAME_DIMS), self._given.replace(band=None))
        self._forecast = DriftForecast(check_int("forecast_frames", forecast_frames, 2, ""))
        self._store = FrameStore(self.frame_shape, self.dtype, store_dir)
        self._table = PairTable(self.band)
        self._buffer: list[np.ndarray] = []
        self._times: list[float] = []
        self._params: RegistrationParams | None = None
        self._resolved: autoparams.Resolved | None = None
        self._setup = None
        self._correction = None
        self._running = RunningShifts(self._given.bad_frames)
        self._average = RunningAverage(self.frame_shape, self.window, self.dtype, self.tolerance)
        self._client = client
        self._pairs: LocalPairs | ClusterPairs | None = None
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
        strict = not self._given.detect_bad_frames
        frame = check_frame(frame, self.frame_shape, self.dtype, self.n_frames, strict)
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
        sample = prepared[autoparams.sample_indices(len(frames))]
        self._resolved = autoparams.resolve(self._given, sample, scale=correction.scale)
        self._params = self._resolved.params
        check_stack(
            xr.DataArray(
                np.broadcast_to(frames[:1], (MIN_FRAMES, *self.frame_shape)), dims=FRAME_DIMS
            ),
            self._params.replace(band=None),
        )
        self._correction = correction
        self._setup = pair_setup(self._params, self.frame_shape)
        self._pairs = pair_work(self.band, self._setup, self._client)
        for frame in frames:
            self._ingest(frame)

    def _ingest(self, frame: np.ndarray) -> None:
        """Measure a frame's pairs, place it, refine the window, update the average."""
        n = self._table.n_frames
        running = self._running
        running.grow(n)
        bad = unusable_frames(*frame_quality(frame[None]))
        if bad:
            running.unusable[n] = bad[0]
        prepared = prepare_frames(frame[None], bad, self._correction)
        # The frames as given: finish() screens them again as a batch run does.
        self._store.append(frame)
        self._average.keep(n, prepared[0])
        scale = self._correction.scale
        spectrum, parts = self._setup.spectra(prepared, scale=scale, cuts=True)
        earlier = np.arange(max(0, n - self.band), n)
        found = self._pairs.measure(n, spectrum)
        noisy = np.array([n < self.warmup or n % _NOISE_EVERY == 0])
        split = half_shifts(
            prepared, self._setup, scale=scale, noise_frames=noisy, spectra=spectrum, parts=parts
        )[0]
        self._table.append(found, float(self._setup.energy(spectrum)[0]), split)
        running.place(n, earlier, found)
        if (n + 1) % self.refine_every == 0:
            # The average follows at each refinement, for every frame that moved or
            # came since: one inverse transform for all of them.
            start = max(0, n + 1 - self.window)
            running.refine(self._table, start, self._params, self._resolved.lattice_basis)
            self._update_average(start, n + 1)
        self._forecast.record(running.shifts[: n + 1])

    def _update_average(self, start: int, stop: int) -> None:
        current = self._running.shifts[start:stop].copy()
        current[[self._running.excluded(k) for k in range(start, stop)]] = np.nan
        self._average.update(start, current)

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
        used = self._running.used(self._table.n_frames)
        shifts = self._running.shifts[: len(used)][used]
        return values - (shifts.mean(axis=0) if len(shifts) else np.zeros(2))

    def _per_frame(self, values: np.ndarray) -> np.ndarray:
        """``(n_frames, 2)``: ``values`` of the used frames, NaN for the others."""
        out = np.full((self.n_frames, 2), np.nan)
        used = self._running.used(self._table.n_frames)
        out[: len(used)][used] = values[: len(used)][used]
        return out

    @property
    def shifts(self) -> np.ndarray:
        """``(n_frames, 2)`` running ``(dy, dx)`` of each frame, pixels.

        NaN for frames not measured yet or left out; relative to the mean of the frames
        used so far.
        """
        return self._per_frame(self._public(self._running.shifts))

    @property
    def shift_uncertainty(self) -> np.ndarray:
        """``(n_frames, 2)`` one-sigma of :attr:`shifts` (the last refinement's; NaN before one)."""
        return self._per_frame(self._running.sigma)

    @property
    def bad_reason(self) -> dict[int, str]:
        """Frames left out so far, and why."""
        return self._running.reasons(self.n_frames)

    @property
    def bad_frames(self) -> np.ndarray:
        """Indices of the frames left out so far."""
        return np.array(sorted(self.bad_reason), dtype=int)

    @property
    def average(self) -> np.ndarray:
        """The running registered average ``(ny, nx)``, uncropped (zeros before any frame)."""
        n = self._table.n_frames
        # Frames placed since the last refinement join it now.
        self._update_average(max(0, n - self.window), n)
        # The shifts are reported about the mean of the used frames.
        return self._average.value(self._public(np.zeros(2)))

    @property
    def coverage(self) -> np.ndarray:
        """Frames in the running average covering each pixel ``(ny, nx)``.

        Counted afresh from the shifts: ``n_frames * ny * nx`` operations.
        """
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
        k = check_int("k", k, 1, "e.g. forecast(1) for the next frame")
        n = self._table.n_frames
        internal = self._running.shifts[:n].copy()
        internal[~self._running.used(n)] = np.nan
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
    def close(self) -> None:
        """Remove the temporary file of the kept frames (:meth:`finish` needs it)."""
        self._store.close()
        if isinstance(self._pairs, ClusterPairs):
            self._pairs.close()

    def __enter__(self) -> LiveRegistration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def finish(self) -> RegistrationResult:
        """The batch result on every frame added: ``register(stack, band=band, **params_used)``.

        The pair measurements made live are reused; the batch analysis (robust solve,
        bad frames, uncertainties) and the average run on all of them, with the lattice
        and the half-frame noise sample a batch run takes from the whole series. Should
        the whole series' scale or hot pixels differ from those of the warm-up frames,
        every pair is measured again from the kept frames (:attr:`remeasured`), so the
        result is still the batch one. A series no longer than the band registers all
        pairs (``band=None``), as a batch run must. The frames are those kept (in
        ``dtype``); more frames may be added after, and ``finish`` called again.

        Its cost is a batch run's without the pair stage: the analysis of every pair and
        one Fourier shift per frame for the average.

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
        result, self.remeasured = finish_batch(
            self._store.frames(),
            self._table,
            self._setup,
            self._correction,
            self.band,
            self.params_used,
        )
        return result
