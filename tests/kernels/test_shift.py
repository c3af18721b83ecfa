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
