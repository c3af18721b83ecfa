"""The Dask engine gives the numpy engine's result, for every chunking and pair set.

Tolerances: 1e-6 px and 1e-6 relative are the issue's; both engines run the same kernels
on the same spectra, so only summation order differs (measured: 0 px, ~4e-16).
"""

from __future__ import annotations

import time
import warnings

import dask
import dask.array as da
import numpy as np
import pytest

import daskreg
from daskreg.parallel import engine, memory

from .conftest import N_FRAMES, assert_same_result


@pytest.fixture(scope="module")
def numpy_results(series):
    return {band: daskreg.register(series.stack, band=band) for band in (None, 3)}


@pytest.mark.parametrize("band", [None, 3])
@pytest.mark.parametrize("chunks", [1, 7, N_FRAMES])
def test_same_as_numpy(series, numpy_results, chunks, band):
    got = daskreg.register(
        series.stack,
        engine="dask",
        scheduler="synchronous",
        chunks=chunks,
        band=band,
        progress=False,
    )
    assert_same_result(got, numpy_results[band])


def test_banded_result_has_offset_layout(series, numpy_results):
    got = daskreg.register(series.stack, engine="dask", scheduler="threads", band=3, progress=False)
    matrix = got.dataset["shift_matrix"]
    assert matrix.dims == ("frame_i", "offset", "axis")
    assert matrix.sizes["offset"] == 7
    assert got.dataset.attrs["pair_layout"] == "band"


@pytest.mark.parametrize("band", [None, 3])
def test_zarr_input_on_distributed(zarr_stack, numpy_results, client, band):
    got = daskreg.register(zarr_stack, client=client, band=band, chunks=7, progress=False)
    assert_same_result(got, numpy_results[band])


def test_spectra_spilled_to_zarr(series, numpy_results, monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "SPECTRA_FRACTION", 0.0)
    got = daskreg.register(
        series.stack,
        engine="dask",
        scheduler="threads",
        chunks=5,
        temp_dir=str(tmp_path),
        progress=False,
    )
    assert_same_result(got, numpy_results[None])
    # The spilled spectra are removed afterwards.
    assert list(tmp_path.iterdir()) == []


def test_dask_array_input_goes_to_dask(series, numpy_results, monkeypatch):
    calls = []
    real = engine.register_dask
    monkeypatch.setattr(engine, "register_dask", lambda *a, **k: calls.append(1) or real(*a, **k))
    stack = da.from_array(series.stack, chunks=(6, 64, 64))
    got = daskreg.register(stack, scheduler="synchronous", progress=False)
    assert calls == [1]
    assert_same_result(got, numpy_results[None])


def test_numpy_input_stays_in_memory(series, monkeypatch):
    monkeypatch.setattr(engine, "register_dask", lambda *a, **k: pytest.fail("used Dask"))
    daskreg.register(series.stack[:6])


def test_chunked_frames_are_rechunked_with_a_warning(series, numpy_results):
    stack = series.to_xarray().chunk({"frame": 6, "y": 32})
    with pytest.warns(daskreg.errors.RegistrationWarning, match="rechunked to whole frames"):
        got = daskreg.register(stack, scheduler="synchronous", progress=False)
    assert_same_result(got, numpy_results[None])


def test_bad_frames_flagged_like_numpy(series):
    stack = series.stack.copy()
    stack[4] = np.nan
    stack[9] = 7.0
    with pytest.warns(daskreg.errors.RegistrationWarning, match="4: contains NaN"):
        expected = daskreg.register(stack)
    # The warning raised inside the analysis task reaches the caller too.
    with pytest.warns(daskreg.errors.RegistrationWarning, match="4: contains NaN"):
        got = daskreg.register(
            stack, engine="dask", scheduler="synchronous", chunks=4, progress=False
        )
    assert_same_result(got, expected)
    assert got.bad_frame_reasons == expected.bad_frame_reasons
    assert {4, 9} <= set(got.bad_frame_reasons)


def test_caller_array_untouched(series):
    stack = series.stack.copy()
    stack[2] = np.nan
    before = stack.copy()
    with pytest.warns(daskreg.errors.RegistrationWarning):
        daskreg.register(stack, engine="dask", scheduler="synchronous", progress=False)
    np.testing.assert_array_equal(stack, before)


def test_in_memory_stack_on_distributed_is_sent_once(series, numpy_results, client):
    """A numpy stack on a cluster: the numpy result, the frames persisted once instead
    of embedded in both phases' graphs (distributed warns of graphs larger than its
    threshold, lowered here below the stack's size), and nothing left on the workers."""
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "20kB"}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = daskreg.register(series.stack, client=client, chunks=7, progress=False)
    assert_same_result(got, numpy_results[None])
    assert not [w for w in caught if "large graph" in str(w.message)]
    # The persisted chunks are released when the registration returns; the workers
    # drop them a moment later.
    deadline = time.monotonic() + 10
    while any(client.run(lambda dask_worker: len(dask_worker.data)).values()):
        assert time.monotonic() < deadline, "the persisted frames stayed on the workers"
        time.sleep(0.05)
