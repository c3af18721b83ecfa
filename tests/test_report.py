"""The PDF report: pages, no blank page, PNG per page, atomic writing."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402

import daskreg.plot  # noqa: E402
from daskreg import register  # noqa: E402
from daskreg import report as report_module  # noqa: E402
from daskreg.errors import ParameterError, RegistrationWarning  # noqa: E402
from daskreg.report import _summary_page, save_report  # noqa: E402
from daskreg.result import RegistrationResult  # noqa: E402
from daskreg.summary import STAGES  # noqa: E402
from daskreg.synthetic import lattice_series  # noqa: E402

BAD_FRAME = 3
# Pages of a normal run: summary, average (and a frame), shifts, mask, raw matrices,
# transitivity, corrected matrices; the stack adds the parameter sweep.
NORMAL_PAGES = 7
# A blank page renders as one flat colour (std 0); a page of text alone has a std of
# about 0.1 at 100 dpi, so 0.02 separates them with room on both sides.
MIN_PAGE_STD = 0.02


@pytest.fixture(scope="module")
def series():
    return lattice_series(6, (96, 96), seed=1, bad_frames={BAD_FRAME: "blank"})


@pytest.fixture(scope="module")
def result(series):
    with pytest.warns(RegistrationWarning, match=f"{BAD_FRAME}"):
        return register(series.to_xarray(), mask="hann", n=4)


@pytest.fixture(scope="module")
def report(result, series, tmp_path_factory):
    """One report with the sweep page and PNGs, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("report")
    path = result.save_report(folder / "run.pdf", png_dir=folder / "png", stack=series.stack)
    return path, sorted((folder / "png").glob("*.png"))


def _pdf_pages(path: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page\b", path.read_bytes()))


def test_report_has_a_page_per_figure_and_a_png_each(report):
    path, pngs = report
    assert path.name == "run.pdf"
    assert _pdf_pages(path) == NORMAL_PAGES + 1
    assert [p.name for p in pngs] == [f"run_page{k:02d}.png" for k in range(1, NORMAL_PAGES + 2)]


def test_no_page_is_blank(report):
    _, pngs = report
    for png in pngs:
        page = matplotlib.image.imread(png)[..., :3].mean(axis=-1)
        assert page.std() > MIN_PAGE_STD, png.name


def test_no_temporary_file_is_left(report):
    path, _ = report
    assert sorted(p.name for p in path.parent.iterdir()) == ["png", "run.pdf"]
    assert not list((path.parent / "png").glob(".*"))


def test_normal_run_without_stack_has_at_least_seven_pages(result, tmp_path):
    path = save_report(result, tmp_path / "plain.pdf")
    assert _pdf_pages(path) == NORMAL_PAGES >= 7


def test_failure_mid_way_leaves_no_pdf(result, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    # The transitivity page comes after several pages are already in the PDF.
    monkeypatch.setattr(daskreg.plot, "plot_transitivity", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        save_report(result, tmp_path / "broken.pdf")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_an_existing_report(result, tmp_path, monkeypatch):
    target = tmp_path / "run.pdf"
    target.write_bytes(b"previous report")
    monkeypatch.setattr(daskreg.plot, "plot_shifts", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        save_report(result, target)
    assert target.read_bytes() == b"previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["run.pdf"]


def test_result_missing_a_variable_is_refused(result, tmp_path):
    broken = RegistrationResult(result.dataset.drop_vars("shift_matrix_corrected"))
    with pytest.raises(ParameterError, match="shift_matrix_corrected"):
        save_report(broken, tmp_path / "broken.pdf")
    assert list(tmp_path.iterdir()) == []


def test_result_without_example_views_drops_their_pages(result, tmp_path):
    lean = RegistrationResult(
        result.dataset.drop_vars(["example_frame", "fourier_mask", "example_correlation"])
    )
    assert _pdf_pages(save_report(lean, tmp_path / "lean.pdf")) == NORMAL_PAGES - 1
    assert any("pages are left out" in t.get_text() for t in _summary_page(lean).texts)


def test_summary_names_calibration_bad_frame_and_threshold(result):
    texts = " ".join(t.get_text() for t in _summary_page(result).texts)
    reason = result.bad_frame_reasons[BAD_FRAME]
    assert f"{BAD_FRAME}: {reason}"[:40] in texts
    assert "0.0391 nm per pixel" in texts
    assert "chosen from the data" in texts
    assert "5 of 6" in texts


def test_summary_without_calibration(series):
    with pytest.warns(RegistrationWarning):
        plain = register(series.stack, mask="hann", n=4)
    texts = " ".join(t.get_text() for t in _summary_page(plain).texts)
    assert "none: lengths in pixels" in texts


@pytest.fixture(scope="module")
def pages(result, series):
    """Each page's figure as the report draws and lays it out (titled, scaled)."""
    import matplotlib.pyplot as plt

    drawn = []
    for page in report_module._pages(result, series.stack):
        fig = page.draw()
        report_module._lay_out_page(fig, page, "footer")
        drawn.append(fig)
    yield drawn
    for fig in drawn:
        plt.close(fig)


def _panels(fig):
    return [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]


def test_the_example_frame_is_shown_on_one_page(pages, result):
    frame = result.dataset["example_frame"].values
    shown = [
        number
        for number, fig in enumerate(pages, start=1)
        for ax in fig.axes
        for image in ax.get_images()
        if np.array_equal(np.asarray(image.get_array()), frame)
    ]
    assert len(shown) == 1, f"the frame is drawn on pages {shown}"


def test_no_page_is_titled_twice(pages):
    for fig in pages:
        panels = _panels(fig)
        if fig.get_suptitle() and len(panels) == 1:
            assert not panels[0].get_title(), (fig.get_suptitle(), panels[0].get_title())


def test_every_figure_fills_at_least_half_the_page(pages):
    # Each figure keeps its aspect; the page is 11.69 x 8.27 in, of which the margins
    # and the caption take about a fifth. Three panels in a row filled 40 %.
    page_area = np.prod(report_module.PAGE_SIZE)
    for number, fig in enumerate(pages, start=1):
        share = np.prod(fig.get_size_inches()) / page_area
        assert share >= 0.5, f"page {number} fills {share:.0%} of the page"


def test_timings_list_each_stage_and_one_total(result):
    texts = [t.get_text() for t in _summary_page(result).texts]
    summary = result.summary()
    timings = texts[texts.index("Timings") + 1 :]
    keys = [t for t in timings if t in (*STAGES, "total")]
    assert keys == [*STAGES, "total"]
    assert f"{summary.total_seconds:.3g} s" in timings
