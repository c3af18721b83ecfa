"""Fixtures of the Dask engine tests: small synthetic stacks, a Zarr copy, a client."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from daskreg.synthetic import lattice_series

N_FRAMES = 17  # with chunks of 7 the last chunk is uneven (7, 7, 3)


@pytest.fixture(scope="session")
def series():
    """17 drifting 64x64 frames: 136 pairs, a second per registration."""
    return lattice_series(N_FRAMES, (64, 64), dose=100, seed=5)


@pytest.fixture(scope="session")
def zarr_stack(series, tmp_path_factory):
    """The series as a Zarr v3 store chunked along frames, opened lazily."""
    path = tmp_path_factory.mktemp("zarr") / "stack.zarr"
    stack = series.to_xarray().chunk({"frame": 4})
    stack.to_dataset(name="stack").to_zarr(path, zarr_format=3, consolidated=False)
    return xr.open_zarr(path, consolidated=False)["stack"]


@pytest.fixture(scope="module")
def client():
    """A small in-process distributed cluster shared by a module's tests."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def assert_same_result(got, expected, *, shift_atol=1e-6, average_rtol=1e-6):
    """The Dask path equals the numpy path: shifts to 1e-6 px, average to 1e-6 relative."""
    np.testing.assert_allclose(got.shifts.values, expected.shifts.values, atol=shift_atol)
    np.testing.assert_array_equal(got.bad_frames.values, expected.bad_frames.values)
    scale = np.abs(expected.average_full.values).max()
    np.testing.assert_allclose(
        got.average_full.values, expected.average_full.values, atol=average_rtol * scale
    )
    assert got.crop == expected.crop
    assert got.dataset["shift_matrix"].dims == expected.dataset["shift_matrix"].dims
    np.testing.assert_array_equal(got.outliers.values, expected.outliers.values)
