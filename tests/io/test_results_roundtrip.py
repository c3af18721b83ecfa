"""Outputs read back equal to what was written: result Zarr/NetCDF, average TIFF, HyperSpy."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import daskreg
from daskreg.errors import FileFormatError, OutputPathError, StackFileNotFoundError
from daskreg.io.hyperspy_out import save_hspy, to_signal2d
from daskreg.result import RegistrationResult, load_result, save_result
from daskreg.synthetic import lattice_series

FORMATS = (".zarr", ".nc")


@pytest.fixture(scope="module")
def result() -> RegistrationResult:
    """A registration with a listed bad frame, on a non-square calibrated series."""
    series = lattice_series(7, (72, 64), dose=100, seed=5)
    return daskreg.register(series.to_xarray(), window_radius=4, bad_frames=[2])


@pytest.fixture(scope="module")
def band_result() -> RegistrationResult:
    """Pair matrices in the band layout (frame_i, offset) and no crop."""
    series = lattice_series(8, (64, 64), dose=100, seed=6)
    return daskreg.register(series.to_xarray(), window_radius=4, band=2, crop=False)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("which", ["result", "band_result"])
def test_result_round_trips_exactly(request, which: str, suffix: str, tmp_path: Path) -> None:
    original: RegistrationResult = request.getfixturevalue(which)
    path = save_result(original, tmp_path / f"run{suffix}")
    loaded = load_result(path)
    xr.testing.assert_identical(loaded.dataset, original.dataset)
    assert loaded.dataset.attrs == original.dataset.attrs
    assert isinstance(loaded.dataset.attrs["pixel_size"], tuple)
    for name, variable in original.dataset.variables.items():
        assert loaded.dataset[name].dtype == variable.dtype, name
    assert loaded.crop == original.crop
    assert loaded.bad_frame_reasons == original.bad_frame_reasons
    np.testing.assert_array_equal(loaded.coverage, original.coverage)


@pytest.mark.parametrize("suffix", FORMATS)
def test_plain_xarray_reads_the_result_without_warnings(
    result: RegistrationResult, suffix: str, tmp_path: Path
) -> None:
    path = save_result(result, tmp_path / f"run{suffix}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opened = xr.open_zarr(path) if suffix == ".zarr" else xr.open_dataset(path)
        with opened:
            np.testing.assert_array_equal(opened["shifts"], result.shifts)
            np.testing.assert_array_equal(opened["coverage"], result.coverage)
            np.testing.assert_allclose(
                opened.attrs["pixel_size"], result.dataset.attrs["pixel_size"]
            )
    if suffix == ".zarr":
        with xr.open_dataset(path, engine="zarr") as generic:
            assert "average_full" in generic


@pytest.mark.parametrize(
    "value",
    [True, None, (1.5, 2.5), [3], {"a": (1, 2), "b": [None, "x"]}, np.float32(0.25), "text"],
)
def test_attribute_kinds_round_trip(
    result: RegistrationResult, value: object, tmp_path: Path
) -> None:
    dataset = result.dataset.copy()
    dataset.attrs["extra_attr"] = value
    for suffix in FORMATS:
        loaded = load_result(save_result(RegistrationResult(dataset), tmp_path / f"a{suffix}"))
        assert loaded.dataset.attrs["extra_attr"] == value
        assert type(loaded.dataset.attrs["extra_attr"]) is type(
            value.item() if isinstance(value, np.generic) else value
        )


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**31), 2**31)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(min_size=1, max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=_JSON_VALUES)
@example(value="\x00")  # HDF5 text cannot hold NUL: found by this test once
@example(value=(0, 0.0))  # stored as one float array: the checksum compared 0 with 0.0
def test_any_json_like_attribute_round_trips_through_netcdf(
    result: RegistrationResult, value: object, tmp_path: Path
) -> None:
    dataset = result.dataset.copy()
    dataset.attrs["extra_attr"] = value
    loaded = load_result(save_result(RegistrationResult(dataset), tmp_path / "h.nc"))
    assert loaded.dataset.attrs["extra_attr"] == value


@pytest.mark.parametrize("suffix", [".tif", ".zarr", ".nc", ".hspy"])
def test_save_dispatches_on_extension(
    result: RegistrationResult, suffix: str, tmp_path: Path
) -> None:
    path = result.save(tmp_path / f"out{suffix}")
    assert path.exists()
    if suffix == ".tif":
        image, description = daskreg.read_average_tif(path)
        # float32 on disk: equal to the float32 of the average, bit for bit.
        np.testing.assert_array_equal(image, result.average.values.astype(np.float32))
        assert description["pixel_size"] == list(result.dataset.attrs["pixel_size"])
        assert description["unit"] == "nm"
    elif suffix == ".hspy":
        import hyperspy.api as hs

        signal = hs.load(path)
        np.testing.assert_array_equal(signal.data, result.average.values)
        assert signal.axes_manager["x"].scale == pytest.approx(
            result.dataset.attrs["pixel_size"][1]
        )
    else:
        xr.testing.assert_identical(daskreg.RegistrationResult.load(path).dataset, result.dataset)


def test_average_tif_description_keeps_shifts_and_bad_frames(
    result: RegistrationResult, tmp_path: Path
) -> None:
    _, description = daskreg.read_average_tif(result.save_tif(tmp_path / "avg.tif"))
    shifts = np.array(description["shifts"], dtype=float)
    np.testing.assert_array_equal(shifts, result.shifts.values)
    assert description["bad_frames"] == [2]


def test_hyperspy_signals_carry_the_calibration(result: RegistrationResult, tmp_path: Path) -> None:
    import hyperspy.api as hs

    average = result.average
    signal = result.to_hyperspy()
    np.testing.assert_array_equal(signal.data, average.values)
    for dim in ("y", "x"):
        axis = signal.axes_manager[dim]
        assert axis.scale == pytest.approx(float(average[dim][1] - average[dim][0]))
        assert axis.offset == pytest.approx(float(average[dim][0]))
        assert axis.units == "nm"
    reloaded = hs.load(save_hspy(average, tmp_path / "avg.hspy"))
    assert reloaded.axes_manager["y"].offset == pytest.approx(float(average.y[0]))
    # The registered stack as a lazy signal, read back by open_stack with its pixel size.
    series = lattice_series(7, (72, 64), dose=100, seed=5).to_xarray()
    stack = result.apply(series, average=False)
    lazy = to_signal2d(stack, title="registered")
    assert type(lazy).__name__ == "LazySignal2D"
    assert lazy.axes_manager.navigation_shape == (stack.sizes["frame"],)
    back = daskreg.open_stack(lazy)
    np.testing.assert_allclose(back.values, stack.values)
    assert back.attrs["pixel_size"] == pytest.approx(result.dataset.attrs["pixel_size"])


def test_load_errors_name_the_problem(result: RegistrationResult, tmp_path: Path) -> None:
    with pytest.raises(StackFileNotFoundError, match="no such result"):
        load_result(tmp_path / "missing.zarr")
    result.save_tif(tmp_path / "avg.tif")
    with pytest.raises(FileFormatError, match="only the average"):
        load_result(tmp_path / "avg.tif")
    daskreg.ingest(np.zeros((3, 8, 8), np.uint8), tmp_path / "stack.zarr")
    with pytest.raises(FileFormatError, match="not a daskreg result"):
        load_result(tmp_path / "stack.zarr")
    (tmp_path / "broken.nc").write_bytes(b"not netcdf")
    with pytest.raises(FileFormatError, match="cannot read"):
        load_result(tmp_path / "broken.nc")


def test_save_errors_and_no_partial_output(
    result: RegistrationResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileFormatError, match=r"\.zarr or \.nc"):
        save_result(result, tmp_path / "run.h5")
    (tmp_path / "folder.zarr").mkdir()
    (tmp_path / "folder.zarr" / "precious.txt").write_text("keep")
    with pytest.raises(OutputPathError, match="not a Zarr store"):
        save_result(result, tmp_path / "folder.zarr")
    save_result(result, tmp_path / "run.nc")
    with pytest.raises(OutputPathError, match="already exists"):
        save_result(result, tmp_path / "run.nc", overwrite=False)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_zarr", disk_full)
    with pytest.raises(OSError, match="disk full"):
        save_result(result, tmp_path / "new.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.zarr", "run.nc"]
    assert (tmp_path / "folder.zarr" / "precious.txt").read_text() == "keep"
