"""find_maxima="upsampled" and the real-space window against ground truth (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import daskreg
from daskreg.errors import ParameterError
from daskreg.kernels import correlate, peaks
from daskreg.method.analyse import analyse_shift_matrix
from daskreg.method.measurements import assemble_pairs
from daskreg.method.pairs import measure_pairs, pair_indices, pair_setup
from daskreg.params import MEASURE_PARAMS, RegistrationParams
from daskreg.synthetic import lattice_series
from tests.conftest import rms_error

# Sub-pixel shifts (dy, dx) of frames 1.. relative to frame 0, up to 7 px.
SHIFTS = np.array([[3.3, -5.6], [-0.41, 0.77], [6.93, 2.25], [-4.18, -6.62]])


def _image(kind: str, shape: tuple[int, int]) -> np.ndarray:
    if kind == "smooth":
        rng = np.random.default_rng(0)
        return ndimage.gaussian_filter(rng.random(shape), 2.5, mode="wrap")
    return lattice_series(1, shape, lattice=kind, spacing=9, dose=np.inf, seed=1).stack[0]


def _fourier_shifted(base: np.ndarray) -> np.ndarray:
    """``base`` and its copies displaced by each of SHIFTS (scipy's Fourier shift)."""
    spectrum = np.fft.fftn(base)
    moved = [np.fft.ifftn(ndimage.fourier_shift(spectrum, d)).real for d in SHIFTS]
    return np.stack([base, *moved])


def _pairs_with_first(frames: np.ndarray, params: RegistrationParams, band_limited: bool):
    setup = pair_setup(params, frames.shape[1:], band_limited=band_limited)
    assert (setup.band is not None) == band_limited
    spectra = setup.spectra(frames)
    others = np.arange(1, len(frames))
    return measure_pairs(spectra, spectra, np.zeros_like(others), others, setup)


@pytest.mark.parametrize("image", ["perovskite", "hexagonal", "smooth"])
@pytest.mark.parametrize("shape", [(96, 128), (101, 87)])
@pytest.mark.parametrize("precision", ["single", "double"])
@pytest.mark.parametrize("band_limited", [True, False])
def test_upsampled_recovers_known_subpixel_shifts(image, shape, precision, band_limited):
    """Noise-free frames moved by scipy's Fourier shift are periodic, so without a window
    their correlation peaks exactly at the shift and the estimator alone is tested: it
    lands within 1e-4 px (double) and 1e-3 px (single); 0.02 px is the issue's bound. A
    phase sign flipped in the DFT, or the grid moved the wrong way, is off by pixels."""
    frames = _fourier_shifted(_image(image, shape))
    params = RegistrationParams.reference(find_maxima="upsampled", window=None, precision=precision)
    found = _pairs_with_first(frames, params, band_limited)
    assert found.ok.all()
    np.testing.assert_allclose(found.shifts, SHIFTS, rtol=0, atol=0.02)


@pytest.mark.parametrize("centre", [(10.3, -12.6), (-20.7, 30.2), (31.6, 0.45)])
def test_upsampled_divides_the_bias_out_between_pixels(centre):
    """A smooth peak times the Hann window's autocorrelation (separable, as the bias of
    every window is) is found where it was placed once ``bias`` is given, also between
    pixels (the bias is interpolated, not read at the nearest pixel) and across the
    periodic edge; without it the bias pulls the peak by 0.03-0.35 px."""
    shape = (64, 80)
    bias = correlate.window_autocorrelation(shape, "hann")
    offsets = [np.arange(n) - c for n, c in zip(shape, centre, strict=True)]
    dy, dx = ((o + n / 2) % n - n / 2 for o, n in zip(offsets, shape, strict=True))
    peak = np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * 2.5**2))
    corr = (peak * bias)[None]
    expected = (np.array(centre) + np.array(shape) / 2) % shape - np.array(shape) / 2
    found = peaks.find_shifts(corr, "upsampled", bias=bias)
    # The Gaussian is band-limited to about 1e-9 of its peak: interpolating it between
    # pixels from its spectrum is exact to that level.
    np.testing.assert_allclose(found.shifts[0], expected, atol=1e-6)
    # Its height is on the map's scale: the peak's (1) times the bias at the centre
    # (taken at the nearest point of the finest grid, 1/64 px: within 1e-3).
    axes = zip(centre, shape, strict=True)
    bias_at = np.prod([(1 + np.cos(2 * np.pi * c / n) / 2) / 1.5 for c, n in axes])
    np.testing.assert_allclose(found.peak[0], bias_at, rtol=1e-3)
    pulled = peaks.find_shifts(corr, "upsampled")
    assert np.abs(pulled.shifts[0] - expected).max() > 0.02


def test_upsampled_needs_a_separable_bias():
    shape = (32, 40)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    bias = 1 + 0.3 * np.cos(2 * np.pi * (yy / shape[0] + xx / shape[1]))
    with pytest.raises(ValueError, match="separable bias"):
        peaks.find_shifts(np.ones((1, *shape)), "upsampled", bias=bias)


def test_upsampled_prefers_the_higher_refined_peak_over_the_brightest_pixel():
    # As for gf: a peak split between pixels shows a lower brightest pixel than a weaker
    # peak on a pixel; refined, the split one is higher and wins (the hop guard).
    shape = (64, 64)
    yy, xx = np.mgrid[:64, :64]

    def gaussian(c, amp):
        return amp * np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (2 * 1.5**2))

    corr = (gaussian((20.5, 20.5), 1.0) + gaussian((40.0, 40.0), 0.9))[None]
    assert np.unravel_index(corr[0].argmax(), shape) == (40, 40)
    found = peaks.find_shifts(corr, "upsampled", num_peaks=2)
    np.testing.assert_allclose(found.shifts[0], [20.5, 20.5], atol=1e-3)
    np.testing.assert_allclose(found.peak[0], 1.0, rtol=2e-3)
    brightest = peaks.find_shifts(corr, "upsampled", num_peaks=1)
    np.testing.assert_allclose(brightest.shifts[0], [-24, -24], atol=1e-3)


def test_upsampled_reports_failure_when_there_is_no_peak():
    flat = np.full((1, 32, 32), -1.0)  # no positive local maximum (e.g. a blank pair)
    found = peaks.find_shifts(flat, "upsampled", num_peaks=3)
    assert not found.ok[0]


@pytest.mark.parametrize("window", ["hann", "tukey"])
@pytest.mark.parametrize("find_maxima", ["gf", "upsampled"])
def test_windows_register_a_drifting_lattice(window, find_maxima):
    """Rendered frames (new specimen enters at the edges), moderate dose: every window
    and estimator reaches a few hundredths of a pixel (gf and upsampled measured
    0.010-0.017 px on this series), far from a wrong window's unit-cell hops."""
    series = lattice_series(8, (192, 160), dose=50, read_noise=1, seed=4)
    params = RegistrationParams.reference(find_maxima=find_maxima, window=window)
    setup = pair_setup(params, (192, 160))
    spectra = setup.spectra(series.stack)
    i, j = pair_indices(8)
    found = measure_pairs(spectra, spectra, i, j, setup)
    error = found.shifts - (series.shifts[j] - series.shifts[i])
    assert np.sqrt((error**2).sum(axis=1).mean()) < 0.05


def test_broad_peaked_series_registers_with_upsampled():
    """A lattice of period 32 px with columns of sigma 8 px (broad correlation peaks, a
    nanoparticle-like image) registers to 0.05 px RMS (issue 17), frames of 384^2."""
    series = lattice_series(
        10, (384, 384), spacing=32, column_sigma=8, dose=50, read_noise=1, seed=5
    )
    params = RegistrationParams.reference(find_maxima="upsampled")
    setup = pair_setup(params, (384, 384))
    spectra = setup.spectra(series.stack)
    i, j = pair_indices(10)
    found = measure_pairs(spectra, spectra, i, j, setup)
    pairs = assemble_pairs(10, i, j, found, setup.energy(spectra))
    analysis = analyse_shift_matrix(pairs, params)
    assert analysis.used.all()
    assert rms_error(analysis.shifts, series.shifts) <= 0.05


@pytest.mark.parametrize("shape", [(64, 64), (63, 50)])
@pytest.mark.parametrize("window", correlate.WINDOWS)
def test_window_autocorrelation_is_the_windows_own(shape, window):
    """Against the periodic autocorrelation of the 2-D window computed by FFT; the Hann
    one keeps its closed form exactly (today's numbers unchanged)."""
    w = correlate.real_window(shape, window)
    power = np.abs(np.fft.fft2(w)) ** 2
    direct = np.fft.ifft2(power).real
    np.testing.assert_allclose(
        correlate.window_autocorrelation(shape, window), direct / direct[0, 0], atol=1e-12
    )
    if window == "hann":
        np.testing.assert_array_equal(w, correlate.hann_window(shape))
        ay, ax = ((1 + 0.5 * np.cos(2 * np.pi * np.arange(n) / n)) / 1.5 for n in shape)
        np.testing.assert_array_equal(correlate.window_autocorrelation(shape), np.outer(ay, ax))
    if window == "tukey":
        # Flat middle, zero at the periodic edge.
        assert w[0].max() == 0 and w[shape[0] // 2, shape[1] // 2] == 1


def test_window_is_a_measuring_parameter_validated_at_the_boundary():
    assert "window" in MEASURE_PARAMS
    assert RegistrationParams().window == "hann"
    assert RegistrationParams(window=None).window is None
    with pytest.raises(ParameterError, match="window='gauss'"):
        RegistrationParams(window="gauss")


def test_register_threads_window_and_upsampled_through_both_engines():
    """The parameters reach the spectra and the peaks on both engines: the Dask engine
    gives the numpy engine's shifts to the engines' 1e-6 px contract (measured 5e-8:
    single-precision spectra of other blocks of frames), and tukey differs from Hann."""
    series = lattice_series(6, (96, 112), dose=100, seed=11)
    options = {"find_maxima": "upsampled", "window": "tukey"}
    numpy_result = daskreg.register(series.stack, **options)
    dask_result = daskreg.register(
        series.stack, engine="dask", scheduler="synchronous", chunks=4, progress=False, **options
    )
    np.testing.assert_allclose(dask_result.shifts.values, numpy_result.shifts.values, atol=1e-6)
    assert rms_error(numpy_result.shifts.values, series.shifts) < 0.05
    assert numpy_result.params.window == "tukey"
    hann = daskreg.register(series.stack, find_maxima="upsampled")
    assert np.abs(hann.shifts.values - numpy_result.shifts.values).max() > 1e-4


@pytest.mark.parametrize("window", correlate.WINDOWS)
def test_pair_setup_spectra_apply_the_chosen_window(window):
    """The spectra every engine correlates (:meth:`PairSetup.spectra`, which the Dask
    engine's spectra tasks call too) are those of the centred frames times the window."""
    frames = lattice_series(3, (48, 56), dose=20, seed=2).stack.astype(np.float64)
    params = RegistrationParams.reference(window=window, precision="double")
    spectra = pair_setup(params, (48, 56), band_limited=False).spectra(frames)
    centred = frames - frames.mean(axis=(1, 2), keepdims=True)
    expected = np.fft.rfft2(centred * correlate.real_window((48, 56), window))
    np.testing.assert_allclose(spectra, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
