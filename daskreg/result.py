"""The outcome of a registration, as labelled xarray objects.

:class:`RegistrationResult` wraps one :class:`xarray.Dataset` (``result.dataset``)
holding shifts, shift matrices, outlier mask, bad frames, the average and its
coverage; the processing parameters, crop bounds, calibration and version are in its
attrs. Everything needed to reproduce the run is in that one Dataset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from daskreg.io.average_tif import write_average_tif
from daskreg.kernels.shift import CropBounds, coverage, crop_bounds
from daskreg.params import RegistrationParams
from daskreg.pipeline import MatrixAnalysis, PairMeasurements

__all__ = ["RegistrationResult", "build_result"]

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
        ``pixel_size``, ``unit``, ``daskreg_version``.

    Notes
    -----
    ``shifts[i]`` is the displacement ``(dy, dx)`` in pixels of frame ``i`` relative to
    the mean position of the used frames: frame ``i`` shows the specimen moved by
    ``+shifts[i]``, and the average shifts it by ``-shifts[i]``.
    """

    def __init__(self, dataset: xr.Dataset) -> None:
        self.dataset = dataset

    def __repr__(self) -> str:
        n_used = int((~self.bad_frames).sum())
        shifts = self.shifts.values[~self.bad_frames.values]
        span = np.ptp(shifts, axis=0) if len(shifts) else np.zeros(2)
        return (
            f"<RegistrationResult: {n_used}/{self.bad_frames.size} frames used, "
            f"{int(self.outliers.sum()) // 2} outlier pairs, shift range "
            f"dy {span[0]:.2f} px, dx {span[1]:.2f} px, crop {tuple(self.crop)}>"
        )

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
    def description(self) -> dict[str, Any]:
        """Provenance document: parameters, matrices, masks, shifts, crop, calibration."""
        ds = self.dataset
        attrs = ds.attrs
        return {
            "params": json.loads(attrs["params"]),
            "crop": dict(zip(_CROP_KEYS, self.crop, strict=True)),
            "cropped": bool(attrs.get("crop", 1)),
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
            "shift_matrix": ds["shift_matrix"].values,
            "shift_matrix_corrected": ds["shift_matrix_corrected"].values,
            "outliers": ds["outliers"].values.astype(int),
            "measured": ds["measured"].values.astype(int),
            "timings": json.loads(attrs.get("timings", "{}")),
        }

    def save_tif(self, path: str | os.PathLike) -> Path:
        """Save the average (cropped unless ``crop=False``) as float32 TIFF.

        The TIFF description is the JSON of :meth:`description`; read it back with
        :func:`daskreg.read_average_tif`.
        """
        pixel = self.dataset.attrs.get("pixel_size")
        return write_average_tif(
            path,
            self.average.values,
            self.description(),
            pixel_size=tuple(pixel) if pixel is not None else None,
        )

    save = save_tif


def build_result(
    stack: xr.DataArray,
    params: RegistrationParams,
    pairs: PairMeasurements,
    analysis: MatrixAnalysis,
    average: np.ndarray,
    timings: dict[str, float],
    examples: dict[str, np.ndarray] | None = None,
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
        :func:`daskreg.pipeline.example_views` of the first two used frames, kept so
        that the report can be drawn from the result alone.
    """
    from daskreg import __version__

    shape = average.shape
    n_frames = pairs.matrix.shape[0]
    frame_axis = ("frame", "axis")
    pair_dims = ("frame_i", "frame_j")
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
            "frame_i": np.arange(n_frames),
            "frame_j": np.arange(n_frames),
            "axis": ["y", "x"],
            "y": stack["y"].values,
            "x": stack["x"].values,
        },
    )
    ds.attrs.update(
        params=params.to_json(),
        crop=int(params.crop),
        threshold_used=analysis.threshold if analysis.threshold is not None else "none",
        bad_frame_reasons=json.dumps({str(k): v for k, v in analysis.bad_reason.items()}),
        timings=json.dumps(timings),
        daskreg_version=__version__,
        **crop_bounds(analysis.shifts, shape)._asdict(),
    )
    for key in ("pixel_size", "unit", "source"):
        if key in stack.attrs:
            ds.attrs[key] = stack.attrs[key]
    if examples:
        _add_examples(ds, examples, shape)
        ds.attrs["example_pair"] = json.dumps(
            [int(k) for k in np.flatnonzero(analysis.used)[:2]]
        )
    return RegistrationResult(ds)


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
