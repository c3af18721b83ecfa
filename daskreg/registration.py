"""Step-by-step registration of one stack in memory: :class:`Registration`.

It keeps the parameters and what each step has computed (dropping what a parameter
change invalidates) and labels the outputs; the steps themselves are the numpy
engine's (:mod:`daskreg.method.local`). :func:`daskreg.register` runs it to the end
for an in-memory stack.

References
----------
Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI 10.1016/j.ultramic.2018.04.008:
the method, step by step.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import xarray as xr

from daskreg import autoparams
from daskreg import progress as display
from daskreg.labelling import build_result, pair_coords
from daskreg.method import local
from daskreg.method.analyse import MatrixAnalysis, analyse_shift_matrix
from daskreg.method.masks import build_mask
from daskreg.method.measurements import PairMeasurements
from daskreg.method.pairs import pair_indices
from daskreg.params import MEASURE_PARAMS, RegistrationParams
from daskreg.result import RegistrationResult
from daskreg.signatures import PARAM_NAMES, check_names, takes_params
from daskreg.stack import as_stack
from daskreg.validate import check_stack
from daskreg.views import example_views

__all__ = ["Registration"]


class Registration:
    """Step-by-step registration of one stack, in memory (the tutorial's flow).

    Parameters
    ----------
    stack : array_like or xarray.DataArray
        Frames on axis 0 (numpy), or a DataArray with dims ``(frame, y, x)``; anything
        :func:`daskreg.open_stack` accepts.
    mask, n, ..., precision
        The method parameters, keyword-only, as for :func:`register` (the signature
        lists them with their defaults).

    Attributes
    ----------
    progress : bool
        Show a text bar on stderr counting the pairs measured and the frames averaged
        (default False; :func:`daskreg.register` sets it from its ``progress``).

    References
    ----------
    .. [1] B. H. Savitzky et al., Ultramicroscopy 191, 56-65 (2018),
       DOI 10.1016/j.ultramic.2018.04.008 (the method and its tutorial's steps).

    Examples
    --------
    >>> from daskreg.synthetic import lattice_series
    >>> series = lattice_series(6, (96, 96), seed=1)
    >>> reg = Registration(series.stack)
    >>> mask = reg.set_mask("hann", n=4)
    >>> matrix = reg.find_shifts(find_maxima="gf")
    >>> scores = reg.find_outliers(threshold=2.0)
    >>> result = reg.average()
    >>> result.shifts.shape
    (6, 2)
    """

    progress: bool = False

    @takes_params
    def __init__(self, stack: Any, **params: Any) -> None:
        self._params = RegistrationParams(**params)
        self.stack = as_stack(stack)
        check_stack(self.stack, self._params)
        # What each step computed, dropped by set_params when a change invalidates it.
        self._resolved: autoparams.Resolved | None = None
        self._loaded: local.LoadedFrames | None = None
        self._raw: PairMeasurements | None = None
        self._analysis: MatrixAnalysis | None = None
        self.timings: dict[str, float] = {}

    # -- parameters --------------------------------------------------------------------
    def set_params(self, **changes: Any) -> None:
        """Change some method parameters; the steps they affect run again when needed.

        Parameters
        ----------
        **changes
            Any of the method parameters (:func:`register` lists them). A change of
            those that shape the measured shift matrix (mask, correlation, maximum
            finder, band, precision: :data:`daskreg.params.MEASURE_PARAMS`) discards
            the measured pairs; any change discards the analysis.

        Raises
        ------
        ParameterError
            An unknown name (naming the valid ones) or an invalid value; nothing is
            changed then.
        """
        check_names(changes, PARAM_NAMES, "Registration")
        self._params = self._params.replace(**changes)
        check_stack(self.stack, self._params)
        if MEASURE_PARAMS.intersection(changes):
            self._raw = None
            self._resolved = None
        self._analysis = None

    @property
    def params(self) -> RegistrationParams:
        """The parameters in force, automatic ones filled in from the frames.

        ``mask="auto"``, ``sigma_guess=None`` and ``window_radius=None`` are chosen from
        a sample of the frames (:func:`daskreg.autoparams.resolve`) the first time they
        are needed; :attr:`choices` says why.
        """
        changes = self._resolve().changes
        return self._params.replace(**changes) if changes else self._params

    @property
    def choices(self) -> dict[str, str]:
        """For each automatic parameter, what was chosen from the data and why."""
        return dict(self._resolve().notes)

    def _resolve(self) -> autoparams.Resolved:
        if self._resolved is None:
            loaded = self._load()
            index = autoparams.sample_indices(self.n_frames, self._params.frames)
            self._resolved = autoparams.resolve(
                self._params, loaded.frames, scale=loaded.correction.scale, index=index
            )
        return self._resolved

    @property
    def n_frames(self) -> int:
        """Number of frames in the stack."""
        return int(self.stack.sizes["frame"])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of one frame."""
        return int(self.stack.sizes["y"]), int(self.stack.sizes["x"])

    def set_mask(
        self,
        mask: str | np.ndarray = "bandpass",
        n: float = 4.0,
        *,
        n1: float | None = None,
        n2: float | None = None,
        theta: float = 0.0,
    ) -> xr.DataArray:
        """Choose the Fourier mask; returns it centred, for display.

        Parameters
        ----------
        mask : str or ndarray
            A kind (``"bandpass"``, ``"lowpass"``, ``"hann"``, ``"hamming"``,
            ``"blackman"``, ``"gaussian"``, ``"none"``), ``"elliptical"`` (with ``n1``,
            ``n2``, ``theta``), or an array on the centred grid of
            :func:`daskreg.fourier_grids`.
        n : float
            Cutoff: features smaller than about ``n`` pixels are ignored.
        n1, n2, theta : float
            Elliptical Gaussian: feature sizes along its axes, angle (radians) of the
            ``n1`` axis from +x towards +y.
        """
        self.set_params(mask=mask, n=n, n1=n1, n2=n2, theta=theta)
        return self.fourier_mask

    @property
    def fourier_mask(self) -> xr.DataArray:
        """The current mask on the centred grid, dims (ky, kx) in cycles per frame."""
        full = build_mask(self.params, self.frame_shape)
        ny, nx = self.frame_shape
        return xr.DataArray(
            np.fft.fftshift(full),
            dims=("ky", "kx"),
            coords={
                "ky": np.fft.fftshift(np.fft.fftfreq(ny) * ny),
                "kx": np.fft.fftshift(np.fft.fftfreq(nx) * nx),
            },
            name="fourier_mask",
        )

    def set_bad_frames(self, bad_frames: Any) -> None:
        """Frames to leave out (indices), on top of those found automatically."""
        self.set_params(bad_frames=tuple(int(b) for b in np.atleast_1d(bad_frames)))

    def set_frames(self, start: int, stop: int) -> None:
        """Use only frames ``start <= i < stop`` (the reference's ``set_nz``)."""
        self.set_params(frames=(start, stop))

    # -- steps -------------------------------------------------------------------------
    def _load(self) -> local.LoadedFrames:
        if self._loaded is None:
            start = time.perf_counter()
            self._loaded = local.load_frames(self.stack.values, self._params)
            self.timings["load"] = time.perf_counter() - start
        return self._loaded

    @property
    def frames(self) -> np.ndarray:
        """The frames as they are correlated and averaged, shape ``(frame, y, x)``.

        Hot pixels repaired and unusable frames zeroed
        (:func:`daskreg.method.screening.prepare_frames`), in a private copy when
        anything was changed: the stack itself is untouched. Read them, do not write.
        """
        return self._load().frames

    def find_shifts(self, **params: Any) -> xr.DataArray:
        """Correlate every pair (or a band of pairs) and measure the raw shift matrix.

        Parameters
        ----------
        **params
            Any of ``correlation``, ``find_maxima``, ``num_peaks``, ``sigma_guess``,
            ``window_radius``, ``num_iter``, ``min_window_frac``, ``band``,
            ``precision`` and the mask parameters.

        Returns
        -------
        xarray.DataArray
            The raw shift matrix, dims (frame_i, frame_j, axis); with a band narrower
            than the series, (frame_i, offset, axis) (see :func:`daskreg.labelling.pair_coords`).
        """
        if params:
            self.set_params(**params)
        return self._matrix_da(self._measure().matrix, "shift_matrix")

    def _measure(self) -> PairMeasurements:
        if self._raw is None:
            params = self.params
            loaded = self._load()
            start = time.perf_counter()
            n_pairs = len(pair_indices(self.n_frames, params.band)[0])
            with display.Counter("pairs", n_pairs, show=self.progress) as counter:
                self._raw = local.measure(
                    loaded.frames,
                    params,
                    loaded.correction.scale,
                    self._resolve().lattice_basis,
                    on_batch=counter.advance,
                )
            self._analysis = None
            self.timings["pairs"] = time.perf_counter() - start
        return self._raw

    def find_outliers(self, method: str = "transitivity", **params: Any) -> xr.DataArray:
        """Find outlier pairs and return the transitivity scores (NaN for ``"nn"``).

        ``method`` is ``"transitivity"`` (``threshold``, ``maxpaths``) or ``"nn"``
        (``max_shift``).
        """
        self.set_params(outliers=method, **params)
        return self._matrix_da(self.analysis.scores, "transitivity_score")

    @property
    def analysis(self) -> MatrixAnalysis:
        """Outliers, bad frames, corrected matrix and shifts for the current parameters.

        Measured (pairs first) the first time it is asked for after a change; see
        :class:`daskreg.method.analyse.MatrixAnalysis`.
        """
        self._measure()
        if self._analysis is None:
            start = time.perf_counter()
            self._analysis = analyse_shift_matrix(self._raw, self.params, self._loaded.initial_bad)
            self.timings["solve"] = time.perf_counter() - start
        return self._analysis

    def correct(self) -> xr.DataArray:
        """Refill outlier elements from transitivity; returns the corrected matrix."""
        return self._matrix_da(self.analysis.corrected, "shift_matrix_corrected")

    def average(self, crop: bool | None = None) -> RegistrationResult:
        """Shift the used frames by the Fourier shift theorem, average, and crop.

        Parameters
        ----------
        crop : bool, optional
            Crop to the region every frame covers (default: the ``crop`` parameter).

        Returns
        -------
        RegistrationResult
        """
        if crop is not None:
            self.set_params(crop=crop)
        analysis = self.analysis
        frames = self.frames
        start = time.perf_counter()
        with display.Counter("frames", len(frames), show=self.progress) as counter:
            analysis, average = local.refined_average(frames, analysis, self.params)
            counter.advance(len(frames))
        self.timings["average"] = time.perf_counter() - start
        # The steps may run apart (the tutorial's flow): the total is their sum, recorded
        # once here as the Dask engine records its wall time (daskreg.summary.TOTAL).
        self.timings["total"] = sum(v for k, v in self.timings.items() if k != "total")
        first_two = np.flatnonzero(analysis.used)[:2]
        examples = example_views(*frames[first_two], self.params)
        result = build_result(
            self.stack,
            self.params,
            self._raw,
            analysis,
            average,
            self.timings,
            examples,
            correction=self._loaded.correction,
        )
        result.dataset.attrs.update(self._resolve().attrs())
        return result

    def run(self) -> RegistrationResult:
        """All steps with the current parameters."""
        return self.average()

    # -- labelled outputs --------------------------------------------------------------
    def _matrix_da(self, values: np.ndarray, name: str) -> xr.DataArray:
        pair_dims, coords = pair_coords(self._raw.layout)
        dims: tuple[str, ...] = pair_dims
        if values.ndim == 3:
            dims += ("axis",)
            coords["axis"] = ["y", "x"]
        return xr.DataArray(values, dims=dims, coords=coords, name=name)
