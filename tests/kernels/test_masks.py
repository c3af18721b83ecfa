"""Fourier masks against their formulas at hand-computed points."""

from __future__ import annotations

import numpy as np
import pytest

from daskreg.kernels.masks import (
    MASK_KINDS,
    elliptical_mask,
    fourier_grids,
    fourier_mask,
    mask_support,
)


def test_grids_per_axis_and_centred():
    g = fourier_grids((6, 9))
    # Centred: zero frequency at (ny//2, nx//2); odd sizes have no missing row.
    assert g.ky[3, 4] == 0 and g.kx[3, 4] == 0
    assert g.ky[:, 0].tolist() == [-3, -2, -1, 0, 1, 2]
    assert g.kx[0].tolist() == [-4, -3, -2, -1, 0, 1, 2, 3, 4]
    np.testing.assert_allclose(g.q[0, 4], 3 / 6)  # 3 cycles over 6 px along y
    np.testing.assert_allclose(g.q[3, 0], 4 / 9)
    unshifted = fourier_grids((6, 9), centred=False)
    assert unshifted.ky[0, 0] == 0 and unshifted.ky[1, 0] == 1


# On a 64x64 frame with n=4 the cutoff is k_max = 64/4/2 = 8 cycles per frame.
# (ky, kx) = (4, 0) is at rho = 0.5; (0, 8) at rho = 1 (outside).
@pytest.mark.parametrize(
    ("kind", "at_half", "at_quarter"),
    [
        ("bandpass", np.sin(np.pi * 0.5) ** 2, np.sin(np.pi * 0.25) ** 2),
        ("lowpass", np.cos(np.pi * 0.25) ** 2, np.cos(np.pi * 0.125) ** 2),
        ("hann", np.cos(np.pi * 0.25) ** 2, np.cos(np.pi * 0.125) ** 2),
        ("hamming", 0.54 + 0.46 * np.cos(np.pi * 0.5), 0.54 + 0.46 * np.cos(np.pi * 0.25)),
        (
            "blackman",
            0.42 + 0.5 * np.cos(np.pi * 0.5) + 0.08 * np.cos(np.pi),
            0.42 + 0.5 * np.cos(np.pi * 0.25) + 0.08 * np.cos(np.pi * 0.5),
        ),
        ("gaussian", np.exp(-(1.5**2)), np.exp(-(0.75**2))),
        ("none", 1.0, 1.0),
    ],
)
def test_radial_masks_match_formulas(kind, at_half, at_quarter):
    mask = fourier_mask((64, 64), kind, n=4)
    np.testing.assert_allclose(mask[4, 0], at_half, rtol=1e-12)
    np.testing.assert_allclose(mask[0, -4], at_half, rtol=1e-12)  # kx = -4: symmetric
    np.testing.assert_allclose(mask[2, 0], at_quarter, rtol=1e-12)
    if kind not in ("gaussian", "none"):
        assert mask[8, 0] == 0 and mask[0, 8] == 0  # hard cut at k_max


def test_hamming_jumps_at_cutoff():
    mask = fourier_mask((640, 640), "hamming", n=4)  # k_max = 80
    assert mask[79, 0] > 0.07 and mask[80, 0] == 0


def test_non_square_cutoff_is_per_axis():
    # 64 x 128 with n = 4: the cut sits at 8 cycles along y and 16 along x, both at
    # 1/8 cycle per pixel. The reference used shape[1] for both axes.
    mask = fourier_mask((64, 128), "bandpass", n=4)
    assert mask[7, 0] > 0 and mask[8, 0] == 0
    assert mask[0, 15] > 0 and mask[0, 16] == 0
    np.testing.assert_allclose(mask[4, 0], mask[0, 8])


def test_odd_sizes_work_and_are_symmetric():
    mask = fourier_mask((63, 65), "hann", n=3, centred=True)
    assert mask.shape == (63, 65)
    np.testing.assert_allclose(mask, mask[::-1, ::-1])


def test_elliptical_axes_and_angle():
    # sigma = 1/(6 n) cycles/px; theta = 0 puts n1 along x.
    mask = elliptical_mask((120, 120), n1=2, n2=10, theta=0.0)
    s1, s2 = 1 / 12, 1 / 60
    fx = 6 / 120
    np.testing.assert_allclose(mask[0, 6], np.exp(-(fx**2) / (2 * s1**2)))
    np.testing.assert_allclose(mask[6, 0], np.exp(-(fx**2) / (2 * s2**2)))
    rotated = elliptical_mask((120, 120), n1=2, n2=10, theta=np.pi / 2)
    np.testing.assert_allclose(rotated[6, 0], mask[0, 6])
    # The factor 1/2 makes eg(n, n) differ from gaussian(n), as in the reference.
    assert not np.allclose(elliptical_mask((64, 64), 4, 4), fourier_mask((64, 64), "gaussian", 4))


def test_mask_support():
    assert mask_support(fourier_mask((64, 96), "bandpass", n=4)) == (7, 11)
    assert mask_support(np.zeros((8, 8))) == (-1, -1)


def test_every_kind_is_covered():
    assert set(MASK_KINDS) == {
        "bandpass",
        "lowpass",
        "hann",
        "hamming",
        "blackman",
        "gaussian",
        "none",
    }
