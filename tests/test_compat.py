"""``daskreg.compat.imstack``: a rigidregistration notebook runs by changing its import."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import tifffile

import daskreg
from daskreg.compat import imstack
from daskreg.params import REFERENCE
from daskreg.synthetic import lattice_series

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def series():
    return lattice_series(8, (128, 128), dose=100, seed=5)


@pytest.fixture(scope="module")
def tutorial(series):
    """The reference tutorial's calls, in its order, on a frames-last stack."""
    s = imstack(np.moveaxis(series.stack, 0, -1))
    s.getFFTs()
    s.makeFourierMask(mask="hann", n=4)
    s.setGaussianFitParams(num_peaks=5, sigma_guess=2, window_radius=6)
    s.findImageShifts(correlationType="cc", findMaxima="gf", verbose=False)
    s.get_outliers(threshold=2.0, maxpaths=5)
    s.make_corrected_Rij()
    s.get_averaged_image()
    return s


def test_reference_flow_gives_the_register_result(tutorial, series):
    expected = daskreg.register(
        series.stack, **{**REFERENCE, "mask": "hann", "find_maxima": "gf", "threshold": 2.0}
    )
    # The reference names rows "x": shifts_x are row corrections, i.e. -dy.
    np.testing.assert_allclose(tutorial.shifts_x, -expected.shifts.values[:, 0], atol=1e-9)
    np.testing.assert_allclose(tutorial.shifts_y, -expected.shifts.values[:, 1], atol=1e-9)
    crop = expected.crop
    assert (tutorial.xmin, tutorial.xmax, tutorial.ymin, tutorial.ymax) == (
        crop.ymin, crop.ymax, crop.xmin, crop.xmax
    )
    np.testing.assert_allclose(tutorial.cropped_image, expected.average.values, rtol=1e-6)


def test_matrices_are_antisymmetric_row_shifts(tutorial, series):
    # X_ij is the row displacement of frame j relative to frame i (s_j - s_i along y).
    np.testing.assert_allclose(tutorial.X_ij, -tutorial.X_ij.T, atol=1e-9)
    truth = series.shifts[None, :, 0] - series.shifts[:, None, 0]
    assert np.abs(tutorial.X_ij - truth).max() < 0.2


def test_save_writes_a_readable_tif(tutorial, tmp_path: Path):
    tutorial.save(tmp_path / "average")
    image = tifffile.imread(tmp_path / "average.tif")
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, tutorial.cropped_image, rtol=1e-6)


@pytest.mark.parametrize(
    ("method", "n_images"),
    [
        ("show", 4),
        ("show_Fourier_mask", 3),
        ("show_Fourier_mask_simple", 3),
        ("show_Rij", 2),
        ("show_Rij_c", 2),
    ],
)
def test_show_methods_draw_the_daskreg_figures(tutorial, method, n_images):
    import matplotlib.pyplot as plt

    figure = getattr(tutorial, method)()
    drawn = [ax for ax in figure.axes if ax.images]
    assert len(drawn) == n_images
    plt.close(figure)


def test_show_report_returns_its_figures(tutorial):
    import matplotlib.pyplot as plt

    figures = tutorial.show_report()
    assert len(figures) == 3
    for figure in figures:
        plt.close(figure)
