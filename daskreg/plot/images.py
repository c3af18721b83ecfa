"""Figures of images: a frame, the Fourier mask and a pair's correlation, the average.

References
----------
Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI 10.1016/j.ultramic.2018.04.008:
Fig. 2 (mask, correlation, average).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from daskreg.errors import ParameterError
from daskreg.kernels.masks import mask_support
from daskreg.params import RegistrationParams
from daskreg.plot import _panels, _sources
from daskreg.views import pair_views

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_frame", "plot_fourier_mask", "plot_average", "plot_parameter_sweep"]

# Zoom the spectrum a little beyond the mask's edge, so the reader sees what is cut.
_MASK_ZOOM = 1.25


def plot_frame(
    source: _sources.Source | Any,
    frame: int | None = None,
    *,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """One frame and its power spectrum (log scale), side by side.

    Parameters
    ----------
    source : RegistrationResult, Registration, array_like or xarray.DataArray
        A result shows its stored example frame (the first used frame); a Registration
        or a stack (frames on axis 0, or dims ``(frame, y, x)``) shows ``frame``.
    frame : int, optional
        Position of the frame in the stack (default 0). A result stores one frame only.
    axes : sequence of 2 Axes, optional
        Where to draw; a new figure when omitted.

    Returns
    -------
    matplotlib.figure.Figure
        The frame (left) and its power spectrum (right).

    Raises
    ------
    ParameterError
        ``frame`` is out of range, or is not the frame a result stores.

    Notes
    -----
    The spectrum is that of the mean-subtracted, Hann-windowed frame, as correlated.
    Its axes are in 1/unit when the data are calibrated, else in cycles per frame; the
    lattice shows as sharp reflections whose distance from the centre is the inverse
    lattice spacing. The spectrum is zoomed to twice the reach of the strong
    reflections (at least an eighth of it), where the information is.

    Examples
    --------
    >>> from daskreg.synthetic import lattice_series
    >>> fig = plot_frame(lattice_series(3, (64, 64)).to_xarray(), frame=1)
    >>> len(fig.axes)
    2
    """
    if isinstance(source, _sources.ResultLike):
        shown = _sources.example_pair(source)[0]
        if frame is not None and frame != shown:
            raise ParameterError(
                f"a result stores frame {shown} only, not frame {frame}; pass the stack or a "
                "Registration to see other frames"
            )
        image = source.dataset["example_frame"].values
        cal = _panels.calibration_of(source.dataset.attrs)
    else:
        stack, _ = _sources.as_stack_and_params(source)
        shown = 0 if frame is None else frame
        image = _sources.frame_image(stack, shown)
        cal = _panels.calibration_of(stack.attrs)
    fig, grid = _panels.panel_grid(axes, 1, 2, figsize=(10.5, 4.8), name="plot_frame")
    _panels.image_and_spectrum(grid[0, 0], grid[0, 1], image, cal, title=f"frame {shown}")
    return fig


def mask_label(params: RegistrationParams | dict[str, Any]) -> str:
    """A short description of the Fourier mask of ``params`` (e.g. ``"bandpass, n = 4"``)."""
    values = params.to_dict() if isinstance(params, RegistrationParams) else params
    kind = values["mask"]
    if kind == "elliptical":
        degrees = np.degrees(values["theta"])
        return f"elliptical, n1 = {values['n1']:g}, n2 = {values['n2']:g}, θ = {degrees:g}°"
    if kind == "none":
        return "no mask"
    if not isinstance(kind, str) or kind.startswith("user array"):
        return "user-defined mask"
    return f"{kind}, n = {values['n']:g}"


def _zoom_limit(mask: np.ndarray) -> tuple[float, float]:
    """Frequencies (cycles per frame) to show around a centred mask's support."""
    ky_max, kx_max = mask_support(np.fft.ifftshift(mask))
    ny, nx = mask.shape
    return (
        min(_MASK_ZOOM * ky_max + 2, ny / 2),
        min(_MASK_ZOOM * kx_max + 2, nx / 2),
    )


def _mask_panels(
    ax_overlay: Axes,
    ax_masked: Axes | None,
    frame: np.ndarray,
    mask: np.ndarray,
    cal: _panels.Calibration,
    *,
    title: str,
    limit: tuple[float, float],
) -> None:
    """The frame's spectrum under the mask and, if asked, the masked spectrum itself."""
    spectrum = _panels.log_power(frame)
    _panels.show_spectrum(ax_overlay, spectrum, cal, title=title, limit=limit)
    _panels.overlay_mask(ax_overlay, mask, cal)
    if ax_masked is None:
        return
    with np.errstate(divide="ignore"):
        masked = np.where(mask > 0, spectrum + np.log10(np.abs(mask)), np.nan)
    _panels.show_spectrum(ax_masked, masked, cal, title="masked FFT (log)", limit=limit)


def plot_fourier_mask(
    source: _sources.Source,
    i: int | None = None,
    j: int | None = None,
    *,
    axes: Sequence[Axes] | None = None,
    half_width: float | None = None,
) -> Figure:
    """The Fourier mask over a frame's FFT, the masked FFT, and a pair's correlation.

    The reference's ``show_Fourier_mask``: choose the mask by looking at what it keeps
    of the lattice reflections, and at how sharp and unique the correlation peak is.

    Parameters
    ----------
    source : RegistrationResult or Registration
        A result shows its stored example pair (the first two used frames); a
        Registration computes pair ``(i, j)`` with its current parameters.
    i, j : int, optional
        Frames of the pair (default 0 and 1 for a Registration).
    axes : sequence of 3 Axes, optional
        Where to draw; a new figure when omitted.
    half_width : float, optional
        Show the correlation within this many pixels of zero shift (the peak is always
        shown); default 32 px or an eighth of the frame, ``numpy.inf`` for all of it.

    Returns
    -------
    matplotlib.figure.Figure
        The mask over the FFT, the masked FFT and the pair's correlation, in a row.

    Raises
    ------
    ParameterError
        A result asked for another pair than the one it stores, or stores none.

    Notes
    -----
    The correlation is centred: zero shift is in the middle, and its maximum (marked)
    lies at ``r_ij = s_j - s_i``, the displacement of frame ``j`` relative to frame
    ``i``. On a lattice the map repeats with the lattice; a mask that keeps only the
    lattice reflections gives equally high peaks one unit cell apart (a "unit-cell
    hop" risk), while keeping some low-frequency structure singles out the true one.

    Examples
    --------
    >>> from daskreg import Registration
    >>> from daskreg.synthetic import lattice_series
    >>> reg = Registration(lattice_series(4, (64, 64)).stack, mask="hann", n=4)
    >>> len(plot_fourier_mask(reg, 0, 2).axes)  # three panels and a colour bar
    4
    """
    if isinstance(source, _sources.ResultLike):
        pair = _sources.example_pair(source)
        if (i, j) not in {(None, None), pair}:
            raise ParameterError(
                f"a result stores the correlation of frames {pair} only, not {(i, j)}; pass a "
                "Registration, or use plot_parameter_sweep with the stack"
            )
        ds = source.dataset
        frame = ds["example_frame"].values
        mask = ds["fourier_mask"].values
        correlation = ds["example_correlation"].values
        peak = _sources.layout_of(ds).take(ds["shift_matrix"].values, *pair, np.nan)
        label = mask_label(json.loads(ds.attrs["params"]))
        cal = _panels.calibration_of(ds.attrs)
    else:
        stack, params = _sources.as_stack_and_params(source)
        pair = (0 if i is None else i, 1 if j is None else j)
        frame = _sources.frame_image(stack, pair[0])
        mask, correlation, peak = pair_views(frame, _sources.frame_image(stack, pair[1]), params)
        label = mask_label(params)
        cal = _panels.calibration_of(stack.attrs)
    fig, grid = _panels.panel_grid(
        axes, 1, 3, figsize=(15.0, 4.8), name="plot_fourier_mask", title=f"Fourier mask: {label}"
    )
    ax_overlay, ax_masked, ax_corr = grid[0]
    _mask_panels(
        ax_overlay,
        ax_masked,
        frame,
        mask,
        cal,
        title=f"frame {pair[0]}: mask over FFT",
        limit=_zoom_limit(mask),
    )
    _panels.show_correlation(
        ax_corr,
        correlation,
        peak,
        title=f"correlation of frames {pair[0]} and {pair[1]}",
        half_width=half_width,
    )
    return fig


def plot_average(source: _sources.Source, *, axes: Sequence[Axes] | None = None) -> Figure:
    """The average (cropped) and its FFT, above a single frame and its FFT.

    Parameters
    ----------
    source : RegistrationResult or Registration
        A Registration is first run to its average.
    axes : sequence of 4 Axes (2 if the result stores no example frame), optional
        Average, its FFT, frame, its FFT; a new figure when omitted.

    Returns
    -------
    matplotlib.figure.Figure
        The average and its FFT (top), the example frame and its FFT (below, if stored).

    Notes
    -----
    Averaging N registered frames lowers the noise by about sqrt(N): the lattice
    reflections in the average's spectrum reach to higher frequencies than in one
    frame's. Blurred or doubled columns, or reflections that fade with frequency, mean
    misregistered frames.

    Examples
    --------
    >>> from daskreg import register
    >>> from daskreg.synthetic import lattice_series
    >>> result = register(lattice_series(4, (64, 64)).stack, mask="hann", n=4)
    >>> len(plot_average(result).axes)
    4
    """
    result = _sources.as_result(source)
    ds = result.dataset
    cal = _panels.calibration_of(ds.attrs)
    with_frame = _sources.has_examples(result)
    fig, grid = _panels.panel_grid(
        axes, 1 + with_frame, 2, figsize=(10.5, 9.0 if with_frame else 4.8), name="plot_average"
    )
    n_used = int((~ds["bad_frames"]).sum())
    cropped = "cropped" if ds.attrs.get("crop", 1) else "not cropped"
    limit = _panels.image_and_spectrum(
        grid[0, 0],
        grid[0, 1],
        result.average.values,
        cal,
        title=f"average of {n_used} frames ({cropped})",
    )
    if with_frame:
        shown = _sources.example_pair(result)[0]
        _panels.image_and_spectrum(
            grid[1, 0],
            grid[1, 1],
            ds["example_frame"].values,
            cal,
            title=f"frame {shown}",
            limit=limit,
        )
    return fig


def plot_parameter_sweep(
    source: _sources.RegistrationLike | Any,
    settings: Sequence[tuple[str, float]],
    *,
    i: int = 0,
    j: int = 1,
    params: RegistrationParams | None = None,
    axes: Sequence[Axes] | None = None,
    half_width: float | None = None,
) -> Figure:
    """The same pair's correlation for several masks or cutoffs (the tutorial's loops).

    One column per setting: the mask over frame ``i``'s FFT (top) and the correlation
    of frames ``i`` and ``j`` with the maximum the registration would find (bottom).

    Parameters
    ----------
    source : Registration, array_like or xarray.DataArray
        Frames on axis 0, or dims ``(frame, y, x)``; a Registration also supplies the
        other parameters.
    settings : sequence of (mask, n)
        Mask kinds (``"bandpass"``, ``"lowpass"``, ``"hann"``, ...) and cutoffs ``n``.
    i, j : int
        The pair, default frames 0 and 1.
    params : RegistrationParams, optional
        All other parameters (correlation, find_maxima, ...); default the
        Registration's, or the defaults for a plain stack.
    axes : array of 2 x len(settings) Axes, optional
        Where to draw; a new figure when omitted.
    half_width : float, optional
        Show the correlations within this many pixels of zero shift; default 32 px or
        an eighth of the frame, ``numpy.inf`` for all of it.

    Returns
    -------
    matplotlib.figure.Figure
        One column per setting: the mask over the FFT, above the correlation.

    Raises
    ------
    ParameterError
        No settings, an unknown mask kind, or a cutoff that keeps no frequency.

    Notes
    -----
    A good setting gives one sharp, isolated maximum at the same shift for similar
    settings. Too small an ``n`` keeps the shot noise; too large an ``n`` keeps only the
    lowest frequencies and the peak broadens; a mask keeping only the lattice
    reflections makes neighbouring unit-cell peaks as high as the true one.

    Examples
    --------
    >>> from daskreg.synthetic import lattice_series
    >>> stack = lattice_series(3, (64, 64)).stack
    >>> fig = plot_parameter_sweep(stack, [("bandpass", 2), ("bandpass", 4), ("hann", 4)])
    >>> len(fig.axes)
    6
    """
    if not settings:
        raise ParameterError("settings is empty; pass (mask, n) pairs, e.g. [('bandpass', 4)]")
    stack, base = _sources.as_stack_and_params(source, params)
    frame_a = _sources.frame_image(stack, i)
    frame_b = _sources.frame_image(stack, j)
    cal = _panels.calibration_of(stack.attrs)
    runs = []
    for kind, n in settings:
        setting = base.replace(mask=kind, n=n)
        runs.append((mask_label(setting), pair_views(frame_a, frame_b, setting)))
    limits = np.array([_zoom_limit(views.fourier_mask) for _, views in runs])
    limit = (float(limits[:, 0].max()), float(limits[:, 1].max()))
    fig, grid = _panels.panel_grid(
        axes,
        2,
        len(settings),
        figsize=(3.4 * len(settings) + 1, 7.0),
        name="plot_parameter_sweep",
        title=(
            f"Mask over frame {i}'s FFT (top) and correlation of frames {i} and {j} with its "
            "maximum (bottom), per mask setting"
        ),
    )
    for column, (label, views) in enumerate(runs):
        _mask_panels(
            grid[0, column], None, frame_a, views.fourier_mask, cal, title=label, limit=limit
        )
        peak = views.shift
        _panels.show_correlation(
            grid[1, column],
            views.correlation,
            peak,
            title=f"r = ({peak[0]:.2f}, {peak[1]:.2f}) px",
            colorbar=False,
            half_width=half_width,
        )
    return fig
