"""daskreg from a HyperSpy signal: register a ``Signal2D`` stack, lazy or not.

Three ways in, from the one that changes the least of a HyperSpy notebook:

- :func:`align2D` takes the place of ``Signal2D.align2D``: the same keywords, the signal
  aligned in place and cropped, the shifts returned in HyperSpy's convention. Switching
  is one line: ``s.align2D(crop=True)`` becomes ``daskreg.hyperspy.align2D(s, crop=True)``.
- The signal type ``"STEM_series"`` (registered through the ``hyperspy.extensions``
  entry point): ``s.set_signal_type("STEM_series")`` or
  ``hs.load(path, signal_type="STEM_series")`` gives a signal with a ``register`` method,
  so the registration is called from the object a microscopist holds.
- :func:`register` (what that method calls) works on any ``Signal2D`` stack and returns
  the aligned stack as a new signal.

Every route keeps the axes (scales, units, offsets; the signal axes' offsets follow a
crop), the metadata and the original metadata, and records in
``signal.metadata.daskreg`` the shifts, their uncertainties, the bad frames with their
reasons, the parameters and the crop. :func:`daskreg.register` takes a signal as well and
returns the full :class:`~daskreg.RegistrationResult` (``result.to_hyperspy()`` is the
average as a signal).

HyperSpy is imported only by the functions that need it, so ``import daskreg.hyperspy``
works without it.

References
----------
B. H. Savitzky, I. El Baggari, C. B. Clement, et al., "Image registration of low
signal-to-noise cryo-STEM data", Ultramicroscopy 191, 56-65 (2018).
DOI 10.1016/j.ultramic.2018.04.008

F. de la Peña et al., HyperSpy, DOI 10.5281/zenodo.592838: ``Signal2D.align2D`` and
``Signal2D.estimate_shift2D``, whose keywords :func:`align2D` takes.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any, Literal

import dask.array as da
import numpy as np

from daskreg.api import register as _register
from daskreg.errors import ParameterError, RegistrationWarning, StackShapeError
from daskreg.kernels.shift import aligned_frames, crop_bounds, frame_coverage
from daskreg.parallel.reduce import aligned_stack

__all__ = ["SIGNAL_TYPE", "align2D", "register"]

#: The HyperSpy ``signal_type`` of daskreg's signal classes (``hyperspy_extension.yaml``).
SIGNAL_TYPE = "STEM_series"

# estimate_shift2D's options for how HyperSpy measures: daskreg measures every pair
# with its own Fourier filter and sub-pixel fits, so these have nothing to act on.
# ``sub_pixel_factor`` is left out: daskreg's shifts are always sub-pixel.
_HYPERSPY_ONLY = (
    "correlation_threshold",
    "chunk_size",
    "normalize_corr",
    "sobel",
    "medfilter",
    "hanning",
    "plot",
    "dtype",
)

Reference = Literal["current", "cascade", "stat"]


def register(
    signal: Any,
    *,
    inplace: bool = False,
    crop: bool = True,
    fill_value: float = np.nan,
    expand: bool = False,
    **params: Any,
) -> Any:
    """Register a HyperSpy ``Signal2D`` stack; the aligned stack as a signal.

    Parameters
    ----------
    signal : hyperspy.signals.Signal2D or LazySignal2D
        One navigation axis (the frames) and two signal axes ``(x, y)``, uniform.
    inplace : bool, default False
        Align ``signal`` itself (as ``Signal2D.align2D`` does) and return None.
    crop : bool, default True
        Keep only the region every used frame covers (the crop of the average).
    fill_value : float, default NaN
        Value of the pixels that hold no data of their frame (uncropped edges, padding,
        bad frames), as ``Signal2D.align2D``.
    expand : bool, default False
        Pad the frames so that all data fits after alignment; overrides ``crop``.
    **params
        Options of :func:`daskreg.register` (``mask``, ``n``, ``threshold``, ``client``,
        ``progress``, ...).

    Returns
    -------
    hyperspy.signals.Signal2D or None
        Of the class of ``signal`` (lazy if it is), float64, each frame shifted by
        ``-shifts[i]``; None with ``inplace=True``. Axes, metadata and original metadata
        are those of ``signal`` (less a variance signal, which would describe the
        unaligned frames); the signal axes' offsets and sizes follow the crop or
        padding. ``metadata.daskreg`` holds ``shifts`` (frame, [dy, dx]) in pixels
        relative to the mean position of the used frames, ``shift_uncertainty``,
        ``bad_frames`` and ``bad_frame_reasons``, ``parameters``, ``crop``,
        ``reliable``, ``reference``, ``convention`` and ``daskreg_version``.

    Raises
    ------
    StackShapeError
        Not a stack of images with one navigation axis, or a non-uniform signal axis.
    DaskregError
        As :func:`daskreg.register`.

    Notes
    -----
    The shifts are measured by :func:`daskreg.register` on the signal's data and applied
    by the Fourier shift theorem, as daskreg's average is: the mean of the aligned used
    frames is ``result.average``. Bad frames keep their place (the navigation axis is
    unchanged) and are filled with ``fill_value``; ``aligned.nanmean()`` averages the
    used frames when it is NaN.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> from daskreg.synthetic import lattice_series
    >>> s = hs.signals.Signal2D(lattice_series(8, (96, 96), seed=1).stack)
    >>> aligned = register(s, progress=False)
    >>> aligned.metadata.daskreg.shifts.shape, aligned.axes_manager.signal_shape
    ((8, 2), (90, 90))
    """
    _check_stack(signal)
    result = _register(signal, **params)
    record = _record(result, "mean position of the used frames")
    return _aligned(
        signal,
        record,
        inplace=inplace,
        crop=crop,
        fill_value=fill_value,
        expand=expand,
        interpolation_order=None,
    )


def align2D(  # noqa: N802 - HyperSpy's name, so that a notebook switches by one line
    signal: Any,
    crop: bool = True,
    fill_value: float = np.nan,
    shifts: Any = None,
    expand: bool = False,
    interpolation_order: int | None = None,
    show_progressbar: bool | None = None,
    num_workers: int | None = None,
    *,
    reference: Reference = "current",
    roi: tuple[float, float, float, float] | None = None,
    sub_pixel_factor: float | None = None,
    **kwargs: Any,
) -> np.ndarray | None:
    """Align a HyperSpy ``Signal2D`` stack in place with daskreg's shifts.

    A drop-in for ``signal.align2D(...)``: the same keywords where they mean the same,
    the signal aligned in place and returned shifts in HyperSpy's convention.

    Parameters
    ----------
    signal : hyperspy.signals.Signal2D or LazySignal2D
        One navigation axis (the frames) and two uniform signal axes.
    crop : bool, default True
        Crop to the region every used frame covers.
    fill_value : float, default NaN
        Value of the pixels without data of their frame (and of bad frames).
    shifts : array_like, shape (n_frames, 2), optional
        ``(dy, dx)`` in pixels, HyperSpy's convention (frame ``i`` shows the specimen
        displaced by ``+shifts[i]``; it is moved by ``-shifts[i]``), e.g. those returned
        for another channel; NaN rows are bad frames. Default: measured by
        :func:`daskreg.register`.
    expand : bool, default False
        Pad so that all data fits after alignment; overrides ``crop``.
    interpolation_order : int, optional
        None: the Fourier shift theorem (daskreg's; the mean of the aligned frames is
        daskreg's average). An int: HyperSpy's spline shift of that order
        (``scipy.ndimage.shift``, HyperSpy's default is 1), with HyperSpy's crop.
    show_progressbar : bool, optional
        Passed as ``progress`` to :func:`daskreg.register`.
    num_workers : int, optional
        Passed as ``n_workers``: a local Dask cluster with that many workers.
    reference : {"current", "cascade", "stat"}, default "current"
        Which position the shifts are relative to (daskreg always measures every pair
        of frames, as ``"stat"`` does): the frame at the current navigation index (as
        HyperSpy's default; the mean of the used frames if that frame is bad), the first
        used frame (``"cascade"``, whose first shift is zero), or the mean position of
        the used frames (``"stat"``).
    roi : (left, right, top, bottom), optional
        Measure the shifts on this region only (ints are indices, floats axis values,
        as HyperSpy); the whole frames are aligned.
    sub_pixel_factor : float, optional
        Accepted for HyperSpy's calls: daskreg's shifts are always sub-pixel.
    **kwargs
        Options of :func:`daskreg.register` (``mask``, ``n``, ``threshold``, ...).
        HyperSpy's other ``estimate_shift2D`` options (``sobel``, ``medfilter``,
        ``hanning``, ``normalize_corr``, ``correlation_threshold``, ``chunk_size``,
        ``plot``, ``dtype``) have nothing to act on and are ignored with a
        :class:`~daskreg.errors.RegistrationWarning`.

    Returns
    -------
    numpy.ndarray of shape (n_frames, 2), or None
        The measured shifts ``(dy, dx)`` in pixels relative to ``reference`` (NaN rows:
        bad frames); None when ``shifts`` were given, as HyperSpy does. They are also in
        ``signal.metadata.daskreg`` with their uncertainties (see :func:`register`).

    Raises
    ------
    StackShapeError
        Not a stack of images with one navigation axis, or a non-uniform signal axis.
    ParameterError
        ``shifts`` not ``(n_frames, 2)``, or an unknown ``reference`` or keyword.
    DaskregError
        As :func:`daskreg.register`.

    Notes
    -----
    The sign agrees with ``Signal2D.estimate_shift2D``: both give ``+d`` for a frame
    whose content is displaced by ``+d`` from the reference, so ``shifts`` from either
    can be passed to the other's ``align2D``. Unlike HyperSpy's ``align2D`` the data
    become float64 (sub-pixel shifts), and all shifts measured are returned even when
    they are all zero.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> from daskreg.synthetic import lattice_series
    >>> series = lattice_series(8, (96, 96), seed=1)
    >>> s = hs.signals.Signal2D(series.stack)  # or hs.load("series.dm4")
    >>> shifts = align2D(s, crop=True, progress=False)  # was: s.align2D(crop=True)
    >>> bool(abs(shifts - (series.shifts - series.shifts[0])).max() < 0.1)
    True
    """
    _check_stack(signal)
    if reference not in ("current", "cascade", "stat"):
        raise ParameterError(
            f"reference={reference!r} is not one of 'current', 'cascade', 'stat': daskreg "
            "measures every pair; reference only chooses which position is zero"
        )
    ignored = sorted(set(kwargs) & set(_HYPERSPY_ONLY))
    if ignored:
        warnings.warn(
            f"HyperSpy's estimate_shift2D options {ignored} are ignored: daskreg measures "
            "every pair of frames with its own Fourier mask and sub-pixel peak fits. Pass "
            "daskreg.register's options (mask=, n=, threshold=, ...) to tune it",
            RegistrationWarning,
            stacklevel=2,
        )
    params = {key: value for key, value in kwargs.items() if key not in _HYPERSPY_ONLY}
    if show_progressbar is not None:
        params["progress"] = show_progressbar
    if num_workers is not None:
        params["n_workers"] = num_workers
    n_frames = signal.axes_manager.navigation_size
    if shifts is not None:
        given = _given_shifts(shifts, n_frames)
        record = {
            "shifts": given,
            "bad_frames": np.flatnonzero(~np.isfinite(given).all(axis=1)),
            "reference": "as given",
            "convention": _CONVENTION,
        }
    else:
        measured = signal if roi is None else _in_roi(signal, roi)
        record = _record(_register(measured, **params), None)
        zero, record["reference"] = _zero(record, reference, signal)
        record["shifts"] = record["shifts"] - zero
    _aligned(
        signal,
        record,
        inplace=True,
        crop=crop,
        fill_value=fill_value,
        expand=expand,
        interpolation_order=interpolation_order,
    )
    return None if shifts is not None else record["shifts"].copy()


_CONVENTION = (
    "shifts[i] = (dy, dx) in pixels: frame i showed the specimen displaced by +shifts[i] "
    "(as HyperSpy's estimate_shift2D) and was moved by -shifts[i]"
)


def _check_stack(signal: Any) -> None:
    manager = getattr(signal, "axes_manager", None)
    if manager is None:
        raise StackShapeError(
            f"expected a HyperSpy Signal2D, got a {type(signal).__name__}; for arrays, "
            "DataArrays and files use daskreg.register"
        )
    if manager.signal_dimension != 2 or manager.navigation_dimension != 1:
        raise StackShapeError(
            f"a HyperSpy signal of dimensions {manager.navigation_shape}|"
            f"{manager.signal_shape} is not a stack of images: it needs one navigation "
            "axis (the frames) and two signal axes; use s.as_signal2D((0, 1)) for an "
            "image stack stored otherwise, or s.inav[...] to pick one series"
        )
    for axis in manager.signal_axes:
        if not axis.is_uniform:
            raise StackShapeError(
                f"the signal axis {axis.name!r} is non-uniform; shifts in pixels need "
                "uniform axes (convert it with axis.convert_to_uniform_axis())"
            )


def _in_roi(signal: Any, roi: Any) -> Any:
    """The part of ``signal`` in HyperSpy's ``roi`` ``(left, right, top, bottom)``."""
    bounds = tuple(roi)
    if len(bounds) != 4:
        raise ParameterError(
            f"roi={roi!r} has {len(bounds)} values; pass (left, right, top, bottom) as "
            "HyperSpy does: ints are pixel indices, floats axis values"
        )
    left, right, top, bottom = bounds
    return signal.isig[left:right, top:bottom]


def _given_shifts(shifts: Any, n_frames: int) -> np.ndarray:
    values = np.asarray(shifts, dtype=np.float64)
    if values.shape != (n_frames, 2):
        raise ParameterError(
            f"shifts of shape {values.shape} for {n_frames} frames; pass one (dy, dx) row "
            "per frame, shape (n_frames, 2), in pixels"
        )
    return values


def _record(result: Any, reference: str | None) -> dict[str, Any]:
    """What ``metadata.daskreg`` holds, from a :class:`~daskreg.RegistrationResult`."""
    attrs = result.dataset.attrs
    bad = np.flatnonzero(result.bad_frames.values)
    reasons = json.loads(attrs.get("bad_frame_reasons", "{}"))
    record = {
        "shifts": np.asarray(result.shifts.values, dtype=np.float64),
        "shift_uncertainty": np.asarray(result.shift_uncertainty.values, dtype=np.float64),
        "bad_frames": bad,
        # HyperSpy's metadata nodes need identifier-like keys: one reason per bad frame.
        "bad_frame_reasons": [reasons.get(str(k), "given as bad") for k in bad],
        # JSON text: HyperSpy's .hspy drops None-valued metadata entries.
        "parameters": attrs.get("params", "{}"),
        "crop": {key: int(attrs[key]) for key in ("ymin", "ymax", "xmin", "xmax")},
        "reliable": bool(attrs.get("reliable", 1)),
        "convention": _CONVENTION,
        "daskreg_version": str(attrs.get("daskreg_version", "")),
    }
    if reference is not None:
        record["reference"] = reference
    return record


def _zero(record: dict[str, Any], reference: Reference, signal: Any) -> tuple[np.ndarray, str]:
    """The shift that becomes zero for ``reference``, and how it is recorded."""
    shifts = record["shifts"]
    used = np.flatnonzero(np.isfinite(shifts).all(axis=1))
    frame = None
    if reference == "current":
        frame = int(signal.axes_manager.navigation_axes[0].index)
    elif reference == "cascade":
        frame = int(used[0])
    if frame is not None and frame in used:
        return shifts[frame], f"frame {frame}"
    note = f" (frame {frame} is a bad frame)" if frame is not None else ""
    # daskreg's shifts are already relative to that mean.
    return np.zeros(2), f"mean position of the used frames{note}"


def _aligned(
    signal: Any,
    record: dict[str, Any],
    *,
    inplace: bool,
    crop: bool,
    fill_value: float,
    expand: bool,
    interpolation_order: int | None,
) -> Any:
    """``signal`` (or a copy) aligned by ``record["shifts"]``, with ``record`` recorded."""
    # The copy shares the data until it is replaced below: nothing is copied twice.
    target = signal if inplace else signal._deepcopy_with_new_data(signal.data, copy_variance=True)
    # A variance signal describes the unaligned frames; the detector's linear noise
    # model (gain, offset) stays true and is kept.
    if target.metadata.has_item("Signal.Noise_properties.variance"):
        del target.metadata.Signal.Noise_properties.variance
    shifts = record["shifts"]
    if interpolation_order is None:
        _fourier_align(target, shifts, crop=crop, fill_value=fill_value, expand=expand)
    else:
        _spline_align(target, shifts, crop, fill_value, expand, interpolation_order)
    # A node replaced whole: nothing of an earlier registration lingers.
    if target.metadata.has_item("daskreg"):
        del target.metadata.daskreg
    target.metadata.add_dictionary({"daskreg": record})
    target.events.data_changed.trigger(obj=target)
    return None if inplace else target


def _fourier_align(
    target: Any, shifts: np.ndarray, *, crop: bool, fill_value: float, expand: bool
) -> None:
    data = target.data
    shape = tuple(data.shape[-2:])
    used = shifts[np.isfinite(shifts).all(axis=1)]
    before = after = (0, 0)
    if expand and len(used):
        # Frame i's content moves to [p - s_i, p - s_i + n - 1]: pad so that all fit.
        before = tuple(math.ceil(max(0.0, used[:, k].max())) for k in range(2))
        after = tuple(math.ceil(max(0.0, -used[:, k].min())) for k in range(2))
    padding = ((0, 0), (before[0], after[0]), (before[1], after[1]))
    lazy = isinstance(data, da.Array)
    if lazy:
        frames = da.pad(data, padding) if expand else data
        moved = aligned_stack(frames, shifts)
    else:
        frames = np.pad(data, padding) if expand else data
        moved = aligned_frames(frames, shifts)
    rows, cols = frame_coverage(shifts, shape, origin=before, size=moved.shape[-2:])
    if lazy:
        # Chunked as the frames, so the mask is made block by block, never whole.
        rows, cols = (da.from_array(m, chunks=(moved.chunks[0], -1)) for m in (rows, cols))
    covered = rows[:, :, None] & cols[:, None, :]
    target.data = (da if lazy else np).where(covered, moved, fill_value)
    y_axis, x_axis = target.axes_manager.signal_axes[1], target.axes_manager.signal_axes[0]
    for axis, pad, new_size in zip((y_axis, x_axis), before, moved.shape[-2:], strict=True):
        axis.offset -= pad * axis.scale
        axis.size = int(new_size)
    if crop and not expand and len(used):
        bounds = crop_bounds(shifts, shape)
        target.crop_signal(top=bounds.ymin, bottom=bounds.ymax, left=bounds.xmin, right=bounds.xmax)


def _spline_align(
    target: Any, shifts: np.ndarray, crop: bool, fill_value: float, expand: bool, order: int
) -> None:
    bad = ~np.isfinite(shifts).all(axis=1)
    # HyperSpy's own align2D, with daskreg's shifts: a bad frame is not moved, then blanked.
    target.align2D(
        crop=crop,
        fill_value=fill_value,
        shifts=np.where(bad[:, None], 0.0, shifts),
        expand=expand,
        interpolation_order=order,
        show_progressbar=False,
    )
    if bad.any():
        lazy = isinstance(target.data, da.Array)
        target.data = (da if lazy else np).where(bad[:, None, None], fill_value, target.data)
