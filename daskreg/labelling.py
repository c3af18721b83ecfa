"""The outcome of either engine, labelled as a :class:`~daskreg.result.RegistrationResult`.

The one labeller: the in-memory engine (:mod:`daskreg.registration`) and the Dask engine
(:mod:`daskreg.parallel.engine`) hand their pair measurements, matrix analysis and
average to :func:`build_result`, which names the dims and coords, decides the crop and
records the parameters, corrections and provenance in the attrs.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import xarray as xr

from daskreg._version import __version__
from daskreg.errors import RegistrationWarning
from daskreg.kernels.detector import FrameCorrection
from daskreg.kernels.layout import PairLayout
from daskreg.kernels.shift import CropBounds, coverage, crop_bounds
from daskreg.method.analyse import MatrixAnalysis
from daskreg.method.measurements import PairMeasurements
from daskreg.params import RegistrationParams
from daskreg.result import RegistrationResult

__all__ = ["build_result", "pair_coords"]


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
        refined_frames=0 if analysis.refined is None else int(analysis.refined.sum()),
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
