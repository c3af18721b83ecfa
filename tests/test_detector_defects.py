"""Data as detectors and drift make it (issue 17): hot pixels, extreme scales, no common area.

Each case was measured wrong with exit 0 and no warning: a hot pixel in every frame
pinned the shifts at zero (3.6 px), values scaled by 1e20 or 1e-25 raised a raw
LinAlgError or dropped every frame, a drift larger than the frame wrote a 0 x 0 average.
Each must now give the right answer, or say why not, in both engines.
"""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest

import daskreg
from daskreg import validate
from daskreg.errors import RegistrationWarning
from daskreg.kernels import detector
from daskreg.kernels.local_median import LocalMedian
from daskreg.synthetic import lattice_series

from .conftest import DATA, requires_data, rms_error

# Both engines; the Dask one in chunks that split the series unevenly.
ENGINES = {
    "numpy": {},
    "dask": {"engine": "dask", "scheduler": "synchronous", "progress": False, "chunks": 5},
}


@pytest.fixture(scope="module")
def drifting():
    """A drifting series (about 10 px over 12 frames) and its clean registration error."""
    series = lattice_series(12, (128, 128), dose=20, read_noise=1.0, seed=3)
    clean = daskreg.register(series.stack)
    return series, rms_error(clean.shifts.values, series.shifts), clean.average.values.max()


def _with_defect(stack: np.ndarray, kind: str) -> tuple[np.ndarray, list[list[int]]]:
    out = stack.copy()
    if kind == "pixel":
        # 300 x the frame maximum, one pixel: measured 3.6 px of error before.
        out[:, 50, 77] += 300 * stack.max()
        return out, [[50, 77]]
    # A 2 x 2 spot at 5 x the maximum: measured 0.7 px (4.4 px at 2 counts) before.
    out[:, 90:92, 30:32] += 5 * stack.max()
    return out, [[90, 30], [90, 31], [91, 30], [91, 31]]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["pixel", "spot"])
def test_hot_pixels_fixed_on_the_detector_are_found_and_left_out(drifting, engine, kind):
    series, clean_error, clean_max = drifting
    stack, where = _with_defect(series.stack, kind)
    before = stack.copy()
    with pytest.warns(RegistrationWarning, match=rf"found {len(where)} hot pixel") as caught:
        result = daskreg.register(stack, **ENGINES[engine])
    assert sum("hot pixel" in str(w.message) for w in caught) == 1  # warned once
    np.testing.assert_array_equal(stack, before)  # the caller's data never change
    assert result.dataset.attrs["hot_pixels"] == len(where)
    assert json.loads(result.dataset.attrs["hot_pixel_yx"]) == where
    # Left out of the correlation, the defect changes nothing: same error as without it
    # (0.02 px here; left in, 0.1-3.6 px). 0.005 px covers the repaired pixels' noise.
    assert rms_error(result.shifts.values, series.shifts) < clean_error + 0.005
    assert (~result.bad_frames.values).all()
    # Left out of the average too: no trail of ghost spots along the drift (each would
    # be 300 / 12 or 4 x 5 / 12 times the lattice maximum).
    assert result.average.values.max() < 1.1 * clean_max


def test_both_engines_agree_with_hot_pixels(drifting):
    series, *_ = drifting
    stack, _ = _with_defect(series.stack, "pixel")
    with pytest.warns(RegistrationWarning, match="hot pixel"):
        got = daskreg.register(stack, **ENGINES["dask"])
    with pytest.warns(RegistrationWarning, match="hot pixel"):
        expected = daskreg.register(stack)
    # Same kernels on the same repaired frames: only summation order differs.
    np.testing.assert_allclose(got.shifts.values, expected.shifts.values, atol=1e-6)
    np.testing.assert_allclose(
        got.average_full.values, expected.average_full.values, rtol=1e-6, atol=1e-6
    )


def test_a_spike_in_one_frame_is_not_a_fixed_defect():
    series = lattice_series(10, (96, 96), dose=20, seed=4)
    stack = series.stack.copy()
    stack[3, 40, 40] += 500 * stack.max()  # an X-ray hit: bright in the mean, in one frame only
    assert detector.hot_pixels(detector.FrameMoments.of(stack)).shape == (0, 2)


# Clean lattices must never lose a pixel (a column) to the detector test. Static series
# are the hard case: their mean image keeps every column sharp.
_CLEAN = list(
    itertools.product(
        ["perovskite", "hexagonal", "anisotropic"], [1, 5, 50], [6.0, 16.0], [False, True]
    )
)


@pytest.mark.parametrize(("lattice", "dose", "spacing", "static"), _CLEAN)
def test_no_hot_pixel_on_clean_lattices(lattice, dose, spacing, static):
    for seed in range(2):
        series = lattice_series(
            8,
            (128, 128),
            lattice=lattice,
            dose=dose,
            spacing=spacing,
            read_noise=1.0 if seed else 0.0,
            drift_step=(0.0, 0.0) if static else (0.83, -0.57),
            drift_jitter=0.0 if static else 0.25,
            seed=seed,
        )
        found = detector.hot_pixels(detector.FrameMoments.of(series.stack))
        assert found.shape == (0, 2), (lattice, dose, spacing, static, seed, found)


@pytest.mark.slow
@pytest.mark.parametrize("lattice", ["perovskite", "hexagonal", "anisotropic"])
def test_no_hot_pixel_on_clean_lattices_sweep(lattice):
    doses = [0.5, 1, 2, 5, 10, 20, 50]
    # Measured once at 256^2 with 5 seeds and spacing 4 too (840 series): none found.
    for dose, seed, spacing, static in itertools.product(
        doses, range(3), [6.0, 16.0, 40.0], [False, True]
    ):
        series = lattice_series(
            10,
            (128, 160),
            lattice=lattice,
            dose=dose,
            spacing=spacing,
            read_noise=float(seed % 2),
            drift_step=(0.0, 0.0) if static else (0.83, -0.57),
            drift_jitter=0.0 if static else 0.25,
            seed=seed,
        )
        found = detector.hot_pixels(detector.FrameMoments.of(series.stack))
        assert found.shape == (0, 2), (dose, seed, spacing, static, found)


def test_repair_takes_the_median_of_the_other_neighbours():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(3, 9, 9)).astype(np.float32)
    frames[:, 4, 4] = frames[:, 4, 5] = 1e6
    pixels = np.array([[4, 4], [4, 5]])
    fixed = detector.repair(frames, pixels)
    assert frames[0, 4, 4] == 1e6  # a copy
    for f in range(3):
        for y, x in pixels:
            patch = frames[f, y - 2 : y + 3, x - 2 : x + 3].astype(np.float64)
            others = np.delete(patch.ravel(), [12, 13] if x == 4 else [11, 12])
            assert fixed[f, y, x] == pytest.approx(np.median(others), rel=1e-6)
    untouched = np.ones(frames.shape[1:], dtype=bool)
    untouched[4, 4:6] = False
    np.testing.assert_array_equal(fixed[:, untouched], frames[:, untouched])


def test_moments_merge_like_one_pass():
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(7, 5, 6)) * 1e30
    whole = detector.FrameMoments.of(frames)
    merged = detector.FrameMoments.of(frames[:3]).merge(detector.FrameMoments.of(frames[3:]))
    np.testing.assert_allclose(merged.mean, frames.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.std, frames.std(axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(whole.std, merged.std, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32", "uint16", "int32", ">f4"])
def test_frame_survey_is_numpys_statistics(dtype):
    """The one-pass survey against numpy's two-pass statistics, on frames with a large
    offset (1e6 over a contrast of ~1), NaN and inf pixels, a constant frame and an
    all-NaN one, in every dtype it reads as is or converts."""
    rng = np.random.default_rng(3)
    frames = 1e6 + rng.normal(size=(9, 33, 40)) * np.arange(1, 10)[:, None, None]
    if np.dtype(dtype).kind in "ui":
        frames = np.round(rng.normal(size=frames.shape) * 50 + 3000)
    frames[4] = frames[4, 0, 0]
    keep = np.ones(9, dtype=bool)
    keep[7] = False
    if np.dtype(dtype).kind == "f":
        frames[2, 5, 7] = np.nan
        frames[3, 0, 0] = np.inf
        frames[6] = np.nan
    frames = frames.astype(dtype)
    finite, std, moments = detector.frame_survey(frames, keep=keep)
    as_float = frames.astype(np.float64)
    clean = np.where(np.isfinite(as_float), as_float, np.nan)
    want_finite = np.isfinite(as_float).all(axis=(1, 2))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want_std = np.nan_to_num(np.nanstd(clean, axis=(1, 2)))
    # The constant frame: exactly 0 (numpy's two passes leave 2e-10 of round-off at an
    # offset of 1e6, and the frame would pass for one with contrast).
    assert std[4] == 0
    want_std[4] = 0.0
    np.testing.assert_array_equal(finite, want_finite)
    np.testing.assert_allclose(std, want_std, rtol=1e-9, atol=0)
    summed = want_finite & (want_std > 0) & keep
    assert moments.count == summed.sum() == (4 if np.dtype(dtype).kind == "f" else 7)
    block = as_float[summed]
    np.testing.assert_allclose(moments.mean, block.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(moments.std, block.std(axis=0, ddof=1), rtol=1e-9)
    assert validate.frame_quality(frames)[1].tolist() == std.tolist()


@pytest.fixture(scope="module")
def unscaled():
    series = lattice_series(10, (96, 96), dose=20, seed=5)
    return series, daskreg.register(series.stack)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e20, 1e35, 1e-25, 1e-35])
def test_extreme_scales_give_the_shifts_of_the_unscaled_data(unscaled, engine, dtype, scale):
    series, expected = unscaled
    stack = (series.stack.astype(np.float64) * scale).astype(dtype)
    with warnings.catch_warnings():
        # No overflow, underflow or invalid value anywhere on the way.
        warnings.simplefilter("error", RuntimeWarning)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            result = daskreg.register(stack, **ENGINES[engine])
    # Divided by a power of two, the scaled frames are the unscaled ones up to the
    # rounding of the scaling itself (1e-7 relative in float32): 1e-3 px is ample.
    np.testing.assert_allclose(result.shifts.values, expected.shifts.values, atol=1e-3)
    np.testing.assert_array_equal(result.bad_frames.values, expected.bad_frames.values)
    assert np.log2(result.dataset.attrs["intensity_scale"]).is_integer()
    np.testing.assert_allclose(
        result.average_full.values / scale, expected.average_full.values, rtol=1e-4, atol=1e-3
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_no_common_area_falls_back_to_the_uncropped_average(engine, tmp_path):
    # 20 frames drifting 6 px each: 115 px over 96 px frames, so no pixel is in every
    # frame. band=1 follows the drift from frame to frame (it is below half a cell).
    series = lattice_series(20, (96, 96), dose=50, drift_step=(6.0, -6.0), drift_jitter=0.1, seed=1)
    with pytest.warns(RegistrationWarning, match="crop to the common area would be empty"):
        result = daskreg.register(series.stack, band=1, mask="hann", **ENGINES[engine])
    assert result.dataset.attrs["crop"] == 0
    assert "no pixel is covered by every used frame" in result.dataset.attrs["crop_not_applied"]
    assert result.average.shape == (96, 96)
    assert tuple(result.crop) == (0, 96, 0, 96)
    # The coverage says where the average stands on few frames.
    assert result.coverage.values.max() < 20
    image, description = daskreg.read_average_tif(result.save_tif(tmp_path / "average.tif"))
    assert image.shape == (96, 96)
    assert description["cropped"] is False
    assert description["crop_not_applied"] == result.dataset.attrs["crop_not_applied"]


@pytest.mark.realdata
@requires_data
@pytest.mark.parametrize(
    "name",
    [
        "multi_signal.dm3",
        "dmTest_3D_int16_64x65x66.dm4",
        "03_Scanning_Preview_1.ser",
        "16_STOimage_1.ser",
        "derived_STO_HAADF_drift_20x512.tif",
    ],
)
def test_real_files_hold_no_hot_pixel(name):
    # Measured: none of the shared files (scanned STEM images, a DM test pattern) has a
    # pixel fixed on the detector; a single image is tested on its spatial criteria.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RegistrationWarning)  # multi_signal holds 2 signals
        frames = np.asarray(daskreg.open_stack(DATA / name).values, dtype=np.float64)
    frames = frames.reshape(-1, *frames.shape[-2:])
    moments = detector.FrameMoments.of(frames)
    if moments.count < 2:
        moments = detector.FrameMoments(2, moments.mean, np.zeros_like(moments.mean))
    assert detector.hot_pixels(moments).shape == (0, 2)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shape", [(5, 5), (37, 53), (96, 64), (160, 161)])
def test_local_median_is_exact_where_it_decides(shape, ties):
    """The hot-pixel survey's 5 x 5 median: exact excess, a true upper bound, exact top.

    The independent reference is ``scipy.ndimage.median_filter`` (the survey's former
    kernel, 5x slower at 512^2); a ring of bright pixels makes the bound's worst case,
    and integer values make ties (sparse counts).
    """
    from scipy import ndimage

    rng = np.random.default_rng(sum(shape))
    image = rng.normal(size=shape)
    if ties:
        image = np.round(image).clip(0, None)
    image[1::4, 2::5] += 6.0
    local = LocalMedian(image)
    exact = (image - ndimage.median_filter(image, size=5, mode="mirror")).ravel()
    np.testing.assert_allclose(local.excess(np.arange(image.size)), exact, atol=1e-12)
    assert np.all(local.bound >= exact - 1e-12)
    top = np.sort(exact)[::-1]
    for rank in (1, 3, min(16, image.size), min(100, image.size)):
        assert local.top(rank, exact[::7]) == top[rank - 1]
