"""Figures of daskreg.plot on small synthetic registrations: panels, labels, overlays."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from daskreg import Registration, register  # noqa: E402
from daskreg.errors import ParameterError, RegistrationWarning  # noqa: E402
from daskreg.plot import (  # noqa: E402
    plot_average,
    plot_fourier_mask,
    plot_frame,
    plot_parameter_sweep,
    plot_shift_matrices,
    plot_shifts,
    plot_transitivity,
)
from daskreg.result import RegistrationResult  # noqa: E402
from daskreg.synthetic import lattice_series  # noqa: E402

SETTINGS = [("bandpass", 2), ("bandpass", 4), ("hann", 4)]
BAD_FRAME = 3
# A pair flagged by hand: the outlier test's own tuning must not decide whether the
# overlay is exercised.
OUTLIER_PAIR = (1, 4)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def series():
    return lattice_series(6, (96, 96), seed=1, bad_frames={BAD_FRAME: "blank"})


@pytest.fixture(scope="module", params=["calibrated", "pixels"])
def result(request, series):
    """A registration with a blank (bad) frame and one outlier pair, with and without
    a calibration."""
    stack = series.to_xarray() if request.param == "calibrated" else series.stack
    with pytest.warns(RegistrationWarning, match=f"{BAD_FRAME}"):
        registered = register(stack, mask="hann", n=4)
    ds = registered.dataset.copy(deep=True)
    i, j = OUTLIER_PAIR
    ds["outliers"][i, j] = ds["outliers"][j, i] = True
    return RegistrationResult(ds)


def _calibrated(result: RegistrationResult) -> bool:
    return "pixel_size" in result.dataset.attrs


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _has_unit(label: str) -> bool:
    return label.endswith(")") and "(" in label


# Frame indices and pair counts are numbers without a unit.
_UNITLESS = ("frame", "number of")


def _shared_x_label(ax) -> str:
    """The x label of a panel stacked on another that carries it (plot_shifts)."""
    siblings = ax.get_shared_x_axes().get_siblings(ax)
    return next((s.get_xlabel() for s in siblings if s.get_xlabel()), "")


def _with_gid(ax, gid):
    return [a for a in ax.get_children() if a.get_gid() == gid]


FIGURES = {
    "frame": (lambda r, s: plot_frame(r), 2, 0),
    "fourier_mask": (lambda r, s: plot_fourier_mask(r), 3, 1),
    "raw_matrices": (lambda r, s: plot_shift_matrices(r), 2, 2),
    "corrected_matrices": (lambda r, s: plot_shift_matrices(r, corrected=True), 2, 2),
    "shifts": (lambda r, s: plot_shifts(r), 2, 0),
    "transitivity": (lambda r, s: plot_transitivity(r), 1, 0),
    "average": (lambda r, s: plot_average(r), 4, 0),
    "sweep": (lambda r, s: plot_parameter_sweep(s, SETTINGS), 6, 0),
}


@pytest.mark.parametrize("name", FIGURES)
def test_figure_panels_and_labels(name, result, series):
    draw, n_panels, n_colorbars = FIGURES[name]
    stack = series.to_xarray() if _calibrated(result) else series.stack
    fig = draw(result, stack)
    assert isinstance(fig, matplotlib.figure.Figure)
    panels = _panels(fig)
    assert len(panels) == n_panels
    assert len(fig.axes) == n_panels + n_colorbars
    for ax in panels:
        x_label = ax.get_xlabel() or _shared_x_label(ax)
        for label in (x_label, ax.get_ylabel()):
            assert _has_unit(label) or label.startswith(_UNITLESS), (name, label)
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            assert _has_unit(ax.get_ylabel()), (name, ax.get_ylabel())


@pytest.mark.parametrize("name", ["frame", "average", "sweep"])
def test_spectrum_axes_in_physical_or_frame_units(name, result, series):
    draw, _, _ = FIGURES[name]
    stack = series.to_xarray() if _calibrated(result) else series.stack
    labels = {ax.get_xlabel() for ax in _panels(draw(result, stack))}
    unit = "(1/nm)" if _calibrated(result) else "(cycles per frame)"
    assert any(label.endswith(unit) for label in labels), labels


def test_scale_bar_only_with_calibration(result):
    image_ax = plot_frame(result).axes[0]
    assert len(_with_gid(image_ax, "scale_bar")) == int(_calibrated(result))


def test_shifts_have_physical_axis_only_with_calibration(result):
    for ax in plot_shifts(result).axes:
        assert len(ax.child_axes) == int(_calibrated(result))


def test_raw_matrices_paint_the_outliers(result):
    expected = result.outliers.values
    for ax in _panels(plot_shift_matrices(result)):
        (overlay,) = _with_gid(ax, "outliers")
        np.testing.assert_array_equal(overlay.get_array()[..., 3] > 0, expected)


def test_corrected_matrices_mark_the_refilled_pairs(result):
    rows, cols = np.nonzero(result.outliers.values)
    for ax in _panels(plot_shift_matrices(result, corrected=True)):
        (dots,) = _with_gid(ax, "outliers")
        np.testing.assert_array_equal(dots.get_xdata(), cols)
        np.testing.assert_array_equal(dots.get_ydata(), rows)


def test_matrices_hatch_the_pairs_of_the_bad_frame(result):
    assert result.bad_frames.values[BAD_FRAME]
    ax = plot_shift_matrices(result).axes[0]
    (hatch,) = _with_gid(ax, "bad_frames")
    # Row and column of the bad frame: 2 N - 1 cells of the 6 x 6 matrix.
    assert hatch.get_array().count() == 2 * result.bad_frames.size - 1


def test_shifts_mark_the_bad_frame(result):
    for ax in plot_shifts(result).axes:
        assert len(_with_gid(ax, "bad_frame")) == int(result.bad_frames.sum())


def test_transitivity_draws_the_threshold(result):
    ax = plot_transitivity(result).axes[0]
    (line,) = _with_gid(ax, "threshold")
    assert line.get_xdata()[0] == pytest.approx(float(result.dataset.attrs["threshold_used"]))
    assert ax.get_xscale() == "log"


def test_fourier_mask_of_a_registration_marks_the_measured_shift(series):
    reg = Registration(series.stack, mask="hann", n=4)
    fig = plot_fourier_mask(reg, 0, 2)
    (peak,) = _with_gid(fig.axes[2], "peak")
    measured = reg.find_shifts().values[0, 2]
    # The figure runs the registration's own pair measurement on the same two frames.
    np.testing.assert_allclose([peak.get_ydata()[0], peak.get_xdata()[0]], measured, atol=1e-6)


def test_fourier_mask_of_a_result_marks_its_stored_shift(result):
    i, j = (int(k) for k in np.flatnonzero(~result.bad_frames.values)[:2])
    (peak,) = _with_gid(plot_fourier_mask(result).axes[2], "peak")
    stored = result.shift_matrix.values[i, j]
    np.testing.assert_allclose([peak.get_ydata()[0], peak.get_xdata()[0]], stored)


def test_result_refuses_a_pair_it_does_not_store(result):
    with pytest.raises(ParameterError, match="stores the correlation of frames"):
        plot_fourier_mask(result, 0, 5)
    with pytest.raises(ParameterError, match="stores frame"):
        plot_frame(result, frame=5)


def test_draws_into_given_axes(result):
    fig, axes = plt.subplots(1, 2)
    assert plot_frame(result, axes=axes) is fig
    with pytest.raises(ParameterError, match="draws 2 panel"):
        plot_frame(result, axes=axes[:1])


def test_result_without_example_views(result):
    lean = RegistrationResult(
        result.dataset.drop_vars(["example_frame", "fourier_mask", "example_correlation"])
    )
    assert len(_panels(plot_average(lean))) == 2
    with pytest.raises(ParameterError, match="example"):
        plot_frame(lean)


def test_banded_matrices_are_drawn_by_offset():
    stack = lattice_series(8, (64, 64), seed=2).stack
    banded = register(stack, mask="hann", n=4, band=2)
    assert "offset" in banded.dataset.dims
    ax = plot_shift_matrices(banded).axes[0]
    assert ax.get_xlabel() == "offset j - i (frames)"
    assert ax.get_xlim() == (-2.5, 2.5)
    (peak,) = _with_gid(plot_fourier_mask(banded).axes[2], "peak")
    stored = banded.shift_matrix.sel(frame_i=0, offset=1).values
    np.testing.assert_allclose([peak.get_ydata()[0], peak.get_xdata()[0]], stored)


def test_sweep_titles_give_each_shift_and_refuse_no_settings(series):
    fig = plot_parameter_sweep(series.stack, SETTINGS, i=0, j=1)
    titles = [ax.get_title() for ax in fig.axes[len(SETTINGS) :]]
    assert all(title.startswith("r = (") for title in titles)
    with pytest.raises(ParameterError, match="settings is empty"):
        plot_parameter_sweep(series.stack, [])


def test_transitivity_without_scores_says_so(series):
    with pytest.warns(RegistrationWarning):
        nn = register(series.stack, mask="hann", n=4, outliers="nn")
    ax = plot_transitivity(nn).axes[0]
    assert "no transitivity scores" in ax.texts[0].get_text()


def test_importing_daskreg_plot_does_not_import_matplotlib():
    code = "import sys, daskreg.plot, daskreg.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
