"""TIFF, Zarr and netCDF readers on files written here, covering calibration variants."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr

from daskreg.errors import RegistrationWarning
from daskreg.io import open_stack


def ramp(shape: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return np.arange(np.prod(shape)).astype(dtype).reshape(shape)


def test_imagej_tiff_converts_microns_and_reads_frame_interval(tmp_path: Path) -> None:
    path = tmp_path / "imagej.tif"
    data = ramp((6, 10, 12))
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.002, 1 / 0.004),  # pixels per µm along x, y
        metadata={"axes": "TYX", "unit": "\\u00B5m", "finterval": 0.5},
    )
    stack = open_stack(path)
    np.testing.assert_array_equal(stack.values, data)
    assert stack.attrs["pixel_size"] == pytest.approx((4.0, 2.0), rel=1e-6)
    assert stack.attrs["unit"] == "nm"
    np.testing.assert_allclose(stack.frame, 0.5 * np.arange(6))
    assert stack.frame.attrs["units"] == "s"


def test_imagej_hyperstack_puts_t_as_frame_and_z_first(tmp_path: Path) -> None:
    path = tmp_path / "tzyx.tif"
    data = ramp((5, 2, 8, 8))
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    stack = open_stack(path)
    assert stack.dims == ("series", "frame", "y", "x")
    np.testing.assert_array_equal(stack.values, np.swapaxes(data, 0, 1))


def test_ome_tiff_physical_size(tmp_path: Path) -> None:
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(
        path,
        ramp((5, 8, 6)),
        ome=True,
        metadata={
            "axes": "TYX",
            "PhysicalSizeX": 25.0,
            "PhysicalSizeXUnit": "pm",
            "PhysicalSizeY": 0.05,
            "PhysicalSizeYUnit": "nm",
        },
    )
    stack = open_stack(path)
    assert stack.attrs["pixel_size"] == pytest.approx((0.05, 0.025))
    assert stack.attrs["unit"] == "nm"


def test_plain_tiff_frames_first_and_uncalibrated(tmp_path: Path) -> None:
    path = tmp_path / "plain.tiff"
    data = ramp((7, 8, 6), "float32")
    tifffile.imwrite(path, data)
    stack = open_stack(path)
    np.testing.assert_array_equal(stack.values, data)
    assert stack.attrs["unit"] == "px"


def test_tiff_in_centimetres(tmp_path: Path) -> None:
    path = tmp_path / "cm.tif"
    tifffile.imwrite(path, ramp((8, 6)), resolution=(2e7, 1e7), resolutionunit="CENTIMETER")
    assert open_stack(path).attrs["pixel_size"] == pytest.approx((1.0, 0.5))


def test_tiff_stack_pickles_for_worker_processes(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    data = ramp((5, 8, 6))
    tifffile.imwrite(path, data)
    restored = pickle.loads(pickle.dumps(open_stack(path).data))
    np.testing.assert_array_equal(restored.compute(), data)


def test_zarr_plain_array_is_frames_first(tmp_path: Path) -> None:
    path = tmp_path / "plain.zarr"
    data = ramp((5, 8, 6))
    zarr.create_array(str(path), data=data, chunks=(1, 8, 6))
    stack = open_stack(path)
    np.testing.assert_array_equal(stack.values, data)
    assert stack.attrs["unit"] == "px"


def test_zarr_group_data_array_with_named_dims_and_attrs(tmp_path: Path) -> None:
    path = tmp_path / "group.zarr"
    group = zarr.open_group(str(path), mode="w")
    array = group.create_array(
        "data", shape=(8, 6, 4), dtype="float32", dimension_names=("y", "x", "frame")
    )
    array[...] = ramp((8, 6, 4), "float32")
    array.attrs.update(pixel_size=[0.2, 0.3], unit="nm", signal_title="HAADF")
    group.create_array("other", shape=(2, 2, 2), dtype="uint8")
    stack = open_stack(path)
    assert stack.dims == ("frame", "y", "x")
    assert stack.attrs["pixel_size"] == pytest.approx((0.2, 0.3))
    assert stack.attrs["signal_title"] == "HAADF"
    assert open_stack(path, signal="other").shape == (2, 2, 2)


def test_zarr_group_without_preferred_name_warns_about_its_choice(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    group.create_array("small", shape=(2, 4, 4), dtype="uint8")
    group.create_array("large", shape=(3, 4, 4), dtype="uint8")
    with pytest.warns(RegistrationWarning, match=r"\[1\] 'small'.*took \[0\] 'large'"):
        assert open_stack(tmp_path / "two.zarr").shape == (3, 4, 4)


def test_netcdf_variable_with_coordinates(tmp_path: Path) -> None:
    path = tmp_path / "stack.nc"
    data = ramp((4, 6, 5), "int16")
    xr.Dataset(
        {
            "stack": (("frame", "y", "x"), data),
            "dose": ("frame", np.ones(4)),
        },
        coords={"y": ("y", 0.5 * np.arange(6), {"units": "nm"}), "x": 0.5 * np.arange(5)},
    ).to_netcdf(path)
    stack = open_stack(path)
    np.testing.assert_array_equal(stack.values, data)
    assert stack.attrs["pixel_size"] == pytest.approx((0.5, 0.5))
    assert stack.attrs["unit"] == "nm"
    assert stack.attrs["source"] == str(path)
