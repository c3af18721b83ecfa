"""The ``daskreg`` command line, run as users run it: a subprocess of the real entry point."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import daskreg
from daskreg import cli
from daskreg.synthetic import lattice_series

from .conftest import DATA, requires_data

CLI = [sys.executable, "-m", "daskreg.cli"]
# The Dask engine on local threads: the real graph without starting a cluster (seconds).
FAST = ["--scheduler", "threads", "--no-progress"]
BLANK = 5


def run(folder: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *map(str, args)], cwd=folder, capture_output=True, text=True, timeout=300
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_stack(path: Path, stack: np.ndarray, pixel_size: float = 0.0391) -> Path:
    tifffile.imwrite(
        path,
        stack,
        imagej=True,
        resolution=(1 / pixel_size, 1 / pixel_size),
        metadata={"unit": "nm", "axes": "TYX" if stack.ndim == 3 else "YX"},
    )
    return path


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A small calibrated tif stack with one blank frame, registered by the CLI."""
    folder = tmp_path_factory.mktemp("cli")
    stack = lattice_series(8, (96, 96), dose=100, seed=11).stack
    stack[BLANK] = 0.0
    source = write_stack(folder / "stack.tif", stack)
    before = digest(source)
    proc = run(
        folder, "register", "stack.tif", "-o", "avg.tif", "--save-stack", "reg.zarr",
        "--window-radius", "4", *FAST,
    )  # fmt: skip
    return folder, proc, before


def test_register_writes_the_average_the_result_and_a_summary(registered):
    folder, proc, before = registered
    assert proc.returncode == 0, proc.stderr
    image, description = daskreg.read_average_tif(folder / "avg.tif")
    result = daskreg.load_result(folder / "avg.result.zarr")
    np.testing.assert_array_equal(image, result.average.values.astype(np.float32))
    assert description["pixel_size"] == pytest.approx([0.0391, 0.0391])
    assert result.coverage.shape == (96, 96)
    assert bool(result.bad_frames[BLANK])
    summary = proc.stdout
    assert "7 of 8 used" in summary
    assert re.search(rf"bad frames\s+{BLANK} \(", summary)
    assert "avg.result.zarr" in summary and "reg.zarr" in summary
    assert len(summary.splitlines()) <= 24
    # The left-out frame is reported as one warning line, nothing else on stderr.
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"{BLANK}" in warnings[0]
    assert "Traceback" not in proc.stderr
    assert digest(folder / "stack.tif") == before


def test_register_saves_the_registered_stack(registered):
    folder, proc, _ = registered
    assert proc.returncode == 0, proc.stderr
    stack = daskreg.open_stack(folder / "reg.zarr")
    assert stack.sizes["frame"] == 8
    assert np.isnan(stack[BLANK].values).all()
    assert np.isfinite(stack[0].values).all()


@pytest.mark.realdata
@requires_data
def test_register_on_real_data_reproduces_the_api(tmp_path: Path):
    source = DATA / "derived_STO_HAADF_drift_20x512.tif"
    proc = run(
        tmp_path, "register", source, "-o", "avg.tif", "--mask", "hann", "--n", "4",
        "--save-result", "run.nc", *FAST,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    from_cli = daskreg.load_result(tmp_path / "run.nc")
    from_api = daskreg.register(daskreg.open_stack(source), mask="hann", n=4, engine="numpy")
    np.testing.assert_allclose(from_cli.shifts, from_api.shifts, rtol=0, atol=1e-6)
    # The series was made by shifting frame 0 by the tabulated (dy, dx): compare the
    # shifts with it up to the common offset; 0.1 px is far above the ~0.02 px errors.
    truth = np.loadtxt(DATA / "derived_STO_HAADF_drift_20x512_shifts.csv", delimiter=",",
                       skiprows=1)[:, 1:]  # fmt: skip
    error = from_cli.shifts.values - (truth - truth.mean(axis=0))
    assert np.abs(error).max() < 0.1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avg.tif", "run.nc"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: folder / "missing.tif", "no such file"),
        (lambda folder: (folder / "notes.txt").write_text("x") and folder / "notes.txt",
         "unsupported file extension"),
        (lambda folder: write_stack(folder / "image.tif", np.ones((32, 32), np.float32)),
         "at least 3 frames"),
        (lambda folder: tifffile.imwrite(folder / "c.tif", np.ones((4, 16, 16), np.complex64),
                                         photometric="minisblack")
         or folder / "c.tif", "not real-valued"),
    ],
    ids=["missing", "extension", "single-image", "complex"],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path: Path, make, message: str):
    source = make(tmp_path)
    listing = sorted(p.name for p in tmp_path.iterdir())
    proc = run(tmp_path, "register", source, "-o", "avg.tif", "--report", "r.pdf", *FAST)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert lines[0].startswith("daskreg register: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


@pytest.mark.parametrize(
    "args",
    [["register", "stack.tif"], ["register", "stack.tif", "-o", "a.tif", "--frames", "x"], []],
    ids=["no-output", "bad-frames-range", "no-command"],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str]):
    proc = run(tmp_path, *args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_existing_outputs_are_kept_without_overwrite(registered):
    folder, proc, _ = registered
    assert proc.returncode == 0, proc.stderr
    before = digest(folder / "avg.tif")
    again = run(folder, "register", "stack.tif", "-o", "avg.tif", *FAST)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    assert digest(folder / "avg.tif") == before


def test_config_file_with_flags_overriding_it(registered, tmp_path: Path):
    folder, _, _ = registered
    (tmp_path / "params.toml").write_text('mask = "hann"\nn = 3.0\nwindow_radius = 4\n')
    proc = run(
        tmp_path, "register", folder / "stack.tif", "-o", "avg.tif", "--config", "params.toml",
        "--n", "5", "--engine", "numpy", "--no-result", "--bad-frames", str(BLANK),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    params = daskreg.read_average_tif(tmp_path / "avg.tif")[1]["params"]
    assert (params["mask"], params["n"], params["window_radius"]) == ("hann", 5.0, 4)
    assert params["bad_frames"] == [BLANK]
    (tmp_path / "bad.toml").write_text("nn = 3\n")
    proc = run(tmp_path, "register", folder / "stack.tif", "-o", "b.tif", "--config", "bad.toml")
    assert proc.returncode == 2 and "unknown parameter(s) 'nn' (did you mean 'n'?)" in proc.stderr


def test_ingest_then_info(registered, tmp_path: Path):
    folder, _, _ = registered
    proc = run(tmp_path, "ingest", folder / "stack.tif", "stack.zarr", "--chunks", "3")
    assert proc.returncode == 0, proc.stderr
    store = daskreg.open_stack(tmp_path / "stack.zarr")
    np.testing.assert_array_equal(store.values, tifffile.imread(folder / "stack.tif"))
    assert zarr.open_group(tmp_path / "stack.zarr", mode="r")["stack"].chunks == (3, 96, 96)
    assert store.attrs["pixel_size"] == pytest.approx((0.0391, 0.0391))
    info = run(tmp_path, "info", "stack.zarr", "--band", "2")
    assert info.returncode == 0, info.stderr
    assert "8 x 96 x 96" in info.stdout and "0.0391" in info.stdout
    assert "13 pairs" in info.stdout and "MiB" in info.stdout


def test_apply_reproduces_the_average_and_report(registered, tmp_path: Path):
    folder, proc, _ = registered
    assert proc.returncode == 0, proc.stderr
    applied = run(
        tmp_path, "apply", folder / "avg.result.zarr", folder / "stack.tif", "-o", "bf.tif",
        "--save-stack", "bf.zarr",
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    image, description = daskreg.read_average_tif(tmp_path / "bf.tif")
    expected, _ = daskreg.read_average_tif(folder / "avg.tif")
    np.testing.assert_allclose(image, expected, rtol=1e-6)
    assert description["applied_to"].endswith("stack.tif")
    assert daskreg.open_stack(tmp_path / "bf.zarr").sizes["frame"] == 7
    report = run(tmp_path, "report", folder / "avg.result.zarr", "-o", "run.pdf")
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "run.pdf").read_bytes()[:4] == b"%PDF"


def test_demo_runs_without_data_and_reports_the_error(tmp_path: Path):
    proc = run(tmp_path, "demo", "--out", "demo", "--n-frames", "8", "--size", "128")
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"shift error vs ground truth: RMS ([0-9.]+) px", proc.stdout)
    assert found and float(found.group(1)) < 0.1, proc.stdout
    # 8 x 128^2 fits in memory: registered in this process, no cluster (issue 18).
    assert "dashboard" not in proc.stdout
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    expected = {"demo_series.zarr", "demo_average.tif", "demo_average.result.zarr"}
    assert expected | {"demo_report.pdf"} == names


def test_unexpected_failure_exits_1_and_leaves_no_partial_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    source = write_stack(tmp_path / "s.tif", lattice_series(6, (64, 64), seed=2).stack)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr("xarray.Dataset.to_zarr", disk_full)
    args = ["register", str(source), "-o", str(tmp_path / "a.tif"), "--engine", "numpy"]
    assert cli.main([*args, "--window-radius", "4"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--debug" in err
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    assert cli.main([*args, "--window-radius", "4", "--overwrite", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
