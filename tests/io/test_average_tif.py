"""The average TIFF: small provenance, and a calibration ImageJ/Fiji reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

import daskreg
from daskreg.io import open_stack
from daskreg.io.average_tif import DESCRIPTION_FORMAT, write_average_tif
from daskreg.result import RegistrationResult
from daskreg.synthetic import lattice_series

PAIR_VARIABLES = ("shift_matrix", "shift_matrix_corrected", "outliers", "measured")


@pytest.fixture(scope="module")
def small() -> RegistrationResult:
    series = lattice_series(6, (64, 64), dose=200, seed=2)
    return daskreg.register(series.to_xarray(), engine="numpy")


def tiled(result: RegistrationResult, n_frames: int) -> RegistrationResult:
    """A dense n_frames result made of a small one's frames, repeated.

    Its values mean nothing, but its variables have the shapes of a real dense
    n_frames run (N x N pair matrices), which take ~50 s to compute at 300 frames.
    """
    index = np.arange(n_frames) % result.dataset.sizes["frame"]
    frames = np.arange(n_frames)
    dataset = result.dataset.isel(frame=index, frame_i=index, frame_j=index)
    return RegistrationResult(dataset.assign_coords(frame=frames, frame_i=frames, frame_j=frames))


def pixel_size_fiji_reads(path: Path) -> tuple[tuple[float, float], str | None]:
    """(py, px) and unit as ImageJ reads them: X/YResolution in pixels per ``unit=``."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        tags = tif.pages[0].tags
        x_num, x_den = tags["XResolution"].value
        y_num, y_den = tags["YResolution"].value
        return (y_den / y_num, x_den / x_num), tif.imagej_metadata.get("unit")


def test_a_300_frame_average_is_small_and_names_its_result_store(
    small: RegistrationResult, tmp_path: Path
) -> None:
    big = tiled(small, 300)
    assert big.shift_matrix.shape == (300, 300, 2)
    path = big.save_tif(tmp_path / "avg.tif", result_store=tmp_path / "avg.result.zarr")
    image_bytes = big.average.size * 4
    # The issue's bound; the N x N matrices alone took 8 MB here.
    assert path.stat().st_size < 2**20 + image_bytes
    image, description = daskreg.read_average_tif(path)
    np.testing.assert_array_equal(image, big.average.values.astype(np.float32))
    assert not set(PAIR_VARIABLES) & set(description)
    assert description["result_store"] == str(tmp_path / "avg.result.zarr")
    assert np.array(description["shifts"]).shape == (300, 2)
    np.testing.assert_allclose(description["shifts"], big.shifts.values)
    assert description["bad_frames"] == np.flatnonzero(big.bad_frames.values).tolist()
    assert description["crop"] == dict(zip(("ymin", "ymax", "xmin", "xmax"), big.crop, strict=True))
    assert description["params"] == json.loads(big.dataset.attrs["params"])
    assert description["n_outlier_pairs"] == big.summary().n_outliers


def test_fiji_reads_the_pixel_size_and_unit(small: RegistrationResult, tmp_path: Path) -> None:
    path = small.save_tif(tmp_path / "avg.tif")
    pixel, unit = pixel_size_fiji_reads(path)
    # Rational tags of a float: ~1e-9 relative.
    assert pixel == pytest.approx(small.dataset.attrs["pixel_size"], rel=1e-7)
    assert unit == "nm"
    # daskreg reads its own average back with that calibration.
    again = open_stack(path)
    assert again.attrs["pixel_size"] == pytest.approx(small.dataset.attrs["pixel_size"])
    assert again.attrs["unit"] == "nm"


def test_a_non_ascii_unit_is_written_as_imagej_writes_it(tmp_path: Path) -> None:
    path = write_average_tif(
        tmp_path / "a.tif", np.zeros((4, 6)), {"unit": "µm"}, pixel_size=(0.5, 0.25)
    )
    pixel, unit = pixel_size_fiji_reads(path)
    assert pixel == pytest.approx((0.5, 0.25)) and unit == "\\u00B5m"
    assert open_stack(path).attrs["pixel_size"] == pytest.approx((500.0, 250.0))


def test_uncalibrated_average_has_no_unit(tmp_path: Path) -> None:
    # What an uncalibrated result holds: pixel size (1, 1) in "px".
    path = write_average_tif(
        tmp_path / "a.tif", np.zeros((4, 6)), {"unit": "px"}, pixel_size=(1.0, 1.0)
    )
    with tifffile.TiffFile(path) as tif:
        assert "unit" not in tif.imagej_metadata
    assert open_stack(path).attrs["unit"] == "px"


def test_an_average_of_the_earlier_format_is_still_read(tmp_path: Path) -> None:
    # Before the ImageJ format the JSON was the ImageDescription of a plain TIFF.
    path = tmp_path / "old.tif"
    doc = {"format": DESCRIPTION_FORMAT, "shifts": [[0.0, 1.0]], "shift_matrix": [[[0, 0]]]}
    tifffile.imwrite(path, np.ones((3, 3), np.float32), description=json.dumps(doc), metadata=None)
    image, description = daskreg.read_average_tif(path)
    assert description == doc and image.shape == (3, 3)
