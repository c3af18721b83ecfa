"""Bad frames of every kind in one series: each is found, left out with its reason, and the
other frames are registered as accurately as in a clean series (issue 8)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import daskreg
from daskreg.errors import RegistrationWarning
from daskreg.method.bad_frames import contrast_outliers
from daskreg.synthetic import lattice_series

from .conftest import rms_error

# Frame -> how it is spoiled, and the words its recorded reason must contain.
SPOILED = {
    3: ("blank", "contrast|correlates much worse"),
    7: ("nan", "NaN"),
    9: ("part-nan", "NaN"),
    11: ("saturated", "contrast|correlates much worse"),
    14: ("bright", "contrast"),
    16: ("torn", "correlates much worse"),
}


@pytest.fixture(scope="module")
def spoiled_series():
    """20 frames of 256x256 at 50 counts per column, six of them spoiled."""
    generated = {k: kind for k, (kind, _) in SPOILED.items() if kind in ("blank", "torn")}
    series = lattice_series(20, (256, 256), dose=50, seed=3, bad_frames=generated)
    stack = series.stack.copy()
    stack[7] = np.nan
    stack[9, :80] = np.nan
    # Detector gain far too high: 70 % of the frame clipped at full scale.
    gained = stack[11] * 50
    stack[11] = np.minimum(gained, np.quantile(gained, 0.3))
    # Recorded at ten times the beam current of the rest of the series.
    stack[14] *= 10
    return series, stack


@pytest.mark.parametrize(
    "engine", [{"engine": "numpy"}, {"engine": "dask", "scheduler": "threads", "progress": False}],
    ids=["numpy", "dask"],
)  # fmt: skip
def test_every_kind_of_bad_frame_is_left_out_with_its_reason(spoiled_series, engine):
    series, stack = spoiled_series
    with pytest.warns(RegistrationWarning, match="left out frames"):
        result = daskreg.register(stack, **engine)
    assert np.flatnonzero(result.bad_frames.values).tolist() == sorted(SPOILED)
    reasons = result.bad_frame_reasons
    for frame, (kind, words) in SPOILED.items():
        assert re.search(words, reasons[frame]), (kind, reasons[frame])
    assert np.isnan(result.shifts.values[sorted(SPOILED)]).all()
    # The 14 clean frames at 50 counts per column peak are measured to ~0.02 px RMS
    # (0.03 px worst) when the spoiled ones are out; 0.05 px is the target and
    # far below the 0.3-unit-cell jump of the torn frame or any pixel-level pull that a
    # spoiled frame left in would cause.
    used = ~result.bad_frames.values
    assert rms_error(result.shifts.values, series.shifts, used) <= 0.05
    error = result.shifts.values[used] - series.shifts[used]
    assert np.abs(error - error.mean(axis=0)).max() <= 0.05


@pytest.mark.parametrize(
    ("factor", "flagged"),
    [(10.0, [5]), (1e-3, [5]), (0.0, [5]), (2.0, []), (0.5, [])],
    ids=["bright", "saturated", "no-contrast", "twice", "half"],
)
def test_contrast_outliers_by_factor(factor: float, flagged: list[int]):
    # Shot noise moves the band energy by a few per cent: frames up to the factor
    # CONTRAST_FACTOR = 4 from the median are normal, beyond it they are not.
    energy = 1.0 + 0.03 * np.random.default_rng(0).standard_normal(12)
    energy[5] *= factor
    used = np.ones(12, dtype=bool)
    assert contrast_outliers(energy, used).tolist() == flagged


def test_slow_drift_of_the_beam_current_is_not_an_outlier():
    energy = np.geomspace(1.0, 3.0, 20)
    assert contrast_outliers(energy, np.ones(20, dtype=bool)).size == 0
