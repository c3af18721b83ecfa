"""Errors of open_stack: each a DaskregError naming the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from daskreg.errors import (
    FileFormatError,
    FrameAxisError,
    StackDtypeError,
    StackFileNotFoundError,
    StackShapeError,
)
from daskreg.io import SUPPORTED_EXTENSIONS, open_stack


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StackFileNotFoundError, match="no such file") as caught:
        open_stack(tmp_path / "nothing.tif")
    assert isinstance(caught.value, FileNotFoundError)


def test_unsupported_extension_lists_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    with pytest.raises(FileFormatError, match=r"'\.txt'.*\.dm3, \.dm4.*\.tif, \.tiff, \.zarr"):
        open_stack(path)
    assert ".tif" in SUPPORTED_EXTENSIONS


def test_directory_that_is_not_a_zarr_store(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="not a Zarr store"):
        open_stack(tmp_path)


def test_garbage_with_emd_extension(tmp_path: Path) -> None:
    path = tmp_path / "garbage.emd"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(FileFormatError, match=r"garbage\.emd.*EMD"):
        open_stack(path)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name",
    [
        "derived_STO_HAADF_drift_20x512.tif",
        "multi_signal.dm3",
        "dmTest_3D_int16_64x65x66.dm4",
        "16_STOimage_1.ser",
        "Acquisition_18.emd",
        "atomap_STO_ADF_cropped.hspy",
    ],
)
def test_truncated_real_file(name: str, truncated_copy) -> None:
    path = truncated_copy(name)
    with pytest.raises(FileFormatError, match=r"truncated") as caught:
        open_stack(path)
    assert str(path) in str(caught.value)


@pytest.mark.realdata
def test_emi_without_its_ser(data_dir: Path, tmp_path: Path) -> None:
    emi = tmp_path / "16_STOimage.emi"
    emi.write_bytes((data_dir / emi.name).read_bytes())
    with pytest.raises(FileFormatError, match=r"_1\.ser"):
        open_stack(emi)


@pytest.mark.realdata
def test_tiff_truncated_inside_the_last_frame(truncated_copy) -> None:
    path = truncated_copy("derived_STO_HAADF_drift_20x512.tif", fraction=0.999)
    with pytest.raises(FileFormatError, match="truncated"):
        open_stack(path)


@pytest.mark.parametrize("shape", [(5,), (2, 2, 2, 2, 2, 2), ()])
def test_wrong_number_of_dimensions(shape: tuple[int, ...]) -> None:
    with pytest.raises(StackShapeError, match=f"{len(shape)}-D"):
        open_stack(np.zeros(shape))


@pytest.mark.parametrize("dtype", ["complex64", "U3", "bool", "object", "datetime64[s]"])
def test_non_real_numeric_dtypes(dtype: str) -> None:
    with pytest.raises(StackDtypeError, match="astype"):
        open_stack(np.zeros((2, 4, 4), dtype=dtype))


def test_dtype_is_checked_without_computing() -> None:
    def fail(block: np.ndarray) -> np.ndarray:
        raise AssertionError("computed")

    lazy = da.zeros((2, 4, 4), chunks=1).map_blocks(fail, dtype=np.complex128)
    with pytest.raises(StackDtypeError):
        open_stack(lazy)


@pytest.mark.parametrize(
    ("shape", "frame_axis", "match"),
    [
        ((3, 4, 4), 3, "out of range"),
        ((3, 4, 4), True, "must be an int"),
        ((3, 4, 4), 1.0, "must be an int"),
        ((4, 4), 0, "2-D image"),
    ],
)
def test_invalid_frame_axis(shape, frame_axis, match: str) -> None:
    with pytest.raises(FrameAxisError, match=match):
        open_stack(np.zeros(shape), frame_axis=frame_axis)


def test_frame_axis_cannot_be_an_image_axis() -> None:
    array = xr.DataArray(np.zeros((3, 4, 5)), dims=("frame", "y", "x"))
    with pytest.raises(FrameAxisError, match="is the x axis"):
        open_stack(array, frame_axis=2)
