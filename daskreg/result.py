"""The outcome of a registration, as labelled xarray objects.

:class:`RegistrationResult` wraps one :class:`xarray.Dataset` (``result.dataset``)
holding shifts, shift matrices, outlier mask, bad frames, the average and its
coverage; the processing parameters, crop bounds, calibration and version are in its
attrs. Everything needed to reproduce the run is in that one Dataset, which
:func:`daskreg.labelling.build_result` labels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from daskreg.apply import apply_shifts
from daskreg.errors import FileFormatError
from daskreg.io.average_tif import write_average_tif
from daskreg.io.hyperspy_out import save_hspy, to_signal2d
from daskreg.io.paths import refuse_source
from daskreg.io.results import RESULT_EXTENSIONS, load_dataset, save_dataset
from daskreg.kernels.shift import CropBounds
from daskreg.params import RegistrationParams
from daskreg.summary import ResultSummary, summarize

__all__ = ["RegistrationResult", "load_result", "save_result"]

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
        ``(i, i + o)`` (see :func:`daskreg.labelling.pair_coords`).

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
        """Save by extension; every file is written atomically.

        ``.tif``/``.tiff`` the average (:meth:`save_tif`), ``.zarr`` or ``.nc`` the whole
        result (:func:`save_result`), ``.hspy`` the average as a HyperSpy signal.

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


