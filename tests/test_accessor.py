"""The xarray accessors ``.reg``: same results as the functional API, clear errors."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import daskreg
from daskreg.accessor import RegDataArrayAccessor, RegDatasetAccessor
from daskreg.errors import DaskregError, ParameterError
from daskreg.synthetic import lattice_series

# Cheap enough to run per test, registered in well under a second each.
PARAMS = {"mask": "hann", "n": 4, "window_radius": 4}
# Results compared without the run's wall-clock timings.
VOLATILE_ATTRS = ("timings",)


def series(seed: int, lattice: str = "perovskite"):
    # 128^2 at dose 2000: the registration error is ~0.01 px (64^2 frames overestimate
    # long drifts by 2-3 %), so the truth check below can be tight.
    return lattice_series(6, (128, 128), lattice=lattice, dose=2000.0, seed=seed)


def without_timings(dataset: xr.Dataset) -> xr.Dataset:
    out = dataset.copy()
    out.attrs = {k: v for k, v in dataset.attrs.items() if k not in VOLATILE_ATTRS}
    return out


def test_reg_is_free_in_xarray_and_registered_by_daskreg() -> None:
    # In a fresh interpreter: xarray alone has no attribute "reg" to shadow.
    code = "import xarray as xr; print(hasattr(xr.DataArray, 'reg'), hasattr(xr.Dataset, 'reg'))"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert plain.stdout.split() == ["False", "False"], plain.stderr
    assert xr.DataArray.reg is RegDataArrayAccessor
    assert xr.Dataset.reg is RegDatasetAccessor


@pytest.mark.parametrize(("seed", "lattice"), [(0, "perovskite"), (4, "hexagonal")])
def test_register_equals_the_functional_api_and_the_truth(seed: int, lattice: str) -> None:
    synthetic = series(seed, lattice)
    stack = synthetic.to_xarray()
    by_accessor = stack.reg.register(**PARAMS)
    by_function = daskreg.register(stack, **PARAMS)
    xr.testing.assert_identical(
        without_timings(by_accessor.dataset), without_timings(by_function.dataset)
    )
    # Against the truth (mean-removed, as daskreg reports shifts): 0.05 px against a
    # measured error of ~0.01 px on these series.
    truth = synthetic.shifts - synthetic.shifts.mean(axis=0)
    np.testing.assert_allclose(by_accessor.shifts.values, truth, atol=0.05)
    # The stack itself is left as it was.
    np.testing.assert_array_equal(stack.values, synthetic.stack)


def test_apply_equals_the_result_and_apply_shifts(tmp_path: Path) -> None:
    synthetic = series(1)
    stack = synthetic.to_xarray()
    result = daskreg.register(stack, **PARAMS)
    # A second channel recorded with the same frames (an ABF-like inverted copy).
    other = 2.0 - stack
    expected = result.apply(other)
    independent = daskreg.apply_shifts(
        other.values,
        result.shifts.values,
        bad_frames=np.flatnonzero(result.bad_frames.values),
    )
    np.testing.assert_allclose(expected.values, independent.values, rtol=1e-12)
    # The result as the object, its dataset, its saved files and the files opened by xarray.
    zarr_path = result.save(tmp_path / "run.zarr")
    nc_path = result.save(tmp_path / "run.nc")
    sources = [result, result.dataset, zarr_path, nc_path, str(nc_path)]
    with xr.open_zarr(zarr_path) as opened_zarr, xr.open_dataset(nc_path) as opened_nc:
        for source in [*sources, opened_zarr.load(), opened_nc.load()]:
            xr.testing.assert_identical(other.reg.apply(source), expected)
    # The registered stack itself gives the result's average.
    np.testing.assert_allclose(stack.reg.apply(result), result.average, rtol=1e-12, atol=1e-12)
    aligned = other.reg.apply(result, average=False, crop=False)
    assert aligned.sizes == {"frame": 6, "y": 128, "x": 128}


def test_report_of_a_result_dataset(tmp_path: Path) -> None:
    result = daskreg.register(series(2).to_xarray(), **PARAMS)
    saved = result.save(tmp_path / "run.zarr")
    with xr.open_zarr(saved) as opened:
        loaded = opened.load()
    written = loaded.reg.report(tmp_path / "via_accessor.pdf")
    # As xarray opened it, decoded into the result daskreg saved (without the file's
    # checksums and OME-Zarr attributes).
    xr.testing.assert_identical(loaded.reg.result.dataset, daskreg.load_result(saved).dataset)
    reference = result.save_report(tmp_path / "via_result.pdf")
    assert written == tmp_path / "via_accessor.pdf"

    def pages(path: Path) -> int:
        return path.read_bytes().count(b"/Type /Page\n") or path.read_bytes().count(b"/Type /Page")

    assert written.read_bytes().startswith(b"%PDF")
    assert pages(written) == pages(reference) >= 7
    # A decoded result's dataset is wrapped as it is, not copied.
    assert result.dataset.reg.result.dataset is result.dataset


def test_not_a_result_is_refused_with_the_fix(tmp_path: Path) -> None:
    stack = series(3).to_xarray()
    with pytest.raises(ParameterError, match=r"got a int; pass the RegistrationResult"):
        stack.reg.apply(42)
    stranger = xr.Dataset({"image": (("y", "x"), np.zeros((4, 4)))})
    with pytest.raises(ParameterError, match=r"lacks \['shifts'.*\['image'\].*load_result"):
        stranger.reg.report(tmp_path / "r.pdf")
    assert not (tmp_path / "r.pdf").exists()
    with pytest.raises(ParameterError, match="not a daskreg result"):
        _ = stranger.reg.result


def test_bad_register_parameters_are_refused_as_by_the_function() -> None:
    stack = series(3).to_xarray()
    with pytest.raises(DaskregError, match="threshold") as by_accessor:
        stack.reg.register(threshhold=2.0)
    with pytest.raises(DaskregError) as by_function:
        daskreg.register(stack, threshhold=2.0)
    assert str(by_accessor.value) == str(by_function.value)
    # Two frames cannot be registered: the same error, naming the value and the fix.
    with pytest.raises(DaskregError, match="2"):
        stack.isel(frame=slice(0, 2)).reg.register(**PARAMS)


def test_methods_show_the_options_they_pass_on() -> None:
    # Written once, in RegistrationResult; help() and completion list them all.
    forwarded = inspect.signature(daskreg.RegistrationResult.apply, eval_str=True)
    shown = inspect.signature(xr.DataArray([0.0]).reg.apply)
    assert list(shown.parameters)[0] == "result"
    assert list(shown.parameters.values())[1:] == list(forwarded.parameters.values())[2:]
    report = inspect.signature(xr.Dataset().reg.report)
    assert list(report.parameters) == ["path", "png_dir", "stack"]
    result = daskreg.register(series(5).to_xarray(), **PARAMS)
    with pytest.raises(ParameterError, match="'averge' \\(did you mean 'average'\\?\\)"):
        xr.DataArray(series(5).stack).reg.apply(result, averge=False)
