"""open_stack on in-memory sources: numpy, dask, xarray, HyperSpy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from daskreg.errors import FrameAxisError, ParameterError
from daskreg.io import open_stack


def ramp(shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    return np.arange(np.prod(shape), dtype=dtype).reshape(shape)


def explode(block: np.ndarray) -> np.ndarray:
    raise AssertionError("open_stack computed data it should only have described")


def test_numpy_frames_first() -> None:
    data = ramp((6, 16, 12))
    stack = open_stack(data)
    assert isinstance(stack.data, da.Array)
    assert stack.dims == ("frame", "y", "x")
    np.testing.assert_array_equal(stack.values, data)
    assert stack.attrs["pixel_size"] == (1.0, 1.0)
    assert stack.attrs["unit"] == "px"
    assert stack.attrs["source"] == "numpy.ndarray"
    np.testing.assert_array_equal(stack.frame, np.arange(6))


def test_single_image_is_one_frame() -> None:
    stack = open_stack(ramp((16, 12)))
    assert stack.dims == ("frame", "y", "x")
    assert stack.shape == (1, 16, 12)


def test_frames_last_look_is_refused_with_the_fix() -> None:
    message = (
        r"shape \(512, 512, 20\) looks like frames last; pass frame_axis=-1 "
        r"\(or frame_axis=0 if the 512 frames are really on axis 0\)"
    )
    with pytest.raises(FrameAxisError, match=message):
        open_stack(np.zeros((512, 512, 20), dtype=np.uint16))


@pytest.mark.parametrize("frame_axis", [-1, 2])
def test_frames_last_with_frame_axis(frame_axis: int) -> None:
    data = ramp((5, 32, 32))
    stack = open_stack(np.moveaxis(data, 0, -1), frame_axis=frame_axis)
    np.testing.assert_array_equal(stack.values, data)


def test_frame_axis_zero_overrides_the_frames_last_look() -> None:
    stack = open_stack(da.zeros((64, 64, 8), chunks=-1), frame_axis=0)
    assert stack.shape == (64, 64, 8)


def test_dask_array_stays_lazy_and_is_rechunked_by_frames() -> None:
    lazy = da.zeros((10, 24, 20), chunks=(3, 8, 8)).map_blocks(explode, dtype=float)
    stack = open_stack(lazy, chunks=4)
    assert stack.data.chunks == ((4, 4, 2), (24,), (20,))


def test_default_chunks_hold_whole_frames_within_64_mib() -> None:
    stack = open_stack(da.zeros((100, 1024, 1024), dtype=np.float32, chunks=(1, 256, 256)))
    assert stack.data.chunksize == (16, 1024, 1024)


def test_chunks_mapping_and_its_validation() -> None:
    data = da.zeros((2, 6, 8, 8), chunks=-1)
    stack = open_stack(data, chunks={"series": 2, "frame": 3})
    assert stack.data.chunksize == (2, 3, 8, 8)
    with pytest.raises(ParameterError, match="registration works on whole frames"):
        open_stack(data, chunks={"y": 4})
    with pytest.raises(ParameterError, match="does not have"):
        open_stack(data, chunks={"time": 4})
    with pytest.raises(ParameterError, match="positive int"):
        open_stack(data, chunks=0)


def test_dataarray_in_another_dim_order_keeps_its_calibration() -> None:
    data = ramp((4, 8, 10))
    array = xr.DataArray(
        np.transpose(data, (1, 2, 0)),
        dims=("y", "x", "frame"),
        coords={"y": 1.0 + 0.5 * np.arange(8), "x": 0.5 * np.arange(10)},
        attrs={"unit": "Å"},
    )
    stack = open_stack(array)
    np.testing.assert_array_equal(stack.values, data)
    assert stack.attrs["pixel_size"] == pytest.approx((0.05, 0.05))
    assert stack.attrs["unit"] == "nm"
    assert float(stack.y[0]) == pytest.approx(0.1)


def test_dataarray_time_dim_becomes_frame_with_its_coordinate() -> None:
    array = xr.DataArray(
        ramp((3, 4, 5)),
        dims=("time", "y", "x"),
        coords={"time": ("time", [0.0, 0.5, 1.0], {"units": "s"})},
    )
    stack = open_stack(array)
    assert stack.dims == ("frame", "y", "x")
    np.testing.assert_array_equal(stack.frame, [0.0, 0.5, 1.0])
    assert stack.frame.attrs["units"] == "s"


def test_sliced_stack_takes_pixel_size_from_coordinates() -> None:
    array = xr.DataArray(
        ramp((2, 8, 8)),
        dims=("frame", "y", "x"),
        coords={"y": 0.1 * np.arange(8), "x": 0.1 * np.arange(8)},
        attrs={"unit": "nm", "pixel_size": (0.1, 0.1)},
    )
    stack = open_stack(open_stack(array)[:, ::2, ::2])
    assert stack.attrs["pixel_size"] == pytest.approx((0.2, 0.2))


def test_sliced_uncalibrated_stack_stays_in_pixels() -> None:
    stack = open_stack(open_stack(ramp((2, 8, 8)))[:, ::2, ::2])
    assert stack.attrs["pixel_size"] == (2.0, 2.0)
    assert stack.attrs["unit"] == "px"
    assert "calibration_note" not in stack.attrs


def test_uneven_coordinate_is_refused() -> None:
    array = xr.DataArray(ramp((2, 3, 3)), dims=("frame", "y", "x"), coords={"x": [0, 1, 3]})
    with pytest.raises(ParameterError, match="not evenly spaced"):
        open_stack(array)


def test_four_d_gets_a_series_dim() -> None:
    data = ramp((2, 3, 8, 8))
    stack = open_stack(data)
    assert stack.dims == ("series", "frame", "y", "x")
    np.testing.assert_array_equal(stack.values, data)


def test_five_d_leading_dims_are_numbered() -> None:
    assert open_stack(np.zeros((2, 2, 3, 8, 8))).dims == (
        "series_0",
        "series_1",
        "frame",
        "y",
        "x",
    )


def test_named_leading_dim_of_dataarray_is_kept() -> None:
    array = xr.DataArray(ramp((2, 3, 8, 8)), dims=("tilt", "frame", "y", "x"))
    assert open_stack(array).dims == ("tilt", "frame", "y", "x")


def test_unsupported_object_and_signal_for_objects() -> None:
    with pytest.raises(ParameterError, match="np.asarray"):
        open_stack([[1, 2], [3, 4]])
    with pytest.raises(ParameterError, match="leave signal=None"):
        open_stack(np.zeros((2, 4, 4)), signal=0)


def test_hyperspy_signal_with_time_and_pm_calibration() -> None:
    hs = pytest.importorskip("hyperspy.api")
    signal = hs.signals.Signal2D(ramp((4, 8, 6)))
    frames, y, x = signal.axes_manager[0], signal.axes_manager[2], signal.axes_manager[1]
    frames.scale, frames.units = 2.0, "ms"
    y.scale, y.units, x.scale, x.units = 20.0, "pm", 30.0, "pm"
    stack = open_stack(signal)
    np.testing.assert_array_equal(stack.values, signal.data)
    assert stack.attrs["pixel_size"] == pytest.approx((0.02, 0.03))
    assert stack.attrs["unit"] == "nm"
    np.testing.assert_array_equal(stack.frame, [0.0, 2.0, 4.0, 6.0])
    assert stack.frame.attrs["units"] == "ms"


@pytest.mark.realdata
@pytest.mark.parametrize("lazy", [False, True])
def test_hyperspy_signal_from_real_file_keeps_calibration(lazy: bool, data_dir: Path) -> None:
    hs = pytest.importorskip("hyperspy.api")
    signal = hs.load(data_dir / "03_Scanning_Preview_1.ser", lazy=lazy)
    stack = open_stack(signal)
    assert stack.shape == (5, 128, 128)
    assert stack.attrs["pixel_size"] == pytest.approx((0.38435, 0.38435), rel=1e-4)
    assert stack.attrs["unit"] == "nm"
    np.testing.assert_array_equal(stack[2].values, np.asarray(signal.data[2]))


def test_importing_daskreg_io_does_not_import_hyperspy() -> None:
    code = "import sys, daskreg.io; assert 'hyperspy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
