"""RegistrationResult.summary() against the truth, and the one list of result variables."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from daskreg import load_result, register
from daskreg.errors import FileFormatError, RegistrationWarning
from daskreg.io.results import save_dataset
from daskreg.summary import EXAMPLE_VARIABLES, RESULT_VARIABLES, STAGES, TOTAL, summarize
from daskreg.synthetic import lattice_series

N_FRAMES = 9
BLANK = 4
FRAMES = (1, 8)
# The shifts are recovered to a few hundredths of a pixel at this dose (test_register);
# 0.1 px on a peak-to-peak range leaves room for both extremes' errors.
DRIFT_ATOL = 0.1


@pytest.fixture(scope="module")
def series():
    return lattice_series(N_FRAMES, (80, 80), dose=100, seed=7, bad_frames={BLANK: "blank"})


@pytest.fixture(scope="module", params=["numpy", "dask"])
def result(request, series):
    start = time.perf_counter()
    with pytest.warns(RegistrationWarning, match=f"{BLANK}"):
        result = register(
            series.to_xarray(),
            window_radius=4,
            frames=FRAMES,
            engine=request.param,
            **({"scheduler": "synchronous", "progress": False} if request.param == "dask" else {}),
        )
    # The wall time of the call, which every recorded time lies within.
    result.test_wall_seconds = time.perf_counter() - start
    return result


def test_summary_counts_frames_pairs_and_drift(result, series):
    s = result.summary()
    used = np.ones(N_FRAMES, bool)
    used[[BLANK, *range(FRAMES[0]), *range(FRAMES[1], N_FRAMES)]] = False
    assert (s.n_frames, s.n_used, s.frame_shape) == (N_FRAMES, used.sum(), (80, 80))
    assert list(s.bad_frames) == [BLANK] and "contrast" in s.bad_frames[BLANK]
    assert s.outside_range == (0, 8) and s.frame_range == FRAMES
    # Every pair of the stack is measured once (the range only decides what is used).
    assert s.n_pairs == N_FRAMES * (N_FRAMES - 1) // 2
    truth = series.shifts[used]
    np.testing.assert_allclose(s.drift_range, np.ptp(truth, axis=0), atol=DRIFT_ATOL)
    assert all(0 < u < DRIFT_ATOL for u in s.uncertainty)
    assert s.crop == result.crop and s.cropped
    assert s.outlier_test == "robust" and s.threshold_chosen and s.threshold > 0
    assert s.reliable and s.pair_scatter < DRIFT_ATOL and s.hops_corrected == 0


def test_both_engines_name_the_same_stages(result, request):
    recorded = json.loads(result.dataset.attrs["timings"])
    # Each engine records every stage and its total once, under the same names.
    assert list(recorded) == [*STAGES, TOTAL]
    s = result.summary()
    assert list(s.timings) == list(STAGES)
    assert all(seconds >= 0 for seconds in s.timings.values())
    # The total is the engine's own, not added again: the stages lie within it (the Dask
    # engine's also holds the cluster start), and it is not their double.
    assert s.total_seconds == recorded[TOTAL]
    assert sum(s.timings.values()) * 0.99 <= s.total_seconds <= result.test_wall_seconds
    if request.node.callspec.params["result"] == "numpy":
        assert s.total_seconds == pytest.approx(sum(s.timings.values()))


def test_results_saved_with_the_old_stage_names_read_alike(result):
    old = {"load": 1.0, "pairs": 2.0, "outliers_and_shifts": 0.5, "average": 0.25}
    dataset = result.dataset.assign_attrs(timings=json.dumps(old))
    s = summarize(dataset)
    assert s.timings == {"load": 1.0, "pairs": 2.0, "solve": 0.5, "average": 0.25}
    assert s.total_seconds == 3.75


def test_a_result_holds_exactly_the_listed_variables(result):
    assert set(result.dataset.data_vars) == {*RESULT_VARIABLES, *EXAMPLE_VARIABLES}


@pytest.mark.parametrize("missing", ["fit_ok", "coverage"])
def test_load_refuses_a_dataset_without_a_listed_variable(result, tmp_path, missing):
    path = save_dataset(result.dataset.drop_vars(missing), tmp_path / "partial.nc")
    with pytest.raises(FileFormatError, match=missing):
        load_result(path)
