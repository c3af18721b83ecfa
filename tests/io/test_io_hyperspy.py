"""Lazy HyperSpy signals of every format: read through their file, registered on a cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

import daskreg
from daskreg.errors import ParameterError
from daskreg.io import _hyperspy
from daskreg.synthetic import lattice_series

hs = pytest.importorskip("hyperspy.api", reason="HyperSpy is optional; these tests need it")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    # In-process workers: the graph is still serialised to reach them, as on any cluster.
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as started,
    ):
        yield started


@pytest.fixture(scope="module")
def series_tif(tmp_path_factory):
    series = lattice_series(8, (96, 96), dose=100, seed=31)
    path = tmp_path_factory.mktemp("hs") / "series.tif"
    tifffile.imwrite(path, series.stack.astype(np.float32), imagej=True)
    return path, series.stack.astype(np.float32)


def test_a_lazy_tif_signal_registers_on_a_cluster_as_its_array(series_tif, client):
    path, frames = series_tif
    signal = hs.load(path, lazy=True)
    stack = daskreg.open_stack(signal)
    # Read by daskreg's reader from the file, not through HyperSpy's open file handle.
    assert stack.attrs["source"] == str(path)
    result = daskreg.register(signal, client=client, progress=False, window_radius=4)
    expected = daskreg.register(frames, window_radius=4)
    # The same frames through the same method: the engines agree to rounding.
    np.testing.assert_allclose(result.shifts, expected.shifts, rtol=0, atol=1e-6)


def test_a_changed_lazy_signal_is_computed_not_read_from_its_file(series_tif):
    path, frames = series_tif
    signal = hs.load(path, lazy=True)
    doubled = daskreg.open_stack(signal * 2)
    np.testing.assert_array_equal(doubled.values, 2 * frames)
    assert doubled.attrs["source"] != str(path)
    sliced = daskreg.open_stack(signal.inav[2:6])
    np.testing.assert_array_equal(sliced.values, frames[2:6])
    # Changed in place: HyperSpy still names the file, whose values are no longer its own.
    signal.data = signal.data + 1
    assert signal.tmp_parameters.filename == "series"
    np.testing.assert_array_equal(daskreg.open_stack(signal).values, frames + 1)


def test_a_large_changed_lazy_tif_signal_is_refused_saying_what_to_do(series_tif, monkeypatch):
    path, _ = series_tif
    monkeypatch.setattr(_hyperspy, "IN_MEMORY_BYTES", 0)
    # Its graph holds HyperSpy's open file handle: it cannot reach the workers.
    with pytest.raises(ParameterError, match=r"signal\.save\('stack\.zspy'\)") as caught:
        daskreg.open_stack(hs.load(path, lazy=True) * 2)
    # HyperSpy forgets the file of a computed signal.
    assert "file: none recorded" in str(caught.value)
    assert "cannot be sent to workers (TypeError" in str(caught.value)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name",
    ["03_Scanning_Preview.emi", "dmTest_3D_int16_64x65x66.dm4", "atomap_STO_ADF_cropped.hspy"],
)
def test_lazy_signals_of_vendor_files_are_read_through_the_file(name: str, data_dir: Path):
    path = data_dir / name
    lazy = hs.load(path, lazy=True)
    stack = daskreg.open_stack(lazy)
    assert Path(stack.attrs["source"]) == path.resolve()
    eager = daskreg.open_stack(hs.load(path))
    np.testing.assert_array_equal(stack.values, eager.values)
    assert stack.attrs["pixel_size"] == pytest.approx(eager.attrs["pixel_size"])


@pytest.mark.realdata
def test_a_lazy_emi_signal_registers_on_a_cluster_as_its_array(client, data_dir: Path):
    signal = hs.load(data_dir / "03_Scanning_Preview.emi", lazy=True)
    result = daskreg.register(signal, client=client, progress=False)
    expected = daskreg.register(np.asarray(signal.data.compute()))
    np.testing.assert_allclose(result.shifts, expected.shifts, rtol=0, atol=1e-6)
