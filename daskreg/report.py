"""The PDF report of a registration: how a group reviews a run later.

:func:`save_report` writes one multi-page PDF (and optionally one PNG per page): a
summary page with the data's origin and calibration, the frames used and left out (with
the reasons), the outliers, threshold, crop, parameters and timings; then every figure
of :mod:`daskreg.plot`, each with a caption saying what to look for.

References
----------
Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI 10.1016/j.ultramic.2018.04.008:
the figures a report shows.
"""

from __future__ import annotations

import datetime
import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from daskreg import plot
from daskreg.errors import ParameterError
from daskreg.io.atomic import atomic_path
from daskreg.params import DEFAULT_N, RegistrationParams
from daskreg.plot import _panels, _sources
from daskreg.plot._sources import ResultLike
from daskreg.summary import RESULT_VARIABLES, ResultSummary

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

__all__ = ["save_report"]

#: A4 landscape, inches: prints anywhere and suits the side-by-side panels.
PAGE_SIZE = (11.69, 8.27)
PNG_DPI = 100
# Bottom strip of each page kept for the caption and the footer.
_CAPTION_HEIGHT = 0.09
# Blank border of a page, inches.
_MARGIN = 0.35
# Longer lists (bad frames on the summary page) are cut, pointing to the full record.
_MAX_LISTED = 8
# Summary page: width of the key column (figure fraction) and the mean glyph width of
# the sans-serif font in ems, to wrap values within their column.
_KEY_WIDTH = 0.12
_CHAR_WIDTH = 0.55
_FONT = 9.5
_GREY = "0.35"


class _Page(NamedTuple):
    """One page: how to draw it, its title (unless the figure has one) and its caption."""

    draw: Callable[[], Figure]
    title: str
    caption: str


def save_report(
    result: ResultLike,
    path: str | os.PathLike,
    *,
    png_dir: str | os.PathLike | None = None,
    stack: Any = None,
) -> Path:
    """Write the registration report as a multi-page PDF.

    Parameters
    ----------
    result : RegistrationResult
        From :func:`daskreg.register` or :meth:`daskreg.Registration.average`.
    path : str or path-like
        The PDF to write (its folder must exist). It appears only when complete: the
        report is written to a temporary name beside it and renamed at the end.
    png_dir : str or path-like, optional
        Also write each page as ``<stem>_page<NN>.png`` into this folder (created if
        missing), at 100 dpi.
    stack : array_like or xarray.DataArray, optional
        The registered frames; adds a page with the example pair's correlation for
        several mask cutoffs (:func:`daskreg.plot.plot_parameter_sweep`).

    Returns
    -------
    pathlib.Path
        The PDF written.

    Raises
    ------
    ParameterError
        The result lacks a variable the report draws (it was not made by daskreg, or
        was edited).
    OutputPathError
        The folder of ``path`` does not exist or cannot be written.

    Notes
    -----
    Pages: summary; average and a frame with their spectra; shifts vs frame; the
    Fourier mask and the example correlation; the parameter sweep (with ``stack``);
    raw shift matrices with outliers; transitivity scores; corrected shift matrices. A
    normal run gives 7 pages (8 with ``stack``). A result whose engine kept no example
    views (``example_frame``, ``fourier_mask``, ``example_correlation``) lacks the frame
    (on the average's page) and the mask page, as the summary says.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from daskreg import register
    >>> from daskreg.synthetic import lattice_series
    >>> result = register(lattice_series(5, (64, 64)).stack, mask="hann", n=4)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> save_report(result, folder / "run.pdf").name
    'run.pdf'
    """
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    _check_result(result)
    path = Path(path)
    pages = _pages(result, stack)
    png_folder = None if png_dir is None else Path(png_dir)
    if png_folder is not None:
        png_folder.mkdir(parents=True, exist_ok=True)
    footer = _footer(result)
    metadata = {
        "Title": f"daskreg registration report: {_source_name(result)}",
        "Creator": footer,
    }
    with atomic_path(path) as temp, PdfPages(temp, metadata=metadata) as pdf:
        for number, page in enumerate(pages, start=1):
            fig = page.draw()
            try:
                box = _lay_out_page(fig, page, f"{footer}    page {number} of {len(pages)}")
                pdf.savefig(fig, bbox_inches=box)
                if png_folder is not None:
                    with atomic_path(png_folder / f"{path.stem}_page{number:02d}.png") as png:
                        fig.savefig(png, format="png", dpi=PNG_DPI, bbox_inches=box)
            finally:
                plt.close(fig)
    return path


def _check_result(result: ResultLike) -> None:
    missing = [name for name in RESULT_VARIABLES if name not in result.dataset]
    if "params" not in result.dataset.attrs:
        missing.append("attrs['params']")
    if missing:
        raise ParameterError(
            f"cannot draw the report: the result lacks {missing}; a RegistrationResult from "
            "daskreg.register (or its dataset saved and read back whole) has them all, so "
            "re-run the registration or reload the complete result"
        )


def _pages(result: ResultLike, stack: Any) -> list[_Page]:
    """The report's pages, in reading order: the outcome first, then how it was reached."""
    ds = result.dataset
    params = json.loads(ds.attrs["params"])
    threshold = _threshold_text(result.summary())
    pages = [
        _Page(lambda: _summary_page(result), "", ""),
        _Page(
            lambda: plot.plot_average(result),
            "The average and a single frame",
            "The average should show sharp, round columns; its spectrum should hold lattice "
            "reflections to higher frequencies than one frame's. Doubled or smeared columns "
            "mean misregistered frames. The frame's spectrum shows the lattice reflections "
            "and the noise floor that the Fourier mask must separate.",
        ),
        _Page(
            lambda: plot.plot_shifts(result),
            "Drift",
            "Displacement of each frame relative to the mean position of the used frames; "
            "steady drift is a smooth curve. Error bars: one-sigma uncertainty from the "
            "redundant pair measurements. Grey: frames left out.",
        ),
    ]
    if _sources.has_examples(result):
        pages.append(
            _Page(
                lambda: _mask_figure(result),
                f"Fourier mask: {plot.images.mask_label(params)}",
                "Left: the Fourier mask (orange, opacity = weight) over the frame's spectrum, "
                "and the spectrum it keeps. Right: the correlation of the first two used "
                "frames; the marked maximum is their relative shift. Neighbouring peaks "
                "nearly as high warn of unit-cell hops.",
            )
        )
    settings = _sweep_settings(params, (ds.sizes["y"], ds.sizes["x"]))
    if stack is not None and settings:
        pair = _sources.example_pair(result) if _sources.has_examples(result) else (0, 1)
        # The sweep replaces the mask, so a user mask array (not stored) is no obstacle.
        base = RegistrationParams.from_dict({**params, "mask": settings[0][0]})
        pages.append(
            _Page(
                lambda: plot.plot_parameter_sweep(
                    stack, settings, i=pair[0], j=pair[1], params=base
                ),
                "Parameter sweep",
                "The same pair correlated with other mask cutoffs: a robust choice finds the "
                "same shift, with one sharp maximum, for neighbouring settings.",
            )
        )
    pages += [
        _Page(
            lambda: plot.plot_shift_matrices(result),
            "Raw shift matrices",
            "Measured r_ij = s_j - s_i for every pair: a steady drift is a smooth ramp away "
            "from the zero diagonal. Black: outlier pairs, rejected; hatched: frames left "
            "out.",
        ),
        _Page(
            lambda: plot.plot_transitivity(result),
            "",  # one panel, titled by the figure itself
            "How far each pair's shift disagrees with the sums along two-step paths through "
            f"other frames. Pairs at or above the threshold ({threshold}"
            ") are outliers.",
        ),
        _Page(
            lambda: plot.plot_shift_matrices(result, corrected=True),
            "Corrected shift matrices",
            "Shift matrices after refilling the outlier pairs (dots) from transitivity; the "
            f"final shifts are computed from them (solver {params['solver']!r}: 'mean' takes "
            "the mean of each row, 'lstsq' a least-squares solve over the valid pairs).",
        ),
    ]
    return pages


def _mask_figure(result: ResultLike) -> Figure:
    """Two spectra stacked beside a large correlation: three in a row fill 40 % of a page."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10.5, 6.8), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[:, 1:])]
    plot.plot_fourier_mask(result, axes=axes)
    return fig


def _sweep_settings(params: dict[str, Any], shape: tuple[int, int]) -> list[tuple[str, float]]:
    """Half, the same and twice the run's cutoff, and the other common mask kind."""
    kind = params["mask"]
    if kind not in ("bandpass", "lowpass", "hann", "hamming", "blackman", "gaussian"):
        kind = "bandpass"
    n = float(params["n"] or DEFAULT_N)
    other = "lowpass" if kind == "bandpass" else "bandpass"
    # A cutoff beyond half the frame keeps no frequency (build_mask refuses it).
    largest = min(shape) / 2
    settings = [(kind, n / 2), (kind, n), (kind, 2 * n), (other, n)]
    return [(k, value) for k, value in settings if value <= largest]


def _threshold_text(summary: ResultSummary) -> str:
    if summary.threshold is None:
        return "none"
    origin = "chosen from the data" if summary.threshold_chosen else "as given"
    return f"{summary.threshold:.3g} px, {origin}"


def _source_name(result: ResultLike) -> str:
    return str(result.dataset.attrs.get("source", "not recorded"))


def _footer(result: ResultLike) -> str:
    version = result.dataset.attrs.get("daskreg_version", "?")
    return f"daskreg {version}    {_source_name(result)}"


def _lay_out_page(fig: Figure, page: _Page, footer: str) -> Bbox:
    """Title a figure (unless it has one), scale it to the top of the page, caption beneath.

    Returns the page as a box in the figure's inches, to save with
    ``savefig(bbox_inches=box)``.

    Stretching every figure to the page would leave square images floating in tall
    slots with page-high colour bars; keeping the aspect keeps panels and colour bars
    together, like a figure in a paper. The figure is laid out at its scaled size and
    the page margins lie outside it: confining constrained layout to a ``rect`` of a
    page-sized figure instead lets the titles of fixed-aspect image panels overlap the
    axis labels above them. A page-sized figure (the summary) is already laid out for
    the page and is kept as it is.
    """
    from matplotlib.transforms import Bbox

    if page.title and not fig.get_suptitle():
        fig.suptitle(page.title)
    natural_w, natural_h = fig.get_size_inches()
    page_w, page_h = PAGE_SIZE
    if np.allclose((natural_w, natural_h), PAGE_SIZE):
        scale, top = 1.0, 0.0
    else:
        room_w = page_w - 2 * _MARGIN
        room_h = page_h * (1 - _CAPTION_HEIGHT) - 2 * _MARGIN
        scale, top = min(room_w / natural_w, room_h / natural_h), _MARGIN
    width, height = natural_w * scale, natural_h * scale
    fig.set_size_inches(width, height)
    # Lower-left corner of the page, in inches from the figure's lower-left corner.
    left = -(page_w - width) / 2
    bottom = -(page_h - top - height)
    # Figure fractions (not inches): saving with a bbox remaps only those coordinates.
    if page.caption:
        fig.text(0.5, -0.01 * page_h / height, textwrap.fill(page.caption, 140), ha="center",
                 va="top", fontsize=_FONT)
    fig.text((left + 0.99 * page_w) / width, (bottom + 0.01 * page_h) / height, footer,
             ha="right", va="bottom", fontsize=7, color=_GREY)
    return Bbox.from_bounds(left, bottom, page_w, page_h)


# -- the summary page -------------------------------------------------------------------
def _summary_page(result: ResultLike) -> Figure:
    import matplotlib.pyplot as plt

    ds = result.dataset
    fig = plt.figure(figsize=PAGE_SIZE, layout="constrained")
    fig.text(0.05, 0.93, "Registration report", fontsize=20, weight="bold", va="baseline")
    created = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    fig.text(0.05, 0.895, f"{_source_name(result)}    (report made {created})",
             fontsize=_FONT, color=_GREY, va="baseline")
    params = json.loads(ds.attrs["params"])
    summary = result.summary()
    left = [
        ("Data", _data_rows(result, summary)),
        ("Frames", _frame_rows(summary)),
        ("Pairs", _pair_rows(summary)),
        ("Result", _result_rows(result, summary)),
    ]
    if not _sources.has_examples(result):
        left.append(("Note", [("", "this result stores no example frame, mask or correlation, "
                                   "so their pages are left out; draw them with "
                                   "daskreg.plot.plot_fourier_mask(Registration(stack))")]))
    right = [
        ("Parameters", _parameter_rows(params)),
        ("Timings", _timing_rows(summary)),
    ]
    for x, end, sections in ((0.05, 0.54, left), (0.58, 0.97, right)):
        y = 0.82
        for heading, rows in sections:
            y = _draw_section(fig, x, y, heading, rows, end)
    return fig


def _draw_section(
    fig: Figure, x: float, y: float, heading: str, rows: list, right: float
) -> float:
    """Draw a heading and key/value rows from height ``y`` down; return the next height.

    Values wrap at ``right`` (figure fraction); each line is its own text on a common
    baseline with its key, so keys and values line up whatever their glyphs.
    """
    line = _FONT * 1.45 / 72 / PAGE_SIZE[1]
    value_x = x + _KEY_WIDTH
    chars = int((right - value_x) * PAGE_SIZE[0] * 72 / (_CHAR_WIDTH * _FONT))
    fig.text(x, y, heading, fontsize=_FONT + 3, weight="bold", va="baseline")
    y -= 1.7 * line
    for key, value in rows:
        fig.text(x, y, key, fontsize=_FONT, color=_GREY, va="baseline")
        for text in textwrap.wrap(str(value), chars) or [""]:
            fig.text(value_x, y, text, fontsize=_FONT, va="baseline")
            y -= line
        y -= 0.3 * line
    return y - 0.9 * line


def _length(pixels: float, size: float | None, unit: str | None) -> str:
    return f"{pixels:.3g} px" + (f" ({pixels * size:.3g} {unit})" if size else "")


def _data_rows(result: ResultLike, summary: ResultSummary) -> list[tuple[str, str]]:
    cal = _panels.calibration_of(result.dataset.attrs)
    ny, nx = summary.frame_shape
    if cal.calibrated:
        py, px = cal.pixel_size
        size = f"{py:g} {cal.unit}" if py == px else f"{py:g} × {px:g} {cal.unit} (y × x)"
        calibration = f"{size} per pixel; field of view {ny * py:.3g} × {nx * px:.3g} {cal.unit}"
    else:
        calibration = "none: lengths in pixels"
    return [
        ("source", _source_name(result)),
        ("frames", f"{summary.n_frames}, each {ny} × {nx} px (rows × columns)"),
        ("calibration", calibration),
    ]


def _frame_rows(summary: ResultSummary) -> list[tuple[str, str]]:
    start, stop = summary.frame_range
    outside = {k: f"outside the frame range {start}:{stop}" for k in summary.outside_range}
    reasons = dict(sorted({**summary.bad_frames, **outside}.items()))
    listed = [f"{k}: {why}" for k, why in list(reasons.items())[:_MAX_LISTED]]
    if len(reasons) > _MAX_LISTED:
        listed.append(f"... and {len(reasons) - _MAX_LISTED} more (result.bad_frame_reasons)")
    rows = [("used", f"{summary.n_used} of {summary.n_frames}")]
    rows += [("left out" if n == 0 else "", text) for n, text in enumerate(listed or ["none"])]
    return rows


def _pair_rows(summary: ResultSummary) -> list[tuple[str, str]]:
    params = summary.params
    if summary.outlier_test == "robust":
        test = (
            f"robust solve, cut-off {_threshold_text(summary)} (residual scatter "
            f"{summary.pair_scatter:.3g} px), {_count(summary.hops_corrected, 'hop')} corrected"
            + ("" if summary.reliable else "; UNRELIABLE: the pairs disagree too much")
        )
    elif summary.outlier_test == "transitivity":
        test = f"transitivity, threshold {_threshold_text(summary)}, maxpaths {params.maxpaths}"
    elif summary.outlier_test == "nn":
        test = f"nearest neighbours, max_shift {params.max_shift:g} px"
    else:
        test = "none"
    band = f" (band {params.band})" if params.band else ""
    return [
        ("measured", _count(summary.n_pairs, "pair") + band),
        ("outlier test", test),
        ("outliers", f"{_count(summary.n_outliers, 'pair')}, of which {summary.n_failed_fits} "
                     "failed maximum fits"),
    ]


def _result_rows(result: ResultLike, summary: ResultSummary) -> list[tuple[str, str]]:
    cal = _panels.calibration_of(result.dataset.attrs)
    sizes = cal.pixel_size or (None, None)
    span = summary.drift_range
    typical = summary.uncertainty
    b = summary.crop
    height, width = b.ymax - b.ymin, b.xmax - b.xmin
    crop = f"y {b.ymin}:{b.ymax}, x {b.xmin}:{b.xmax}: {height} × {width} px"
    if cal.calibrated:
        crop += f" ({height * sizes[0]:.3g} × {width * sizes[1]:.3g} {cal.unit})"
    if not summary.cropped:
        crop += "; not applied (crop=False)"
    return [
        ("drift range", f"y {_length(span[0], sizes[0], cal.unit)}, "
                        f"x {_length(span[1], sizes[1], cal.unit)}"),
        ("uncertainty", f"median one-sigma y {typical[0]:.2g} px, x {typical[1]:.2g} px"),
        ("crop", crop),
    ]


# Options that matter for each maximum finder and outlier test.
_MAXIMA_OPTIONS = {
    "gf": ("num_peaks", "sigma_guess", "window_radius"),
    "com": ("num_iter", "min_window_frac"),
}
_OUTLIER_OPTIONS = {"transitivity": ("threshold", "maxpaths"), "nn": ("max_shift",)}


def _with_options(name: Any, params: dict[str, Any], keys: tuple[str, ...]) -> str:
    if not keys:
        return str(name)
    options = ", ".join(
        f"{key} {'auto' if params[key] is None else _format(params[key])}" for key in keys
    )
    return f"{name} ({options})"


def _parameter_rows(params: dict[str, Any]) -> list[tuple[str, str]]:
    """Every parameter that shaped the run, grouped by step (options of unused methods omitted)."""
    maxima, outliers = params["find_maxima"], params["outliers"]
    rows = [
        ("Fourier mask", plot.images.mask_label(params)),
        ("correlation", params["correlation"]),
        ("maximum", _with_options(maxima, params, _MAXIMA_OPTIONS.get(maxima, ()))),
        ("outlier test", _with_options(outliers, params, _OUTLIER_OPTIONS.get(outliers, ()))),
        ("frame range", _format(params["frames"] or "all")),
        ("bad_frames", _format(params["bad_frames"])),
        ("detect bad", str(params["detect_bad_frames"])),
        ("pairs", "all" if params["band"] is None else f"band {params['band']}"),
        ("shifts", f"solver {params['solver']}, precision {params['precision']}"),
        ("average", f"crop {params['crop']}"),
    ]
    if params.get("extra"):
        rows.append(("extra", json.dumps(params["extra"])))
    return rows


def _timing_rows(summary: ResultSummary) -> list[tuple[str, str]]:
    rows = [(stage, f"{seconds:.3g} s") for stage, seconds in summary.timings.items()]
    if summary.total_seconds is not None:
        rows.append(("total", f"{summary.total_seconds:.3g} s"))
    return rows or [("", "not recorded")]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)
