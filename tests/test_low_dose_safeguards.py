"""Safeguards of the robust defaults: say so when the data cannot support an answer."""

from __future__ import annotations

import numpy as np
import pytest

import daskreg
from daskreg.errors import RegistrationWarning
from daskreg.synthetic import lattice_series


def _rms(result, series) -> float:
    shifts = result.shifts.values
    used = np.isfinite(shifts).all(axis=1)
    error = shifts[used] - series.shifts[used]
    error -= error.mean(axis=0)
    return float(np.sqrt((error**2).sum(axis=1).mean()))


@pytest.mark.parametrize("seed", [1, 2])
def test_drift_beyond_half_the_frame_is_flagged_not_silently_wrong(seed):
    # 220 px over 12 frames of 128^2 (issue 17): far pairs share no area and their
    # shifts wrap around the frame. The right answer, or a warning with sigma that
    # covers the error.
    series = lattice_series(
        12, (128, 128), lattice="perovskite", spacing=12, dose=20, drift_step=(20, 0), seed=seed
    )
    with pytest.warns(RegistrationWarning) as caught:
        result = daskreg.register(series.stack)
    rms = _rms(result, series)
    if rms > 0.5:
        assert result.dataset.attrs["reliable"] == 0
        assert any("disagree too much" in str(w.message) for w in caught)
        assert np.nanmedian(result.shift_uncertainty.values) >= 3.0


@pytest.mark.parametrize("seed", [0, 1])
def test_data_too_noisy_to_register_say_so(seed):
    # 0.5 counts at a column peak with read noise: no setting registers this (the
    # accuracy harness's best hand setting hops on most frames).
    series = lattice_series(
        16, (256, 256), lattice="perovskite", spacing=16, dose=0.5, read_noise=1.0, seed=seed
    )
    with pytest.warns(RegistrationWarning, match="disagree too much"):
        result = daskreg.register(series.stack)
    assert result.dataset.attrs["reliable"] == 0
    sigma = np.nanmedian(result.shift_uncertainty.values)
    assert sigma >= 0.3 * 16  # at least a good fraction of a lattice spacing


@pytest.mark.parametrize("lattice", ["perovskite", "hexagonal", "anisotropic"])
def test_clean_series_is_reliable_and_records_its_choices(lattice):
    series = lattice_series(12, (256, 256), lattice=lattice, spacing=12, dose=20, seed=3)
    result = daskreg.register(series.stack)
    attrs = result.dataset.attrs
    assert attrs["reliable"] == 1
    assert "mask" in attrs["auto_choices"] and attrs["lattice_basis"] != "null"
    assert _rms(result, series) < 0.1


def test_band_one_warns_that_nothing_can_be_checked():
    series = lattice_series(8, (96, 96), dose=50, seed=4)
    with pytest.warns(RegistrationWarning, match="band=1 links each frame"):
        daskreg.register(series.stack, band=1)
