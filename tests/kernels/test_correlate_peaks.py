"""Correlation maps and maxima against known shifts (plain numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from daskreg.kernels import correlate, masks, peaks
from daskreg.kernels.shift import fourier_shift_frames


def _smooth_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2.5, mode="wrap")


def _pair_corr(a, b, kind="cc", mask="bandpass", n=4):
    spec = correlate.frame_spectra(np.stack([a, b]), dtype=np.complex128)
    half = correlate.half_plane_mask(masks.fourier_mask(a.shape, mask, n))
    return correlate.correlation_maps(spec[:1], spec[1:], half, a.shape, kind)


@pytest.mark.parametrize("shape", [(64, 64), (48, 80), (63, 65)])
@pytest.mark.parametrize("method", ["pixel", "gf", "com"])
def test_sign_convention_known_shift(shape, method):
    """r_ij = s_j - s_i: frame j = frame i displaced by +d gives a peak at +d."""
    base = _smooth_image(shape)
    d = np.array([3.3, -5.6])
    moved = fourier_shift_frames(base, d)
    bias = correlate.window_autocorrelation(shape)
    found = peaks.find_shifts(_pair_corr(base, moved), method, bias=bias)
    # A shift of ~10 % of these small frames on a random texture: the window's overlap
    # still biases the maximum by a few tenths of a pixel (lattices at 512^2 do far
    # better, see test_register). pixel may land one pixel off for the same reason.
    tol = {"pixel": 1.0, "gf": 0.25, "com": 0.5}[method]
    np.testing.assert_allclose(found.shifts[0], d, atol=tol)
    assert found.ok.all()
    # Swapping the operands flips the sign.
    back = peaks.find_shifts(_pair_corr(moved, base), method, bias=bias)
    np.testing.assert_allclose(back.shifts[0], -d, atol=tol)


def test_half_plane_equals_real_part_of_full_inverse():
    a, b = _smooth_image((40, 50), 1), _smooth_image((40, 50), 2)
    rng = np.random.default_rng(3)
    user = rng.random((40, 50))  # not Hermitian: the real part symmetrises it
    spec_full = np.fft.fft2(
        (np.stack([a, b]) - np.stack([a, b]).mean(axis=(1, 2), keepdims=True))
        * correlate.hann_window((40, 50))
    )
    expected = np.fft.ifft2(user * spec_full[1] * np.conj(spec_full[0])).real
    spec = correlate.frame_spectra(np.stack([a, b]), dtype=np.complex128)
    got = correlate.correlation_maps(
        spec[:1], spec[1:], correlate.half_plane_mask(user), (40, 50), "cc"
    )[0]
    np.testing.assert_allclose(got, expected, atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize("kind", ["cc", "mc", "pc", "phase"])
def test_correlation_kinds_find_clean_shift(kind):
    base = _smooth_image((64, 64), 4)
    moved = fourier_shift_frames(base, [2.0, -7.0])
    found = peaks.find_shifts(_pair_corr(base, moved, kind), "pixel")
    # The reference's pc divides by |F_j|^2 only: windowing makes |F_i| != |F_j| and its
    # peak wanders by a pixel even on clean data (one reason METHOD.md calls it unreliable).
    np.testing.assert_allclose(found.shifts[0], [2, -7], atol=1.0 if kind == "pc" else 0)


def test_correlation_keeps_negative_lobes_negative():
    # The reference took |IFFT|, so a deep negative lobe could beat the true peak.
    base = _smooth_image((64, 64), 5)
    corr = _pair_corr(base, -base)[0]
    assert corr.min() < 0 and corr.argmin() == 0  # anti-correlated at zero shift


def test_wrap_shift():
    np.testing.assert_array_equal(peaks.wrap_shift(np.array([0, 31, 32, 63]), 64), [0, 31, -32, -1])


def test_local_maxima_are_distinct():
    corr = np.zeros((1, 32, 32))
    for (y, x), h in {(5, 5): 10.0, (5, 6): 9.0, (20, 20): 8.0, (30, 2): 7.0}.items():
        corr[0, y, x] = h
    pos, valid = peaks.local_maxima(corr, 3)
    # The 9 next to the 10 is not a separate maximum; the reference took it as peak 2.
    assert pos[0].tolist() == [[5, 5], [20, 20], [30, 2]]
    assert valid.all()


def _gaussian_map(shape, centre, amp=1.0, sigma=1.7):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dy = (yy - centre[0] + shape[0] / 2) % shape[0] - shape[0] / 2
    dx = (xx - centre[1] + shape[1] / 2) % shape[1] - shape[1] / 2
    return amp * np.exp(-(dy**2 + dx**2) / (2 * sigma**2))


@pytest.mark.parametrize("centre", [(20.3, 31.6), (49.6, 0.3)])
def test_gaussian_fit_divides_the_bias_out_at_each_window_pixel(centre):
    """A peak multiplied by a smooth, asymmetric bias is found where it was placed
    once ``bias`` is given (also where the window wraps); without it the bias pulls it."""
    shape = (50, 60)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    wave_y = np.cos(2 * np.pi * (yy - 7) / shape[0])
    bias = 1 + 0.4 * wave_y * np.sin(2 * np.pi * (xx + 5) / shape[1])
    corr = (_gaussian_map(shape, centre) + 0.1) * bias
    expected = (np.array(centre) + np.array(shape) / 2) % shape - np.array(shape) / 2
    found = peaks.find_shifts(corr[None], "gf", window_radius=5, bias=bias)
    np.testing.assert_allclose(found.shifts[0], expected, atol=1e-6)
    pulled = peaks.find_shifts(corr[None], "gf", window_radius=5)
    assert np.abs(pulled.shifts[0] - expected).max() > 1e-3


def test_gaussian_fit_recovers_subpixel_centre_across_the_edge():
    # Centre near the periodic edge: windows wrap instead of being skipped.
    corr = _gaussian_map((50, 60), (49.6, 0.3))[None] + 0.1
    found = peaks.find_shifts(corr, "gf", window_radius=5)
    np.testing.assert_allclose(found.shifts[0], [-0.4, 0.3], atol=1e-6)
    assert found.ok[0]


def test_gf_prefers_the_larger_fitted_peak_over_the_brightest_pixel():
    # A peak centred between pixels shows a lower brightest pixel than a slightly
    # weaker peak centred on a pixel; the fit sees the true heights (the sampling
    # problem behind unit-cell hops).
    split = _gaussian_map((64, 64), (20.5, 20.5), amp=1.0, sigma=1.5)
    on_pixel = _gaussian_map((64, 64), (40.0, 40.0), amp=0.9, sigma=1.5)
    corr = (split + on_pixel)[None]
    assert np.unravel_index(corr[0].argmax(), (64, 64)) == (40, 40)
    found = peaks.find_shifts(corr, "gf", num_peaks=2)
    np.testing.assert_allclose(found.shifts[0], [20.5, 20.5], atol=1e-6)
    pixel = peaks.find_shifts(corr, "pixel")
    np.testing.assert_array_equal(pixel.shifts[0], [-24, -24])  # index 40 of 64, wrapped


def test_gf_reports_failure_instead_of_returning_the_guess():
    flat = np.full((1, 32, 32), 3.0)  # no peak at all (e.g. a blank frame's pair)
    found = peaks.find_shifts(flat, "gf", num_peaks=3)
    assert not found.ok[0]
    # A dip is no peak either: negative amplitude is rejected, not returned as the guess.
    params, ok = peaks.fit_gaussians(-_gaussian_map((13, 13), (6, 6))[None], sigma_guess=2)
    assert not ok[0]


def test_batched_fit_matches_each_fit_alone():
    rng = np.random.default_rng(7)
    centres = rng.uniform(0, 40, size=(6, 2))
    corr = np.stack([_gaussian_map((40, 40), c) for c in centres])
    corr += rng.normal(0, 0.01, corr.shape)
    together = peaks.find_shifts(corr, "gf").shifts
    alone = np.concatenate([peaks.find_shifts(c[None], "gf").shifts for c in corr])
    np.testing.assert_allclose(together, alone, atol=1e-9)


def test_masked_energy_normalises_autocorrelation_to_one():
    frames = np.stack([_smooth_image((32, 48), 8)] * 2)
    spec = correlate.frame_spectra(frames, dtype=np.complex128)
    half = correlate.half_plane_mask(masks.fourier_mask((32, 48), "hann", 3))
    corr = correlate.correlation_maps(spec[:1], spec[1:], half, (32, 48))
    energy = correlate.masked_energy(spec, half, (32, 48))
    np.testing.assert_allclose(corr[0, 0, 0] / energy[0], 1.0, rtol=1e-9)


@pytest.mark.parametrize("kind", correlate.CORRELATION_KINDS)
@pytest.mark.parametrize("mask_dtype", [np.float32, np.complex64])
def test_pair_spectra_equal_the_products_of_gathered_spectra(kind, mask_dtype):
    # The compiled cross products (cc, real mask) and the gathered fallback (other kinds,
    # complex masks, strided spectra) against correlation_spectra of the gathered pairs.
    rng = np.random.default_rng(3)
    spectra = (rng.normal(size=(6, 9, 5)) + 1j * rng.normal(size=(6, 9, 5))).astype(np.complex64)
    mask = rng.uniform(size=(9, 5)).astype(mask_dtype)
    i, j = np.array([0, 0, 3, 5, 2]), np.array([1, 4, 3, 0, 2])
    for a, b in ((spectra, spectra[::-1].copy()), (spectra[:, :, ::-1], spectra)):
        expected = correlate.correlation_spectra(a[i], b[j], mask, kind)
        found = correlate.pair_spectra(a, b, i, j, mask, kind)
        np.testing.assert_allclose(found, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("source", [np.float64, np.float32, np.uint16])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_frame_spectra_is_the_windowed_rfft2_of_the_centred_frames(source, dtype):
    """The compiled centring (mean in float64) against its numpy definition, for any
    input dtype and leading axes; the input is left untouched."""
    rng = np.random.default_rng(4)
    frames = (rng.random((2, 3, 24, 30)) * 1000 + 5000).astype(source)
    before = frames.copy()
    spec = correlate.frame_spectra(frames, dtype=dtype, kx_max=9)
    data = frames.astype(np.float64)
    centred = data - data.mean(axis=(-2, -1), keepdims=True)
    expected = np.fft.rfft2(centred * correlate.hann_window((24, 30)))
    assert spec.shape == (2, 3, 24, 10) and spec.dtype == dtype
    scale = np.abs(expected).max()
    tol = 1e-5 if dtype == np.complex64 else 1e-12
    np.testing.assert_allclose(spec, expected[..., :10], rtol=0, atol=tol * scale)
    np.testing.assert_array_equal(frames, before)


@pytest.mark.parametrize("kx_max", [None, 9])
def test_row_weighted_spectra_are_the_rfft2_of_the_weighted_centred_frames(kx_max):
    """The parts of a frame (tear cuts) from the frame's own transform along x, against
    numpy's rfft2 of each centred, windowed frame times each row weight."""
    rng = np.random.default_rng(5)
    frames = rng.random((3, 24, 30)) * 100
    weights = rng.random((2, 24))
    spec, parts = correlate.frame_spectra(
        frames, dtype=np.complex128, kx_max=kx_max, row_weights=weights
    )
    centred = (frames - frames.mean(axis=(-2, -1), keepdims=True)) * correlate.hann_window((24, 30))
    keep = slice(None) if kx_max is None else slice(None, kx_max + 1)
    expected = np.fft.rfft2(centred[:, None] * weights[None, :, :, None])[..., keep]
    assert parts.shape == (3, 2, 24, spec.shape[-1])
    np.testing.assert_allclose(parts, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(spec, np.fft.rfft2(centred)[..., keep], rtol=0, atol=1e-9)


@pytest.mark.parametrize("shape", [(24, 30), (23, 31)])
@pytest.mark.parametrize("kx_max", [None, 6])
def test_checkerboard_part_is_the_rfft2_of_the_even_pixels(shape, kx_max):
    """The checkerboard half of each frame from the frame's own transform along x (read
    backwards from the Nyquist column for even widths), first among the parts, against
    numpy's rfft2 of the centred, windowed frame with the odd pixels zeroed."""
    rng = np.random.default_rng(6)
    frames = rng.random((3, *shape)) * 100
    weights = rng.random((2, shape[0]))
    spec, parts = correlate.frame_spectra(
        frames, dtype=np.complex128, kx_max=kx_max, row_weights=weights, checkerboard=True
    )
    centred = (frames - frames.mean(axis=(-2, -1), keepdims=True)) * correlate.hann_window(shape)
    even = np.add.outer(np.arange(shape[0]), np.arange(shape[1])) % 2 == 0
    keep = slice(None) if kx_max is None else slice(None, kx_max + 1)
    expected = np.fft.rfft2(centred * even)[..., keep]
    assert parts.shape == (3, 3, shape[0], spec.shape[-1])
    np.testing.assert_allclose(parts[:, 0], expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    cuts = np.fft.rfft2(centred[:, None] * weights[None, :, :, None])[..., keep]
    np.testing.assert_allclose(parts[:, 1:], cuts, rtol=0, atol=1e-12 * np.abs(cuts).max())
