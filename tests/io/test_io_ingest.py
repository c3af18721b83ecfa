"""ingest: round trips through the Zarr v3 store, all-or-nothing writes, overwrite rules."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr

from daskreg.errors import OutputPathError
from daskreg.io import ingest, open_stack


def calibrated(frames: int = 6) -> xr.DataArray:
    data = np.arange(frames * 16 * 12, dtype=np.uint16).reshape(frames, 16, 12)
    return xr.DataArray(
        data,
        dims=("frame", "y", "x"),
        coords={"y": 2.0 + 0.25 * np.arange(16), "x": 0.5 * np.arange(12)},
        attrs={"unit": "nm", "signal_title": "HAADF", "original_metadata": '{"kV": 300}'},
    )


def failing_stack() -> da.Array:
    def fail(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("disk full")

    return da.zeros((6, 8, 8), chunks=(2, 8, 8)).map_blocks(fail, dtype=float)


def test_numpy_round_trip_keeps_values_and_calibration(tmp_path: Path) -> None:
    source = calibrated()
    stack = ingest(source, tmp_path / "s.zarr", chunks=4)
    np.testing.assert_array_equal(stack.values, source.values)
    assert stack.data.chunks == ((4, 2), (16,), (12,))
    assert stack.attrs["pixel_size"] == pytest.approx((0.25, 0.5))
    assert stack.attrs["unit"] == "nm"
    assert stack.attrs["signal_title"] == "HAADF"
    assert json.loads(stack.attrs["original_metadata"]) == {"kV": 300}
    np.testing.assert_allclose(stack.y, source.y)
    reopened = open_stack(tmp_path / "s.zarr")
    assert reopened.attrs == stack.attrs


def test_store_layout_is_a_group_with_a_frame_chunked_stack(tmp_path: Path) -> None:
    ingest(calibrated(), tmp_path / "s.zarr", chunks=2)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    array = group["stack"]
    assert array.metadata.zarr_format == 3
    assert array.metadata.dimension_names == ("frame", "y", "x")
    assert array.chunks == (2, 16, 12)
    assert xr.open_zarr(tmp_path / "s.zarr", consolidated=False)["stack"].shape == (6, 16, 12)


@pytest.mark.realdata
def test_tiff_to_zarr_with_chunks(data_dir: Path, tmp_path: Path) -> None:
    source = data_dir / "derived_STO_HAADF_drift_20x512.tif"
    stack = ingest(source, tmp_path / "drift.zarr", chunks=8)
    assert stack.data.chunks == ((8, 8, 4), (512,), (512,))
    assert stack.attrs["pixel_size"] == pytest.approx((0.010013, 0.010013), rel=1e-4)
    assert stack.attrs["source"] == str(source)
    np.testing.assert_array_equal(stack[::6].values, tifffile.imread(source)[::6])


def test_failure_leaves_neither_store_nor_partial_directory(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="disk full"):
        ingest(failing_stack(), tmp_path / "s.zarr")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_store(tmp_path: Path) -> None:
    ingest(calibrated(), tmp_path / "s.zarr")
    with pytest.raises(RuntimeError, match="disk full"):
        ingest(failing_stack(), tmp_path / "s.zarr", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]
    np.testing.assert_array_equal(open_stack(tmp_path / "s.zarr").values, calibrated().values)


def test_existing_store_is_refused_unless_overwrite(tmp_path: Path) -> None:
    ingest(calibrated(), tmp_path / "s.zarr")
    with pytest.raises(OutputPathError, match=r"overwrite=True \(--overwrite"):
        ingest(calibrated(3), tmp_path / "s.zarr")
    stack = ingest(calibrated(3), tmp_path / "s.zarr", overwrite=True)
    assert stack.shape == (3, 16, 12)
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]


def test_store_can_be_rewritten_from_itself(tmp_path: Path) -> None:
    ingest(calibrated(), tmp_path / "s.zarr", chunks=1)
    stack = ingest(tmp_path / "s.zarr", tmp_path / "s.zarr", chunks=3, overwrite=True)
    assert stack.data.chunks[0] == (3, 3)
    np.testing.assert_array_equal(stack.values, calibrated().values)


def test_overwrite_never_deletes_something_that_is_not_a_store(tmp_path: Path) -> None:
    precious = tmp_path / "results"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(OutputPathError, match="not a Zarr store"):
        ingest(calibrated(), precious, overwrite=True)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_missing_parent_directory(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="does not exist; create it first"):
        ingest(calibrated(), tmp_path / "missing" / "s.zarr")
