"""Bad frames of every kind in one series: each is found, left out with its reason, and the
other frames are registered as accurately as in a clean series (issue 8)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import daskreg
from daskreg.errors import RegistrationWarning
from daskreg.kernels import correlate
from daskreg.method import bad_frames
from daskreg.method.bad_frames import contrast_outliers, weak_frames, window_overlap
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


@pytest.mark.parametrize("window", ["hann", "tukey", None])
def test_window_overlap_is_the_windows_normalised_overlap(window):
    # Independent: the 2-D window's overlap with itself rolled by the shift, by sums.
    shape = (40, 56)
    w = correlate.real_window(shape, window)
    shifts = np.array([[0, 0], [3, -5], [-17, 22], [20, 28], [39, -55], [-41, 60]], float)
    expected = [np.sum(w * np.roll(w, s.astype(int), (0, 1))) / np.sum(w * w) for s in shifts]
    np.testing.assert_allclose(window_overlap(shifts, shape, window), expected, atol=1e-12)
    # Between pixels: linear along each axis; NaN (unmeasured) pairs read as full overlap.
    half = window_overlap(np.array([[2.5, 0.0], [2.0, 0.0], [3.0, 0.0]]), shape, window)
    assert half[0] == pytest.approx(half[1:].mean())
    assert window_overlap(np.array([[np.nan, np.nan]]), shape, window)[0] == 1.0


def _drift_quality(window: str, step: tuple[float, float], hop_from: int | None):
    """Correlation coefficients of 20 frames of 256^2 drifting by ``step`` px per frame,
    modelled exactly: each pair's coefficient is the frames' own (0.6, with 0.2 %
    scatter) times the windows' overlap at its measured shift. Pairs ``hop_from`` frames
    apart or more hop by a lattice translation (14 px) towards zero shift, where the
    specimen's non-periodic content matches less (x 0.88, as measured on synthetic
    perovskite series). Frame 9 is torn (x 0.75 on every pair). Returns the
    coefficients and the overlaps at the measured shifts."""
    n, shape = 20, (256, 256)
    rng = np.random.default_rng(1)
    position = np.arange(n)[:, None] * np.array(step)
    shift = position[None, :, :] - position[:, None, :]
    apart = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    far = np.zeros((n, n), bool) if hop_from is None else apart >= hop_from
    measured_shift = shift - far[..., None] * 14.0 * np.round(shift / 14.0)
    base = 0.6 * (1 + 0.002 * rng.standard_normal((n, n)))
    overlap = window_overlap(measured_shift, shape, window)
    quality = (base + base.T) / 2 * overlap * np.where(far, 0.88, 1.0)
    quality[9] *= 0.75
    quality[:, 9] *= 0.75
    return quality, overlap


@pytest.mark.parametrize("window", ["hann", "tukey"])
@pytest.mark.parametrize("quantile", [0.5, 0.75])
def test_weak_frames_see_tears_not_drift(window, quantile, monkeypatch):
    # 150 px of drift, no hops: the end frames' pairs are the most displaced. Divided by
    # the overlap, any quantile of a frame's pairs sees the tear and only the tear.
    monkeypatch.setattr(bad_frames, "WEAK_FRAME_QUANTILE", quantile)
    quality, overlap = _drift_quality(window, (8.0, -6.0), hop_from=None)
    measured, used = ~np.eye(20, dtype=bool), np.ones(20, dtype=bool)
    assert weak_frames(quality, measured, used, overlap=overlap).tolist() == [9]
    # Undivided, the frames spread from 0.5 to 1.2 times the median along the drift
    # and that spread hides the tear.
    assert 9 not in weak_frames(quality, measured, used)


@pytest.mark.parametrize("window", ["hann", "tukey"])
def test_weak_frames_see_tears_not_hopped_far_pairs(window, monkeypatch):
    # The far pairs of a long drift hop towards zero: most of an end frame's pairs.
    quality, overlap = _drift_quality(window, (3.0, -2.5), hop_from=8)
    measured, used = ~np.eye(20, dtype=bool), np.ones(20, dtype=bool)
    assert weak_frames(quality, measured, used, overlap=overlap).tolist() == [9]
    # A median of the pairs (12 of frame 0's 19 hopped) would call the ends weak.
    monkeypatch.setattr(bad_frames, "WEAK_FRAME_QUANTILE", 0.5)
    assert {0, 19} < set(weak_frames(quality, measured, used, overlap=overlap).tolist())
