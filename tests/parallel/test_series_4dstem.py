"""Leading dims (many series in one graph), 4D-STEM, and the saved registered stack."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import daskreg
from daskreg.errors import OutputPathError, ParameterError
from daskreg.parallel import cluster
from daskreg.parallel.fourd import register_4dstem
from daskreg.synthetic import lattice_series

from .conftest import assert_same_result


def test_ten_series_in_one_graph(monkeypatch):
    seeds = range(10)
    stacks = [lattice_series(6, (48, 48), dose=100, seed=s).stack for s in seeds]
    data = xr.DataArray(
        np.stack(stacks),
        dims=("temperature", "frame", "y", "x"),
        coords={"temperature": np.linspace(100, 300, 10)},
    )
    calls = []
    real = cluster.compute
    monkeypatch.setattr(
        cluster,
        "compute",
        lambda collections, *a, **k: calls.append(len(collections)) or real(collections, *a, **k),
    )
    results = daskreg.register_series(data, scheduler="threads", chunks=3, progress=False)
    # Each phase is one graph for all ten series: the survey of the frames (quality, hot
    # pixels, scale), the pairs and their analysis, the refinement (the registered sums,
    # the templates and the blocks, which carry the averages), then the two example
    # frames each.
    assert calls == [10, 10, 10, 10]
    assert len(results) == 10
    for k, (result, stack) in enumerate(zip(results, stacks, strict=True)):
        assert float(result.dataset["temperature"]) == data["temperature"].values[k]
        assert_same_result(result, daskreg.register(stack))
    combined = xr.concat([r.dataset["shifts"] for r in results], dim="temperature")
    assert combined.dims == ("temperature", "frame", "axis")


def test_numpy_engine_refuses_leading_dims():
    data = np.zeros((2, 5, 32, 32), np.float32)
    with pytest.raises(ParameterError, match="engine='dask'"):
        daskreg.register_series(data, engine="numpy")


def _fourd_series(n_frames=6, scan=(48, 48), q=(8, 8), seed=4):
    series = lattice_series(n_frames, scan, dose=200, seed=seed)
    qy, qx = np.mgrid[: q[0], : q[1]]
    # A diffraction disc off centre: the average must keep it where it is.
    pattern = np.exp(-((qy - 3.0) ** 2 + (qx - 4.5) ** 2) / 4.0).astype(np.float32)
    return series, pattern, series.stack[..., None, None] * pattern


def test_4dstem_shifts_and_average(tmp_path):
    series, pattern, data = _fourd_series()
    result = register_4dstem(data, scheduler="threads", chunks=2, progress=False)
    truth = series.shifts - series.shifts.mean(axis=0)
    # Same tolerance as the 2-D series of this size and dose (a few hundredths of a px);
    # a sign or axis error would be a pixel or more.
    np.testing.assert_allclose(result.shifts.values, truth, atol=0.15)
    average = result.dataset["average_4d"]
    assert average.dims == ("y", "x", "qy", "qx")
    # Every detector pixel is the registered image times the pattern (the data is
    # separable), so the 4D average is the virtual average times pattern / sum(pattern).
    expected = result.average_full.values[..., None, None] * pattern / pattern.sum()
    np.testing.assert_allclose(average.values, expected, atol=1e-5 * np.abs(expected).max())


def test_4dstem_detector_mask_and_dataarray():
    series, pattern, data = _fourd_series()
    annular = np.zeros(pattern.shape)
    annular[2:5, 3:7] = 1.0
    labelled = xr.DataArray(data, dims=("frame", "scan_y", "scan_x", "qy", "qx"))
    result = register_4dstem(labelled, annular, scheduler="synchronous", progress=False)
    plain = register_4dstem(data, scheduler="synchronous", progress=False)
    # The virtual images differ only by a factor, so the shifts agree closely.
    np.testing.assert_allclose(result.shifts.values, plain.shifts.values, atol=1e-3)
    with pytest.raises(ParameterError, match="detector has shape"):
        register_4dstem(data, np.ones((3, 3)), scheduler="synchronous", progress=False)


def test_save_stack_writes_aligned_frames(series, tmp_path):
    target = tmp_path / "aligned.zarr"
    result = daskreg.register(
        series.stack, scheduler="threads", chunks=5, save_stack=str(target), progress=False
    )
    aligned = daskreg.io.open_stack(target)
    assert aligned.dims == ("frame", "y", "x")
    used = ~result.bad_frames.values
    mean = aligned.values[used].mean(axis=0)
    # float32 storage: 1e-6 relative.
    np.testing.assert_allclose(mean, result.average_full.values, atol=1e-6 * np.abs(mean).max())
    assert not list(tmp_path.glob(".*partial"))
    with pytest.raises(OutputPathError, match="exists already"):
        daskreg.register(series.stack, scheduler="threads", save_stack=str(target), progress=False)
