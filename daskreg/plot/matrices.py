"""Figures of the shift matrices, the final shifts and the transitivity scores.

References
----------
Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI 10.1016/j.ultramic.2018.04.008:
Fig. 3 (shift matrices, transitivity).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from daskreg.kernels.layout import PairLayout
from daskreg.plot import _panels, _sources

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_shift_matrices", "plot_shifts", "plot_transitivity"]

OUTLIER_COLOUR = "black"
BAD_FRAME_COLOUR = (0.6, 0.6, 0.6)
THRESHOLD_COLOUR = "tab:red"
_AXIS_NAMES = ("y", "x")


class _MatrixGrid(NamedTuple):
    """Where the stored elements of a pair matrix are drawn.

    A dense matrix is drawn as stored, frame j across; a band ``(frame_i, offset)`` is
    drawn with the offset ``j - i`` across, which keeps 10^4 frames legible.
    """

    x: np.ndarray
    n_rows: int
    x_label: str

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return (self.x[0] - 0.5, self.x[-1] + 0.5, self.n_rows - 0.5, -0.5)


def _integer_ticks(*axes: Any) -> None:
    """Ticks at whole numbers only on these axes (frame indices, counts of pairs)."""
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.set_major_locator(MaxNLocator(integer=True))


def _matrix_grid(ds: Any, layout: PairLayout) -> _MatrixGrid:
    n = layout.n_frames
    if layout.band is None:
        return _MatrixGrid(np.arange(n), n, "frame j")
    return _MatrixGrid(ds["offset"].values, n, "offset j - i (frames)")


def _paint_cells(ax: Axes, cells: np.ndarray, grid: _MatrixGrid) -> None:
    """Paint the outlier cells of a matrix panel (their raw values are meaningless)."""
    from matplotlib.colors import to_rgb

    rgba = np.zeros((*cells.shape, 4))
    rgba[..., :3] = to_rgb(OUTLIER_COLOUR)
    rgba[..., 3] = cells
    ax.imshow(rgba, extent=grid.extent, gid="outliers", interpolation="nearest", aspect="auto")


def _hatch_cells(ax: Axes, cells: np.ndarray, grid: _MatrixGrid) -> None:
    """Hatch the pairs involving a bad frame, leaving their values visible beneath."""
    if not cells.any():
        return
    x_edges = np.append(grid.x - 0.5, grid.x[-1] + 0.5)
    y_edges = np.arange(grid.n_rows + 1) - 0.5
    ax.pcolor(
        x_edges,
        y_edges,
        np.ma.masked_where(~cells, cells.astype(float)),
        hatch="///",
        facecolor="none",
        edgecolor=BAD_FRAME_COLOUR,
        linewidth=0,
        gid="bad_frames",
    )


def _matrix_legend(ax: Axes, n_outliers: int, n_bad: int, corrected: bool) -> None:
    """Legend of the overlays, under ``ax`` (the right panel)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    outlier_handle = (
        Line2D([], [], ls="none", marker="o", ms=5, color=OUTLIER_COLOUR)
        if corrected
        else Patch(color=OUTLIER_COLOUR)
    )
    outlier_text = "refilled outlier pairs" if corrected else "outlier pairs"
    ax.legend(
        [outlier_handle, Patch(fill=False, hatch="///", edgecolor=BAD_FRAME_COLOUR)],
        [f"{outlier_text} ({n_outliers})", f"bad frames ({n_bad})"],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncols=2,
        frameon=False,
    )


def plot_shift_matrices(
    source: _sources.Source,
    *,
    corrected: bool = False,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """The Y and X shift matrices with the outlier mask and bad frames overlaid.

    Parameters
    ----------
    source : RegistrationResult or Registration
        A Registration is first run to its average.
    corrected : bool, default False
        False: the raw measured matrices, outlier pairs painted black. True: the
        corrected matrices, the outlier pairs refilled from transitivity marked by dots.
    axes : sequence of 2 Axes, optional
        Y then X panel; a new figure when omitted.

    Returns
    -------
    matplotlib.figure.Figure
        The Y and X matrices side by side, each with its colour bar.

    Notes
    -----
    Element ``(i, j)`` is ``r_ij = s_j - s_i`` (pixels), so a steady drift shows as a
    smooth ramp away from the zero diagonal and the matrices are antisymmetric. An
    outlier breaks the ramp: a unit-cell hop is a lattice spacing off. Pairs with a
    frame left out are hatched; pairs not measured are light grey. The colour scale
    spans the pairs that were used, so outliers do not wash it out. A result measured
    on a band of pairs (``band=w``) is drawn as stored, offset ``j - i`` across.

    Examples
    --------
    >>> from daskreg import register
    >>> from daskreg.synthetic import lattice_series
    >>> result = register(lattice_series(5, (64, 64)).stack, mask="hann", n=4)
    >>> len(plot_shift_matrices(result, corrected=True).axes)  # two panels, two colour bars
    4
    """
    import matplotlib as mpl

    ds = _sources.as_result(source).dataset
    layout = _sources.layout_of(ds)
    grid_info = _matrix_grid(ds, layout)
    name = "shift_matrix_corrected" if corrected else "shift_matrix"
    matrix = ds[name].values.astype(float)
    outliers = ds["outliers"].values
    bad = ds["bad_frames"].values
    shown = layout.outer(~bad, ~bad)
    if corrected:
        # Pairs with a bad frame hold no estimate, only a fill value.
        matrix[~shown] = np.nan
    else:
        matrix[~ds["measured"].values & ~layout.diagonal()] = np.nan
    trusted = shown & ~outliers & np.isfinite(matrix[..., 0])
    every = np.ones_like(bad)
    bad_pairs = layout.outer(bad, every) | layout.outer(every, bad)
    cmap = mpl.colormaps["RdBu_r"].with_extremes(bad="0.9")
    kind = "corrected" if corrected else "raw"
    fig, grid = _panels.panel_grid(
        axes,
        1,
        2,
        figsize=(11.0, 5.4),
        name="plot_shift_matrices",
        title=f"{kind.capitalize()} shift matrices",
    )
    for k, ax in enumerate(grid[0]):
        values = matrix[..., k]
        limit = max(float(np.abs(values[trusted]).max()) if trusted.any() else 1.0, 1e-3)
        image = ax.imshow(
            values,
            cmap=cmap,
            vmin=-limit,
            vmax=limit,
            extent=grid_info.extent,
            interpolation="nearest",
            aspect="equal" if layout.band is None else "auto",
        )
        axis = _AXIS_NAMES[k]
        fig.colorbar(image, ax=ax, label=f"$s_j - s_i$ along {axis} (px)", shrink=0.85)
        _hatch_cells(ax, bad_pairs, grid_info)
        if corrected:
            rows, cols = np.nonzero(outliers)
            ax.plot(
                grid_info.x[cols],
                rows,
                "o",
                ls="none",
                color=OUTLIER_COLOUR,
                gid="outliers",
                ms=float(np.clip(200 / grid_info.n_rows, 1, 6)),
            )
        else:
            _paint_cells(ax, outliers, grid_info)
        _integer_ticks(ax.xaxis, ax.yaxis)
        ax.set_xlabel(grid_info.x_label)
        ax.set_ylabel("frame i")
        ax.set_title(f"{kind} {axis.upper()}$_{{ij}}$ (shift along {axis})")
    n_outliers = int((outliers & layout.upper()).sum())
    _matrix_legend(grid[0, -1], n_outliers, int(bad.sum()), corrected)
    return fig


def plot_shifts(source: _sources.Source, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Final shift of every frame along y and x, with error bars and bad frames marked.

    Parameters
    ----------
    source : RegistrationResult or Registration
        As for :func:`plot_shift_matrices`.
    axes : sequence of 2 Axes, optional
        y then x panel; a new figure when omitted.

    Returns
    -------
    matplotlib.figure.Figure
        The y shifts above the x shifts, against the frame.

    Notes
    -----
    ``shifts[i]`` is frame ``i``'s displacement relative to the mean position of the
    used frames. The error bars are one-sigma uncertainties from the residuals of the
    redundant pair measurements (every pair constrains two frames), so they are often
    far smaller than a pixel. A right-hand axis gives the shift in physical units when
    the data are calibrated. Grey bands mark frames left out of the average.

    Examples
    --------
    Frame 2 left out, shown by a grey band:

    >>> from daskreg import register
    >>> from daskreg.synthetic import lattice_series
    >>> result = register(lattice_series(5, (64, 64)).stack, mask="hann", n=4, bad_frames=(2,))
    >>> len(plot_shifts(result).axes)
    2
    """
    ds = _sources.as_result(source).dataset
    frames = ds["frame"].values.astype(float)
    shifts = ds["shifts"].values
    sigma = ds["shift_uncertainty"].values
    bad = ds["bad_frames"].values
    used = ~bad
    cal = _panels.calibration_of(ds.attrs)
    half_step = float(np.median(np.diff(frames))) / 2 if len(frames) > 1 else 0.5
    fig, grid = _panels.panel_grid(
        axes,
        2,
        1,
        figsize=(10.0, 6.5),
        name="plot_shifts",
        title="Drift: final shift of each frame",
    )
    for k, ax in enumerate(grid[:, 0]):
        axis = _AXIS_NAMES[k]
        typical = float(np.nanmedian(sigma[used, k])) if used.any() else float("nan")
        ax.errorbar(
            frames[used],
            shifts[used, k],
            yerr=sigma[used, k],
            fmt="o-",
            ms=3.5,
            lw=1,
            capsize=2.5,
            label=f"shift ± 1σ (median σ = {typical:.2g} px)",
        )
        for position in frames[bad]:
            ax.axvspan(
                position - half_step,
                position + half_step,
                color=BAD_FRAME_COLOUR,
                alpha=0.5,
                lw=0,
                gid="bad_frame",
            )
        if bad.any():
            ax.plot([], [], "s", color=BAD_FRAME_COLOUR, alpha=0.5, label="bad frame")
        ax.set_ylabel(f"shift along {axis} (px)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        if cal.calibrated:
            size = cal.pixel_size[k]
            secondary = ax.secondary_yaxis(
                "right", functions=(lambda v, s=size: v * s, lambda v, s=size: v / s)
            )
            secondary.set_ylabel(f"shift along {axis} ({cal.unit})")
    grid[0, 0].sharex(grid[1, 0])
    grid[0, 0].tick_params(labelbottom=False)
    grid[1, 0].set_xlabel("frame")
    if np.array_equal(frames, np.round(frames)):
        _integer_ticks(grid[1, 0].xaxis)
    return fig


def plot_transitivity(source: _sources.Source, *, ax: Axes | None = None) -> Figure:
    """Histogram of the transitivity scores of all pairs, with the outlier threshold.

    Parameters
    ----------
    source : RegistrationResult or Registration
        As for :func:`plot_shift_matrices`.
    ax : Axes, optional
        Where to draw; a new figure when omitted.

    Returns
    -------
    matplotlib.figure.Figure
        The histogram, scores on a log axis.

    Notes
    -----
    The score of pair ``(i, j)`` is the mean distance (pixels) between its measured
    shift and the sums along two-step paths ``i -> k -> j``; consistent pairs score a
    few tenths of a pixel or less, a unit-cell hop about one lattice spacing. Pairs at
    or above the threshold (red line) are outliers. The score axis is logarithmic
    because the two populations differ by orders of magnitude.

    Examples
    --------
    A Registration is run to its result first:

    >>> from daskreg import Registration
    >>> from daskreg.synthetic import lattice_series
    >>> reg = Registration(lattice_series(5, (64, 64)).stack, mask="hann", n=4)
    >>> len(plot_transitivity(reg).axes)
    1
    """
    ds = _sources.as_result(source).dataset
    layout = _sources.layout_of(ds)
    scores = ds["transitivity_score"].values
    values = scores[layout.upper() & np.isfinite(scores)]
    fig, grid = _panels.panel_grid(ax, 1, 1, figsize=(8.0, 5.0), name="plot_transitivity")
    ax = grid[0, 0]
    ax.set_xlabel("transitivity score (px)")
    ax.set_ylabel("number of pairs")
    _integer_ticks(ax.yaxis)
    ax.set_title("Transitivity scores of the frame pairs")
    if values.size == 0:
        method = json.loads(ds.attrs["params"]).get("outliers")
        ax.text(
            0.5,
            0.5,
            f"no transitivity scores: outliers={method!r}",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        return fig
    threshold = ds.attrs.get("threshold_used")
    threshold = float(threshold) if isinstance(threshold, (int, float)) else None
    positive = values[values > 0]
    floor = positive.min() if positive.size else 1e-3
    top = max(values.max(), threshold or 0.0) * 1.2
    bins = np.geomspace(floor / 1.2, max(top, floor * 10), 40)
    counts, _, _ = ax.hist(
        np.clip(values, floor, None),
        bins=bins,
        color="tab:blue",
        alpha=0.8,
        label=f"{values.size} pairs",
    )
    ax.set_xscale("log")
    # Headroom above the tallest bar keeps the legend off the bars.
    ax.set_ylim(0, 1.3 * counts.max())
    if threshold is not None:
        auto = json.loads(ds.attrs["params"]).get("threshold") is None
        n_out = int((ds["outliers"].values & layout.upper()).sum())
        ax.axvline(
            threshold,
            color=THRESHOLD_COLOUR,
            ls="--",
            gid="threshold",
            label=f"threshold {threshold:.3g} px ({'auto' if auto else 'set'}); "
            f"outliers: {n_out} pair{'s' * (n_out != 1)}",
        )
    ax.legend(loc="best")
    ax.grid(alpha=0.3, which="both")
    return fig
