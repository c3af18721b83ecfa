"""Re-using shifts: companion channels, spectrum images, 4D-STEM, saved results."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

import daskreg
from daskreg.apply import align_stack, apply_shifts
from daskreg.errors import (
    FrameAxisError,
    ParameterError,
    StackDtypeError,
    StackShapeError,
    TooFewFramesError,
)
from daskreg.kernels.shift import registered_sum
from daskreg.synthetic import lattice_series

# float64 sums of the same Fourier-shifted frames in another order: equal to ~1e-15;
# 1e-6 is the required reproducibility of a saved result.
RTOL = 1e-6


@pytest.fixture(scope="module")
def series():
    return lattice_series(8, (72, 64), dose=100, seed=21)


@pytest.fixture(scope="module")
def result(series):
    return daskreg.register(series.to_xarray(), window_radius=4, bad_frames=[3])


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
@pytest.mark.parametrize("crop", [True, False])
def test_saved_result_reapplies_exactly(series, result, suffix: str, crop: bool, tmp_path: Path):
    loaded = daskreg.load_result(daskreg.save_result(result, tmp_path / f"run{suffix}"))
    average = loaded.apply(series.to_xarray(), crop=crop)
    expected = result.average if crop else result.average_full
    np.testing.assert_allclose(average.values, expected.values, rtol=RTOL, atol=0)
    np.testing.assert_array_equal(
        average.coords["coverage"], result.coverage.sel(y=expected.y, x=expected.x)
    )
    assert average.attrs["frames_averaged"] == 7
    assert average.attrs["pixel_size"] == result.dataset.attrs["pixel_size"]
    np.testing.assert_array_equal(average.y, expected.y)


@pytest.mark.parametrize("frames_per_chunk", [1, 3, 8])
def test_average_is_the_registered_sum_for_any_chunking(series, frames_per_chunk: int):
    stack = da.from_array(series.stack, chunks=(frames_per_chunk, -1, -1))
    average = apply_shifts(stack, series.shifts, crop=False)
    expected = registered_sum(series.stack, series.shifts) / len(series.stack)
    np.testing.assert_allclose(average.values, expected, rtol=1e-12)


def test_true_shifts_align_a_noise_free_series():
    clean = lattice_series(5, (64, 64), dose=np.inf, vacancy_fraction=0.0, seed=4)
    aligned = align_stack(clean.stack, clean.shifts).values
    # Fourier shifting a non-periodic frame rings at the edges; the cropped interior of
    # every aligned frame matches the first to a few percent of the column peak (1).
    interior = (slice(None), slice(8, -8), slice(8, -8))
    assert np.abs(aligned[interior] - aligned[:1][interior]).max() < 0.05


def test_spectrum_image_shifts_along_scan_axes_only(series):
    weights = np.array([1.0, 2.0, 0.5])
    spectra = series.stack[..., None] * weights  # (frame, y, x, energy)
    average = apply_shifts(spectra, series.shifts, bad_frames=[3])
    image = apply_shifts(series.stack, series.shifts, bad_frames=[3])
    assert average.dims == ("y", "x", "axis_3")
    for k, weight in enumerate(weights):
        np.testing.assert_allclose(average[..., k], weight * image, rtol=1e-12)
    assert average.coords["coverage"].dims == ("y", "x")


def test_four_d_stem_and_named_scan_axes(series):
    frames = series.stack[:, :32, :40]
    detector = np.arange(1.0, 7.0).reshape(2, 3)
    scan = xr.DataArray(
        frames[:, None, None] * detector[None, :, :, None, None],
        dims=("frame", "qy", "qx", "scan_y", "scan_x"),
    )
    average = apply_shifts(scan, series.shifts, scan_axes=("scan_y", "scan_x"), crop=False)
    image = apply_shifts(frames, series.shifts, crop=False)
    assert average.dims == ("qy", "qx", "scan_y", "scan_x")
    np.testing.assert_allclose(average[1, 2], detector[1, 2] * image, rtol=1e-12)


def test_frames_last_array_and_unchanged_input(series):
    frames_last = np.ascontiguousarray(np.moveaxis(series.stack, 0, -1))
    before = frames_last.copy()
    average = apply_shifts(frames_last, series.shifts, frame_axis=-1, crop=False)
    expected = apply_shifts(series.stack, series.shifts, crop=False)
    np.testing.assert_allclose(average, expected, rtol=1e-12)
    np.testing.assert_array_equal(frames_last, before)


def test_frames_last_file_is_opened_with_its_frame_axis(series, tmp_path: Path):
    # A bare Zarr array has no axis names: its frames are wherever frame_axis says.
    path = tmp_path / "frames_last.zarr"
    zarr.create_array(path, data=np.ascontiguousarray(np.moveaxis(series.stack, 0, -1)))
    average = apply_shifts(path, series.shifts, frame_axis=-1, crop=False)
    expected = apply_shifts(series.stack, series.shifts, crop=False)
    np.testing.assert_allclose(average, expected, rtol=1e-6)


def test_aligned_stack_is_lazy_with_whole_scan_planes(series):
    def refuse(*args, **kwargs):
        pytest.fail("align_stack computed something")

    stack = da.from_array(series.stack, chunks=(2, 36, 32))
    with dask.config.set(scheduler=refuse):
        aligned = align_stack(stack, series.shifts, bad_frames=[0, 3])
    assert isinstance(aligned.data, da.Array)
    assert aligned.sizes["frame"] == 6
    assert aligned.data.chunks[1:] == ((aligned.sizes["y"],), (aligned.sizes["x"],))
    assert aligned.dtype == np.float64


def test_save_stack_writes_the_aligned_frames_in_the_same_pass(series, result, tmp_path: Path):
    store = tmp_path / "aligned.zarr"
    average = result.apply(series.to_xarray(), save_stack=store)
    written = daskreg.open_stack(store)
    expected = result.apply(series.to_xarray(), average=False)
    assert written.dtype == np.float32
    np.testing.assert_array_equal(written.values, expected.values.astype(np.float32))
    np.testing.assert_allclose(average, result.average, rtol=RTOL)
    assert written.attrs["pixel_size"] == pytest.approx(result.dataset.attrs["pixel_size"])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda s, sh: apply_shifts(s[:5], sh), StackShapeError, "5 frames"),
        (lambda s, sh: apply_shifts(s.astype(np.complex64), sh), StackDtypeError, "real numbers"),
        (lambda s, sh: apply_shifts(s, sh[:, :1]), ParameterError, r"\(n_frames, 2\)"),
        (lambda s, sh: apply_shifts(s, sh, bad_frames=range(8)), TooFewFramesError, "no frame"),
        (lambda s, sh: apply_shifts(s, sh, bad_frames=[9]), ParameterError, "out of range"),
        (lambda s, sh: apply_shifts(s[0], sh), StackShapeError, "frame axis and two scan"),
        (lambda s, sh: apply_shifts(s, sh, frame_axis=3), FrameAxisError, "not an axis"),
        (lambda s, sh: apply_shifts(s, sh, frame_axis="t"), FrameAxisError, "dimension name"),
        (lambda s, sh: apply_shifts(s, sh, scan_axes=(0, 1)), FrameAxisError, "different"),
    ],
)
def test_bad_input_raises_a_clear_error(series, call, error, match):
    with pytest.raises(error, match=match):
        call(series.stack, series.shifts)


def test_result_refuses_another_scan_size(series, result):
    with pytest.raises(StackShapeError, match="measured on 72x64"):
        result.apply(series.stack[:, :64, :64])
