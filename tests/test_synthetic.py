"""Tests of the synthetic STEM lattice series generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from daskreg.errors import ParameterError
from daskreg.synthetic import SyntheticSeries, lattice_series

# Noise-free rendering (dose=inf) is what makes exact geometric checks possible.
NOISE_FREE = {"dose": np.inf, "read_noise": 0.0}


def _hann(n: int, offset: float) -> np.ndarray:
    """Hann window of length ``n`` translated by ``offset`` pixels, zero outside."""
    t = np.arange(n) - offset
    window = 0.5 - 0.5 * np.cos(2 * np.pi * t / (n - 1))
    return np.where((t >= 0) & (t <= n - 1), window, 0.0)


def _cc_peak(moving, ref, window_offset, upsample=100):
    """Cross-correlation peak ``d`` maximising ``sum moving(y) ref(y - d)``, to 1/upsample px.

    The coarse peak is refined by evaluating the DFT of the cross-power spectrum on a fine
    grid around it (trigonometric interpolation of the correlation).
    """
    ny, nx = ref.shape
    f = np.fft.fft2(ref * np.outer(_hann(ny, 0), _hann(nx, 0)))
    g = np.fft.fft2(moving * np.outer(_hann(ny, window_offset[0]), _hann(nx, window_offset[1])))
    spectrum = g * np.conj(f)
    cc = np.fft.ifft2(spectrum).real
    peak = np.array(np.unravel_index(np.argmax(cc), cc.shape), dtype=float)
    peak = np.where(peak > np.array(cc.shape) // 2, peak - cc.shape, peak)
    offsets = np.arange(-1.5, 1.5 + 1e-9, 1 / upsample)
    ey = np.exp(2j * np.pi * np.outer(peak[0] + offsets, np.fft.fftfreq(ny)))
    ex = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(nx), peak[1] + offsets))
    fine = (ey @ spectrum @ ex).real
    iy, ix = np.unravel_index(np.argmax(fine), fine.shape)
    return peak + offsets[[iy, ix]]


def _measure_shift(moving, ref):
    """Return ``d`` with ``moving[y, x] ≈ ref[y - dy, x - dx]``.

    A fixed window on both frames biases the peak by ~0.002 px per px of shift; moving the
    window of ``moving`` to the first estimate turns the correlation into the
    autocorrelation of one windowed image, whose maximum is exactly at ``d``.
    """
    first = _cc_peak(moving, ref, (0.0, 0.0))
    return _cc_peak(moving, ref, first)


def _bragg_ratio(frame):
    """Strongest non-DC spectral power over the median power: large only with a lattice."""
    power = np.abs(np.fft.fft2(frame - frame.mean())) ** 2
    power[:3, :3] = power[:3, -2:] = power[-2:, :3] = power[-2:, -2:] = 0
    return power.max() / np.median(power)


@pytest.mark.parametrize("shape", [(128, 128), (384, 512), (511, 509), (64, 65)])
def test_shapes_and_dtypes(shape):
    series = lattice_series(3, shape, seed=1)
    assert isinstance(series, SyntheticSeries)
    assert series.stack.shape == (3, *shape)
    assert series.stack.dtype == np.float32
    assert series.shifts.shape == (3, 2)
    assert series.shifts.dtype == np.float64
    assert series.bad_frames == ()
    assert np.all(series.stack >= 0)  # Poisson counts without read noise
    # Every frame must show lattice contrast up to its edges, i.e. the lattice covers the
    # frame under the full drift: each border strip holds column peaks.
    for frame in series.stack:
        for strip in (frame[:8], frame[-8:], frame[:, :8], frame[:, -8:]):
            assert strip.max() > 0.5 * 50


@pytest.mark.parametrize("lattice", ["perovskite", "hexagonal", "anisotropic"])
def test_deterministic_by_seed(lattice):
    kwargs = {"lattice": lattice, "rotation": 17.0, "read_noise": 0.7, "bad_frames": {2: "torn"}}
    a = lattice_series(4, (96, 80), seed=5, **kwargs)
    b = lattice_series(4, (96, 80), seed=5, **kwargs)
    c = lattice_series(4, (96, 80), seed=6, **kwargs)
    np.testing.assert_array_equal(a.stack, b.stack)
    np.testing.assert_array_equal(a.shifts, b.shifts)
    assert a.params == b.params
    assert not np.array_equal(a.stack, c.stack)
    assert not np.array_equal(a.shifts, c.shifts)


def test_trajectory_is_offset_plus_linear_drift_plus_random_walk():
    exact = lattice_series(30, (16, 16), drift_jitter=0.0, drift_step=(0.4, -1.3), seed=2)
    assert np.all((exact.shifts[0] >= 0) & (exact.shifts[0] < 1))
    np.testing.assert_allclose(np.diff(exact.shifts, axis=0), [[0.4, -1.3]] * 29, atol=1e-12)

    walk = lattice_series(400, (8, 8), drift_jitter=0.25, seed=2)
    steps = np.diff(walk.shifts, axis=0) - [0.83, -0.57]
    # 798 normal samples: the standard error of their std is 2.5 %, so 15 % is 6 sigma.
    assert np.std(steps) == pytest.approx(0.25, rel=0.15)
    assert np.abs(steps.mean(axis=0)).max() < 0.05  # 6 sigma of a 399-sample mean


def test_sign_convention_exact_for_integer_drift():
    # With integer steps frame k is frame 0 translated by a whole number of pixels, so the
    # overlapping regions must agree to float32 rounding; vacancies make a wrong sign or a
    # re-drawn specimen impossible to pass.
    series = lattice_series(
        4,
        (96, 112),
        drift_step=(2.0, -3.0),
        drift_jitter=0.0,
        vacancy_fraction=0.1,
        **NOISE_FREE,
    )
    frame0 = series.stack[0]
    for k in range(1, 4):
        dy, dx = np.rint(series.shifts[k] - series.shifts[0]).astype(int)
        assert (dy, dx) == (2 * k, -3 * k)
        # frame_k[y, x] == frame_0[y - dy, x - dx] with dy > 0, dx < 0
        np.testing.assert_allclose(series.stack[k][dy:, :dx], frame0[:-dy, -dx:], atol=1e-5)
        assert np.abs(series.stack[k][:-dy, -dx:] - frame0[dy:, :dx]).max() > 0.3


@pytest.mark.parametrize("lattice", ["perovskite", "hexagonal", "anisotropic"])
def test_sign_convention_subpixel(lattice):
    series = lattice_series(
        6,
        (200, 232),
        lattice=lattice,
        rotation=11.0,
        drift_jitter=0.0,
        vacancy_fraction=0.0,
        seed=3,
        **NOISE_FREE,
    )
    # |shift| <= 5 px stays below half a lattice period, so the correlation peak is
    # unambiguous even for a perfect lattice. 0.05 px is 10x the 0.005 px measured error
    # of the estimator (its 0.01 px grid); a wrong sign would be off by 2 |d| >= 2 px.
    for k in range(1, 6):
        expected = series.shifts[k] - series.shifts[0]
        measured = _measure_shift(series.stack[k], series.stack[0])
        np.testing.assert_allclose(measured, expected, atol=0.05)


def test_periodic_frame_matches_fourier_shift():
    # Spacing 16 and b = 40 divide the (120, 128) frame, so without vacancies the frame is
    # exactly periodic and Gaussian columns (sigma = 2 px) are band-limited to ~1e-9:
    # the Fourier shift theorem then holds to float32 rounding over the whole frame.
    series = lattice_series(
        5, (120, 128), lattice="anisotropic", vacancy_fraction=0.0, seed=1, **NOISE_FREE
    )
    spectrum0 = np.fft.fft2(series.stack[0].astype(np.float64))
    for k in range(1, 5):
        d = series.shifts[k] - series.shifts[0]
        shifted = np.fft.ifft2(ndimage.fourier_shift(spectrum0, d)).real
        wrong_sign = np.fft.ifft2(ndimage.fourier_shift(spectrum0, -d)).real
        assert np.abs(shifted - series.stack[k]).max() < 1e-4
        assert np.abs(wrong_sign - series.stack[k]).max() > 0.1


def test_vacancies_break_periodicity_and_are_fixed():
    kwargs = {"drift_jitter": 0.0, "seed": 4, **NOISE_FREE}
    perfect = lattice_series(2, (128, 128), vacancy_fraction=0.0, **kwargs).stack[1]
    defected = lattice_series(2, (128, 128), vacancy_fraction=0.05, **kwargs).stack[1]
    # Translating by one lattice vector (16 px) maps a perfect lattice onto itself but
    # moves a vacancy onto an occupied site, where the difference is a whole A/B peak.
    assert np.abs(perfect[16:, 16:] - perfect[:-16, :-16]).max() < 1e-5
    assert np.abs(defected[16:, 16:] - defected[:-16, :-16]).max() > 0.4
    # Removed columns only lower the image.
    assert np.all(defected <= perfect + 1e-6)
    assert (perfect - defected).max() > 0.4


def test_low_dose_counts_at_column_peaks():
    dose = 1.5
    kwargs = {"seed": 7, "vacancy_fraction": 0.0}
    noisy = lattice_series(10, (256, 256), dose=dose, **kwargs)
    clean = lattice_series(10, (256, 256), **kwargs, **NOISE_FREE)
    np.testing.assert_array_equal(noisy.shifts, clean.shifts)  # noise leaves geometry alone
    assert np.array_equal(noisy.stack, np.rint(noisy.stack))  # Poisson counts are integers

    background = noisy.params["background"]
    # Pixels within ~0.9 px of an A column centre (expected >= 0.9 of the peak); B columns
    # (0.45) never reach this level.
    peak = clean.stack >= 0.9 + background
    assert peak.sum() > 5000
    expected = clean.stack[peak].mean()
    assert 0.9 + background <= expected <= 1.0 + background + 1e-6
    # ~6700 Poisson samples of mean ~1.5: standard error ~1 % of the mean, so 5 % is
    # 5 sigma; this also confirms "about 1-2 counts at a column peak".
    assert noisy.stack[peak].mean() / dose == pytest.approx(expected, rel=0.05)
    # Between columns the mean is ~0.08 counts: the background keeps it Poisson, not 0.
    # ~1e5 such pixels give a 1.1 % standard error, so 10 % is ~9 sigma.
    between = clean.stack <= background + 0.01
    assert between.sum() > 50000
    expected_between = clean.stack[between].mean()
    assert noisy.stack[between].mean() / dose == pytest.approx(expected_between, rel=0.1)


def test_read_noise_is_additive_gaussian():
    base = lattice_series(3, (64, 64), seed=9, **NOISE_FREE)
    noisy = lattice_series(3, (64, 64), seed=9, dose=np.inf, read_noise=2.0)
    residual = noisy.stack - base.stack
    # 12288 normal samples: std known to ~0.6 %, mean to 0.02 counts.
    assert residual.std() == pytest.approx(2.0, rel=0.05)
    assert abs(residual.mean()) < 0.1


def test_blank_frames_have_no_lattice():
    series = lattice_series(6, (256, 256), bad_frames={4: "blank", 1: "blank"}, seed=2)
    assert series.bad_frames == (1, 4)
    good = _bragg_ratio(series.stack[0])
    # Without a lattice the power is exponentially distributed: max/median over 65536
    # bins is ~ln(65536)/ln(2) = 16. Bragg peaks at dose 50 are > 1e3 above that.
    assert good > 1000
    for i in (1, 4):
        assert _bragg_ratio(series.stack[i]) < 50
        # Blank frames hold only the background: dose * background = 2.5 counts.
        assert series.stack[i].mean() == pytest.approx(50 * 0.05, rel=0.05)
    assert np.all(np.isfinite(series.shifts))  # shifts keep the would-be drift


def test_torn_frame_jumps_below_the_tear_row():
    kwargs = {"seed": 8, **NOISE_FREE}
    torn = lattice_series(5, (256, 256), bad_frames={3: "torn"}, **kwargs)
    clean = lattice_series(5, (256, 256), **kwargs)
    assert torn.bad_frames == (3,)
    np.testing.assert_array_equal(torn.shifts, clean.shifts)
    tear = torn.params["tears"]["3"]
    row, jump = tear["row"], np.array(tear["jump"])
    assert 0.3 * 256 <= row <= 0.7 * 256
    assert 3.0 < np.hypot(*jump) < 16.0  # several px, below one lattice constant

    np.testing.assert_array_equal(torn.stack[[0, 1, 2, 4]], clean.stack[[0, 1, 2, 4]])
    np.testing.assert_allclose(torn.stack[3][:row], clean.stack[3][:row], atol=1e-5)
    assert np.abs(torn.stack[3][row:] - clean.stack[3][row:]).max() > 0.3
    # The part below the tear is the intact frame displaced by the jump (same 0.05 px
    # tolerance and estimator as the sign-convention test).
    measured = _measure_shift(torn.stack[3][row:], clean.stack[3][row:])
    np.testing.assert_allclose(measured, jump, atol=0.05)


def test_params_and_xarray_are_json_friendly():
    series = lattice_series(
        3, (40, 48), bad_frames={2: "torn"}, dose=np.inf, pixel_size=0.05, seed=3
    )
    params = series.params
    assert params == json.loads(json.dumps(params, allow_nan=False))
    assert params["column_sigma"] == pytest.approx(2.0)  # spacing / 8
    assert params["dose"] is None
    assert params["shape"] == [40, 48]
    assert params["bad_frames"] == {"2": "torn"}

    da = series.to_xarray()
    assert da.dims == ("frame", "y", "x")
    np.testing.assert_array_equal(da.values, series.stack)
    np.testing.assert_array_equal(da["frame"], np.arange(3))
    np.testing.assert_allclose(da["y"], np.arange(40) * 0.05)
    np.testing.assert_allclose(da["x"], np.arange(48) * 0.05)
    assert da.attrs["pixel_size"] == (0.05, 0.05)
    assert da.attrs["unit"] == "nm"
    assert da.attrs["source"] == "daskreg.synthetic"
    assert json.loads(da.attrs["synthetic_params"]) == params
    assert "true_shifts" not in da.attrs
    json.dumps(da.attrs)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_frames": 0}, "n_frames=0"),
        ({"shape": (0, 64)}, "shape=(0, 64)"),
        ({"shape": (64, -3)}, "shape=(64, -3)"),
        ({"shape": (64,)}, "shape=(64,)"),
        ({"spacing": 0.0}, "spacing=0.0"),
        ({"spacing": -4.0}, "spacing=-4.0"),
        ({"dose": 0.0}, "dose=0.0"),
        ({"dose": -1.0}, "dose=-1.0"),
        ({"dose": float("nan")}, "dose=nan"),
        ({"lattice": "cubic"}, "'cubic'"),
        ({"bad_frames": {5: "blank"}}, "bad frame index 5"),
        ({"bad_frames": {-1: "torn"}}, "bad frame index -1"),
        ({"bad_frames": {1: "smeared"}}, "'smeared'"),
        ({"vacancy_fraction": 1.0}, "vacancy_fraction=1.0"),
        ({"column_sigma": 0.0}, "column_sigma=0.0"),
        ({"drift_jitter": -0.1}, "drift_jitter=-0.1"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_bad_parameters_raise(kwargs, fragment):
    call = {"n_frames": 5, "shape": (32, 32), **kwargs}
    with pytest.raises(ParameterError) as info:
        lattice_series(**call)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)
