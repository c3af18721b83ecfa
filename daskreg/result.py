"""The outcome of a registration, as labelled xarray objects.

:class:`RegistrationResult` wraps one :class:`xarray.Dataset` (``result.dataset``)
holding shifts, shift matrices, outlier mask, bad frames, the average and its
coverage; the processing parameters, crop bounds, calibration and version are in its
attrs. Everything needed to reproduce the run is in that one Dataset.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from daskreg._version import __version__
from daskreg.apply import apply_shifts
from daskreg.errors import FileFormatError, RegistrationWarning
from daskreg.io.average_tif import write_average_tif
from daskreg.io.hyperspy_out import save_hspy, to_signal2d
from daskreg.io.paths import refuse_source
from daskreg.io.results import RESULT_EXTENSIONS, load_dataset, save_dataset
from daskreg.kernels.detector import FrameCorrection
from daskreg.kernels.layout import PairLayout
from daskreg.kernels.shift import CropBounds, coverage, crop_bounds
from daskreg.method.analyse import MatrixAnalysis
from daskreg.method.measurements import PairMeasurements
from daskreg.params import RegistrationParams
from daskreg.summary import ResultSummary, summarize

__all__ = ["RegistrationResult", "build_result", "load_result", "pair_coords", "save_result"]

_CROP_KEYS = ("ymin", "ymax", "xmin", "xmax")


class RegistrationResult:
    """Shifts, matrices and average of one registration.

    Attributes
    ----------
    dataset : xarray.Dataset
        Variables ``shifts`` (frame, axis), ``shift_uncertainty`` (frame, axis),
        ``bad_frames`` (frame; True = not used), ``shift_matrix`` and
        ``shift_matrix_corrected`` (frame_i, frame_j, axis), ``outliers``,
        ``measured``, ``fit_ok``, ``transitivity_score`` (frame_i, frame_j),
        ``average_full`` and ``coverage`` (y, x). Attrs: ``params`` (JSON), crop
        bounds ``ymin, ymax, xmin, xmax``, ``crop``, ``bad_frame_reasons`` (JSON),
        ``pixel_size``, ``unit``, ``daskreg_version``, ``pair_layout``. With a band
        of pairs narrower than the series (``pair_layout="band"``) the pair matrices
        have dims (frame_i, offset[, axis]) instead, element ``[i, o]`` being the pair
        ``(i, i + o)`` (see :func:`pair_coords`).

    Notes
    -----
    ``shifts[i]`` is the displacement ``(dy, dx)`` in pixels of frame ``i`` relative to
    the mean position of the used frames: frame ``i`` shows the specimen moved by
    ``+shifts[i]``, and the average shifts it by ``-shifts[i]``.
    """

    def __init__(self, dataset: xr.Dataset) -> None:
        self.dataset = dataset

    def __repr__(self) -> str:
        s = self.summary()
        span = s.drift_range
        return (
            f"<RegistrationResult: {s.n_used}/{s.n_frames} frames used, "
            f"{s.n_outliers} outlier pairs, shift range "
            f"dy {span[0]:.2f} px, dx {span[1]:.2f} px, crop {tuple(s.crop)}>"
        )

    def summary(self) -> ResultSummary:
        """The registration in numbers: frames used and left out, outliers, drift, crop.

        Returns
        -------
        ResultSummary
            What the command line, the report and the ``repr`` print (see
            :class:`daskreg.summary.ResultSummary`).

        Examples
        --------
        >>> from daskreg import register
        >>> from daskreg.synthetic import lattice_series
        >>> summary = register(lattice_series(5, (64, 64)).stack, mask="hann", n=4).summary()
        >>> summary.n_used, summary.n_pairs
        (5, 10)
        """
        return summarize(self.dataset)

    # -- labelled views -------------------------------------------------------------
    @property
    def shifts(self) -> xr.DataArray:
        """Displacement of each frame, dims (frame, axis=[y, x]), pixels; NaN if unused."""
        return self.dataset["shifts"]

    @property
    def shift_uncertainty(self) -> xr.DataArray:
        """One-sigma uncertainty of the shifts from the pair residuals, pixels."""
        return self.dataset["shift_uncertainty"]

    @property
    def shift_matrix(self) -> xr.DataArray:
        """Raw measured ``R[i, j] = s_j - s_i``, dims (frame_i, frame_j, axis)."""
        return self.dataset["shift_matrix"]

    @property
    def shift_matrix_corrected(self) -> xr.DataArray:
        """Shift matrix with outliers refilled from transitivity."""
        return self.dataset["shift_matrix_corrected"]

    @property
    def outliers(self) -> xr.DataArray:
        """True where a pair was rejected, dims (frame_i, frame_j)."""
        return self.dataset["outliers"]

    @property
    def bad_frames(self) -> xr.DataArray:
        """True where a frame is not used, dims (frame,)."""
        return self.dataset["bad_frames"]

    @property
    def bad_frame_reasons(self) -> dict[int, str]:
        """Why each unused frame was left out."""
        return {int(k): v for k, v in json.loads(self.dataset.attrs["bad_frame_reasons"]).items()}

    @property
    def params(self) -> RegistrationParams:
        """The processing parameters (a user mask array is not stored)."""
        return RegistrationParams.from_dict(json.loads(self.dataset.attrs["params"]))

    @property
    def crop(self) -> CropBounds:
        """Region ``[ymin:ymax, xmin:xmax]`` of the average that every used frame covers."""
        return CropBounds(*(int(self.dataset.attrs[k]) for k in _CROP_KEYS))

    @property
    def average_full(self) -> xr.DataArray:
        """The uncropped average, dims (y, x)."""
        return self.dataset["average_full"]

    @property
    def coverage(self) -> xr.DataArray:
        """Number of used frames covering each pixel of the uncropped average."""
        return self.dataset["coverage"]

    @property
    def average(self) -> xr.DataArray:
        """The average, cropped to :attr:`crop` unless the run had ``crop=False``."""
        if not self.dataset.attrs.get("crop", 1):
            return self.average_full
        b = self.crop
        return self.average_full.isel(y=slice(b.ymin, b.ymax), x=slice(b.xmin, b.xmax))

    # -- outputs ----------------------------------------------------------------------
    def description(self, *, result_store: str | os.PathLike | None = None) -> dict[str, Any]:
        """Provenance document: parameters, shifts, bad frames, crop, calibration.

        Parameters
        ----------
        result_store : path-like, optional
            Where the whole result is saved (:func:`save_result`), recorded as
            ``result_store``: the per-pair data (shift matrices, outliers, measured
            pairs, N x N or N x band) are there, not in this document, whose size grows
            only linearly with the frames.
        """
        ds = self.dataset
        attrs = ds.attrs
        return {
            "params": json.loads(attrs["params"]),
            "crop": dict(zip(_CROP_KEYS, self.crop, strict=True)),
            "cropped": bool(attrs.get("crop", 1)),
            "crop_not_applied": attrs.get("crop_not_applied"),
            "hot_pixel_yx": json.loads(attrs.get("hot_pixel_yx", "[]")),
            "n_frames": int(ds.sizes["frame"]),
            "frame_shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
            "pixel_size": attrs.get("pixel_size"),
            "unit": attrs.get("unit"),
            "source": attrs.get("source"),
            "threshold_used": attrs.get("threshold_used"),
            "bad_frames": np.flatnonzero(ds["bad_frames"].values).tolist(),
            "bad_frame_reasons": self.bad_frame_reasons,
            "shifts": ds["shifts"].values,
            "shift_uncertainty": ds["shift_uncertainty"].values,
            "n_outlier_pairs": self.summary().n_outliers,
            "result_store": None if result_store is None else str(result_store),
            "timings": json.loads(attrs.get("timings", "{}")),
        }

    def save_tif(
        self, path: str | os.PathLike, *, result_store: str | os.PathLike | None = None
    ) -> Path:
        """Save the average (cropped unless ``crop=False``) as float32 ImageJ TIFF.

        ImageJ/Fiji read its pixel size and unit; the JSON of :meth:`description` is the
        image's ImageJ ``Info``; read both back with :func:`daskreg.read_average_tif`.
        ``result_store`` names where the whole result is saved (see :meth:`description`).
        """
        attrs = self.dataset.attrs
        refuse_source(path, attrs, f"save_tif({str(path)!r})")
        pixel = attrs.get("pixel_size")
        return write_average_tif(
            path,
            self.average.values,
            self.description(result_store=result_store),
            pixel_size=tuple(pixel) if pixel is not None else None,
            unit=attrs.get("unit"),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Save by extension: ``.tif``/``.tiff`` the average (:meth:`save_tif`), ``.zarr``
        or ``.nc`` the whole result (:func:`save_result`), ``.hspy``
        the average as a HyperSpy signal. Every file is written atomically.

        Raises
        ------
        FileFormatError
            Any other extension.
        OutputPathError
            ``path`` is, holds or lies inside the stack the result was registered from
            (its ``source``).
        """
        refuse_source(path, self.dataset.attrs, f"save({str(path)!r})")
        suffix = Path(path).suffix.lower()
        if suffix in (".tif", ".tiff"):
            return self.save_tif(path)
        if suffix == ".hspy":
            return save_hspy(self._calibrated_average(), path, title="daskreg average")
        if suffix in RESULT_EXTENSIONS:
            return save_result(self, path)
        raise FileFormatError(
            f"cannot save a result as {str(path)!r}: the extension {suffix or '(none)'!r} is "
            "not one of .tif (average), .zarr or .nc (whole result), .hspy (HyperSpy)"
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> RegistrationResult:
        """Read a result saved as ``.zarr`` or ``.nc`` (:func:`daskreg.load_result`)."""
        return load_result(path)

    def to_hyperspy(self) -> Any:
        """The average (cropped unless ``crop=False``) as a calibrated HyperSpy Signal2D."""
        return to_signal2d(self._calibrated_average(), title="daskreg average")

    def _calibrated_average(self) -> xr.DataArray:
        attrs = self.dataset.attrs
        return self.average.assign_attrs(
            {key: attrs[key] for key in ("pixel_size", "unit", "source") if key in attrs}
        )

    def apply(
        self,
        other: Any,
        *,
        average: bool = True,
        frame_axis: int | str | None = None,
        scan_axes: tuple[int | str, int | str] | None = None,
        crop: bool | None = None,
        save_stack: str | os.PathLike | None = None,
    ) -> xr.DataArray:
        """Align another channel recorded with these frames, and average it.

        Parameters
        ----------
        other : array_like, xarray.DataArray, path or HyperSpy signal
            One frame per shift, scan axes of the registered frames' size: an ABF/BF
            series, a spectrum image (frame, y, x, energy), a 4D-STEM scan (frame,
            scan_y, scan_x, qy, qx).
        average : bool, default True
            Return the average (computed); ``False``: the aligned stack, lazily.
        frame_axis, scan_axes
            As for :func:`daskreg.apply_shifts`.
        crop : bool, optional
            Default: as the registration (the ``crop`` parameter).
        save_stack : path-like, optional
            Also write the aligned stack to this Zarr store.

        Returns
        -------
        xarray.DataArray
            See :func:`daskreg.apply_shifts`. Applied to the registered stack itself,
            the average equals :attr:`average`.
        """
        return apply_shifts(
            other,
            self.shifts.values,
            bad_frames=np.flatnonzero(self.bad_frames.values),
            frame_axis=frame_axis,
            scan_axes=scan_axes,
            crop=bool(self.dataset.attrs.get("crop", 1)) if crop is None else crop,
            frame_shape=(self.dataset.sizes["y"], self.dataset.sizes["x"]),
            average=average,
            save_stack=save_stack,
        )

    def save_report(
        self,
        path: str | os.PathLike,
        *,
        png_dir: str | os.PathLike | None = None,
        stack: Any = None,
    ) -> Path:
        """Write the multi-page PDF report (optionally a PNG per page).

        See :func:`daskreg.report.save_report`; ``stack`` (the registered frames) adds
        a parameter-sweep page.
        """
        from daskreg.report import save_report

        return save_report(self, path, png_dir=png_dir, stack=stack)


def save_result(
    result: RegistrationResult, path: str | os.PathLike, *, overwrite: bool = True
) -> Path:
    """Write a whole registration result to a Zarr v3 store or a NetCDF file, atomically.

    Parameters
    ----------
    result : RegistrationResult
    path : path-like
        Ends in ``.zarr`` (Zarr v3 directory store with consolidated metadata) or
        ``.nc`` (NetCDF-4 file).
    overwrite : bool, default True
        Replace an existing result at ``path``.

    Returns
    -------
    Path
        The written store or file; ``xarray.open_zarr`` or ``xarray.open_dataset`` read
        it as any other dataset.

    Raises
    ------
    FileFormatError
        ``path`` has another extension.
    OutputPathError
        The folder does not exist or is not writable, ``path`` exists and ``overwrite``
        is False, ``path`` is a directory that is not a Zarr store (never deleted), or
        ``path`` is, holds or lies inside the result's source stack.

    Notes
    -----
    The encoding (attributes NetCDF cannot hold as they are) is described in
    :mod:`daskreg.io.results`. A failed write leaves neither a partial store nor a
    damaged previous one.

    Examples
    --------
    >>> import tempfile, daskreg
    >>> from daskreg.synthetic import lattice_series
    >>> result = daskreg.register(lattice_series(6, (64, 64), seed=1).stack, window_radius=4)
    >>> folder = tempfile.mkdtemp()
    >>> saved = save_result(result, f"{folder}/run.nc")
    >>> bool((load_result(saved).shifts == result.shifts).all())
    True
    """
    refuse_source(path, result.dataset.attrs, f"save_result({str(path)!r})")
    return save_dataset(result.dataset, path, overwrite=overwrite)


def load_result(path: str | os.PathLike) -> RegistrationResult:
    """Read a result written by :func:`save_result` (or ``RegistrationResult.save``).

    Parameters
    ----------
    path : path-like
        A ``.zarr`` store or ``.nc`` file.

    Returns
    -------
    RegistrationResult
        Identical to the saved one (values, dtypes, coordinates and attributes), held
        in memory; the file is closed.

    Raises
    ------
    StackFileNotFoundError
        ``path`` does not exist.
    FileFormatError
        Wrong extension, unreadable file, or a dataset that is not a daskreg result.
    """
    return RegistrationResult(load_dataset(path))


def build_result(
    stack: xr.DataArray,
    params: RegistrationParams,
    pairs: PairMeasurements,
    analysis: MatrixAnalysis,
    average: np.ndarray,
    timings: dict[str, float],
    examples: dict[str, np.ndarray] | None = None,
    *,
    correction: FrameCorrection | None = None,
) -> RegistrationResult:
    """Label the outcome of any engine as a :class:`RegistrationResult`.

    Parameters
    ----------
    stack : xarray.DataArray
        The registered stack (only its coords and attrs are read).
    params : RegistrationParams
    pairs : PairMeasurements
    analysis : MatrixAnalysis
    average : ndarray, shape (ny, nx)
        Uncropped average of the used frames.
    timings : dict
        Seconds per stage, recorded in the attrs.
    examples : dict, optional
        :func:`daskreg.views.example_views` of the first two used frames, kept so
        that the report can be drawn from the result alone.
    correction : FrameCorrection, optional
        The hot pixels repaired and the scale the frames were divided by
        (:func:`daskreg.method.screening.frame_correction`), recorded in the attrs.

    Warns
    -----
    RegistrationWarning
        ``crop`` was asked for but no pixel is covered by every used frame (the drift
        exceeds the frame): the average is left uncropped (see ``coverage``) and the
        attr ``crop_not_applied`` says why.
    """
    shape = average.shape
    frame_axis = ("frame", "axis")
    pair_dims, pair_labels = pair_coords(pairs.layout)
    ds = xr.Dataset(
        {
            "shifts": (frame_axis, analysis.shifts),
            "shift_uncertainty": (frame_axis, analysis.uncertainty),
            "bad_frames": ("frame", ~analysis.used),
            "shift_matrix": ((*pair_dims, "axis"), pairs.matrix),
            "shift_matrix_corrected": ((*pair_dims, "axis"), analysis.corrected),
            "outliers": (pair_dims, analysis.outliers),
            "measured": (pair_dims, pairs.measured),
            "fit_ok": (pair_dims, pairs.fit_ok),
            "transitivity_score": (pair_dims, analysis.scores),
            "correlation_quality": (pair_dims, pairs.quality),
            "average_full": (("y", "x"), average),
            "coverage": (("y", "x"), coverage(analysis.shifts, shape)),
        },
        coords={
            "frame": stack["frame"].values,
            **pair_labels,
            "axis": ["y", "x"],
            "y": stack["y"].values,
            "x": stack["x"].values,
        },
    )
    bounds = crop_bounds(analysis.shifts, shape)
    empty = _empty_crop(bounds, analysis.shifts) if params.crop else None
    if empty is not None:
        warnings.warn(
            f"{empty}. The average is left uncropped (result.coverage counts the frames "
            "behind each pixel; attrs['crop_not_applied'] says why). If the drift really is "
            "that large, check the shifts (band=1 follows a long drift frame to frame), or "
            "pass crop=False",
            RegistrationWarning,
            stacklevel=3,
        )
        bounds = CropBounds(0, shape[0], 0, shape[1])
    cropped = params.crop and empty is None
    correction = FrameCorrection() if correction is None else correction
    ds.attrs.update(
        params=params.to_json(),
        crop=int(cropped),
        hot_pixels=len(correction.hot_pixels),
        hot_pixel_yx=json.dumps(np.asarray(correction.hot_pixels).tolist()),
        intensity_scale=correction.scale,
        threshold_used=analysis.threshold if analysis.threshold is not None else "none",
        bad_frame_reasons=json.dumps({str(k): v for k, v in analysis.bad_reason.items()}),
        timings=json.dumps(timings),
        daskreg_version=__version__,
        pair_layout="dense" if pairs.layout.band is None else "band",
        reliable=int(analysis.reliable),
        hops_corrected=0 if analysis.hops is None else int(analysis.hops.sum() // 2),
        pair_scatter=np.nan if analysis.scale is None else float(analysis.scale),
        **bounds._asdict(),
    )
    if empty is not None:
        ds.attrs["crop_not_applied"] = empty
    for key in ("pixel_size", "unit", "source", "input_path"):
        if key in stack.attrs:
            ds.attrs[key] = stack.attrs[key]
    if examples:
        _add_examples(ds, examples, shape)
        ds.attrs["example_pair"] = json.dumps(
            [int(k) for k in np.flatnonzero(analysis.used)[:2]]
        )
    return RegistrationResult(ds)


def _empty_crop(bounds: CropBounds, shifts: np.ndarray) -> str | None:
    """Why the crop to the common area is empty, or None when it is not."""
    if bounds.ymax > bounds.ymin and bounds.xmax > bounds.xmin:
        return None
    used = shifts[np.isfinite(shifts).all(axis=1)]
    span = np.ptp(used, axis=0) if len(used) else np.zeros(2)
    return (
        f"no pixel is covered by every used frame (the shifts span {span[0]:.1f} px in y and "
        f"{span[1]:.1f} px in x), so the crop to the common area would be empty"
    )


def _add_examples(ds: xr.Dataset, examples: dict[str, np.ndarray], shape: tuple[int, int]) -> None:
    """Store the report's example views with coordinates a plot can label."""
    ny, nx = shape
    centred_y = np.arange(ny) - ny // 2
    centred_x = np.arange(nx) - nx // 2
    ds["example_frame"] = (("y", "x"), examples["example_frame"])
    ds["fourier_mask"] = xr.DataArray(
        examples["fourier_mask"],
        dims=("ky", "kx"),
        coords={"ky": centred_y, "kx": centred_x},
        attrs={"units": "cycles per frame"},
    )
    ds["example_correlation"] = xr.DataArray(
        examples["example_correlation"],
        dims=("shift_y", "shift_x"),
        coords={"shift_y": centred_y, "shift_x": centred_x},
        attrs={"units": "pixels"},
    )


def pair_coords(layout: PairLayout) -> tuple[tuple[str, str], dict[str, np.ndarray]]:
    """Dims and coords of the pair matrices stored in ``layout``.

    Dense matrices have dims ``(frame_i, frame_j)``. A band has dims
    ``(frame_i, offset)``: element ``[i, o]`` is the pair ``(i, i + o)``, with
    ``offset`` running from ``-band`` to ``band`` (elements past the first or last
    frame are unmeasured).
    """
    frames = np.arange(layout.n_frames)
    if layout.band is None:
        return ("frame_i", "frame_j"), {"frame_i": frames, "frame_j": frames}
    offsets = np.arange(-layout.band, layout.band + 1)
    return ("frame_i", "offset"), {"frame_i": frames, "offset": offsets}
