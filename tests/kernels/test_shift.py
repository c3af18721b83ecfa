"""Fourier shifts, the registered sum and crop bounds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from daskreg.kernels import shift


@pytest.mark.parametrize("shape", [(32, 32), (31, 45)])
def test_fourier_shift_matches_scipy_real_part(shape):
    rng = np.random.default_rng(0)
    frame = ndimage.gaussian_filter(rng.random(shape), 2, mode="wrap")
    d = np.array([2.3, -4.7])
    got = shift.fourier_shift_frames(frame, d)
    expected = np.fft.ifftn(ndimage.fourier_shift(np.fft.fftn(frame), d)).real
    # Only the Nyquist row/column of even sizes may differ (a real image cannot shift
    # it unambiguously); on this smooth frame that term is ~1e-7 of the signal.
    np.testing.assert_allclose(got, expected, atol=1e-6 if shape[0] % 2 == 0 else 1e-10)


def test_integer_shift_is_a_roll_and_shift_unshift_is_identity():
    rng = np.random.default_rng(1)
    frame = rng.random((16, 20))
    np.testing.assert_allclose(
        shift.fourier_shift_frames(frame, [3, -2]), np.roll(frame, (3, -2), (0, 1)), atol=1e-12
    )
    # Odd sizes have no Nyquist term, so shift-then-unshift is exact to round-off.
    smooth = ndimage.gaussian_filter(frame[:15, :19], 2, mode="wrap")
    back = shift.fourier_shift_frames(shift.fourier_shift_frames(smooth, [1.3, 0.4]), [-1.3, -0.4])
    np.testing.assert_allclose(back, smooth, atol=1e-10)


def test_negative_pixels_stay_negative():
    frame = -np.ones((8, 8)) + 0.1 * np.eye(8)
    assert (shift.fourier_shift_frames(frame, [0.5, 0.5]) < 0).all()


def test_registered_sum_skips_nan_shifts():
    frames = np.stack([np.eye(8), 5 * np.ones((8, 8))])
    total = shift.registered_sum(frames, np.array([[0.0, 0.0], [np.nan, np.nan]]))
    np.testing.assert_allclose(total, np.eye(8), atol=1e-12)


def test_crop_bounds_and_coverage():
    shifts = np.array([[0.0, 0.0], [2.2, -1.5], [-3.7, 0.4], [np.nan, np.nan]])
    b = shift.crop_bounds(shifts, (40, 50))
    # Aligning moves content by -s: frame 2 (s_y = -3.7) covers y >= 3.7 -> ymin 4;
    # frame 1 (s_y = 2.2) covers y < 40 - 2.2 -> ymax 37 (exclusive, positive).
    assert tuple(b) == (4, 37, 2, 49)
    cov = shift.coverage(shifts, (40, 50))
    assert cov[b.ymin : b.ymax, b.xmin : b.xmax].min() == 3
    assert cov.max() == 3 and cov[0, 0] < 3


def test_zero_extreme_shift_gives_full_frame_not_empty_crop():
    # The reference produced an empty crop when the extreme shift was exactly zero.
    b = shift.crop_bounds(np.zeros((3, 2)), (10, 12))
    assert tuple(b) == (0, 10, 0, 12)


def _independent_aligned(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each plane ``(ny, nx)`` of ``frames[i]`` moved by ``-shifts[i]``, by scipy's
    ``fourier_shift`` on the full complex transform (not daskreg's half-plane one)."""
    out = np.empty(frames.shape)
    for i, frame in enumerate(frames):
        for k in np.ndindex(frame.shape[:-2]):
            spectrum = ndimage.fourier_shift(np.fft.fft2(frame[k].astype(float)), -shifts[i])
            out[(i, *k)] = np.fft.ifft2(spectrum).real
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("piece_planes", [None, 1, 3])
def test_aligned_sum_and_frames_match_scipy_in_any_layout(seed, piece_planes, monkeypatch):
    rng = np.random.default_rng(seed)
    shape = (31, 45)  # odd: no Nyquist term, so both transforms shift exactly alike
    if piece_planes is not None:
        # Pieces of a few planes: the plane slices and frame groups of large data.
        monkeypatch.setattr(shift, "_PIECE_BYTES", piece_planes * 8 * shape[0] * shape[1])
    frames = ndimage.gaussian_filter(rng.random((6, 3, *shape, 2)), (0, 0, 2, 2, 0), mode="wrap")
    frames = frames.astype(np.float32)
    shifts = rng.uniform(-6, 6, (6, 2))
    shifts[4] = np.nan
    # Planes (frame, energy, y, x, detector): scan axes in the middle, axes either side.
    planes = np.moveaxis(frames, 4, 1)
    expected = np.moveaxis(_independent_aligned(planes, shifts), 1, 4)
    used = np.isfinite(shifts).all(axis=1)
    total = shift.registered_sum(frames, shifts, scan_axes=(2, 3))
    aligned = shift.aligned_frames(frames, shifts, scan_axes=(-3, -2), dtype=np.float32)
    # Round-off of float64 transforms of O(1) values: ~1e-15; 1e-10 leaves room.
    scale = np.abs(frames).max()
    assert total.shape == frames.shape[1:] and total.dtype == np.float64
    np.testing.assert_allclose(total, expected[used].sum(axis=0), rtol=0, atol=1e-10 * scale)
    assert aligned.dtype == np.float32 and np.isnan(aligned[4]).all()
    # float32 output: its own rounding, 6e-8 relative.
    np.testing.assert_allclose(aligned[used], expected[used], rtol=0, atol=1e-6 * scale)


def test_aligned_sum_of_integer_shifts_is_a_sum_of_rolls():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 1000, (5, 16, 20)).astype(np.uint16)
    shifts = np.array([[0, 0], [3, -2], [-7, 5], [1, 9], [8, 10]])
    # Frame i shows the specimen moved by +shifts[i]: rolling it by -shifts[i] aligns it.
    rolled = [np.roll(f, -s, axis=(0, 1)) for f, s in zip(frames, shifts, strict=True)]
    np.testing.assert_allclose(
        shift.registered_sum(frames, shifts), np.sum(rolled, axis=0, dtype=float), rtol=0, atol=1e-9
    )


def test_add_shifted_and_shift_spectrum_are_the_phase_ramps_product():
    rng = np.random.default_rng(3)
    shape, move = (12, 15), np.array([0.7, -2.3])
    spectrum = rng.normal(size=(12, 8)) + 1j * rng.normal(size=(12, 8))
    total = rng.normal(size=(12, 8)) + 0j
    expected = total + spectrum * shift.phase_ramp(move, shape)
    shift.add_shifted(spectrum, move, shape, total)
    np.testing.assert_allclose(total, expected, rtol=1e-13)
    first = spectrum[:, :5].copy()
    shift.shift_spectrum(first, move, shape)
    np.testing.assert_allclose(first, spectrum[:, :5] * shift.phase_ramp(move, shape, columns=5))
