"""The ``daskreg`` command line, run as users run it: a subprocess of the real entry point."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr

import daskreg
from daskreg import cli
from daskreg.cli import commands
from daskreg.errors import RegistrationWarning
from daskreg.parallel import engine
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


# Keywords of the Python API that `register` has a flag for (each flag's dest is its keyword).
_REGISTER = cli.build_parser().parse_args(["register", "in.tif", "-o", "a.tif"]).command_parser
_FLAG_KEYWORDS = re.compile(
    r"\b({})=".format("|".join(a.dest for a in _REGISTER._actions if a.option_strings))
)


def python_keywords(text: str) -> list[str]:
    """The ``keyword=`` spellings in ``text`` that the command line names by a flag."""
    return _FLAG_KEYWORDS.findall(text)


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
    # Every output that exists is named, not only the first.
    assert "2 outputs already exist (average 'avg.tif', result 'avg.result.zarr')" in again.stderr
    assert "--overwrite" in again.stderr
    assert digest(folder / "avg.tif") == before


def test_overwrite_replaces_and_the_summary_says_which(tmp_path: Path, monkeypatch, capsys):
    write_stack(tmp_path / "s.tif", lattice_series(6, (64, 64), seed=3).stack)
    monkeypatch.chdir(tmp_path)
    args = ["register", "s.tif", "-o", "a.tif", "--engine", "numpy", "--window-radius", "4"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert "(replaced)" not in first
    assert cli.main([*args, "--report", "r.pdf", "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"average\s+a\.tif \(replaced\)", out), out
    assert re.search(r"result\s+a\.result\.zarr \(replaced\)", out), out
    assert re.search(r"report\s+r\.pdf$", out, re.MULTILINE), out


def test_python_keywords_in_hints_become_flags():
    def words(message: str, command: str = "register") -> str:
        args = [command, "in.tif", *(["-o", "a.tif"] if command == "register" else ["s.zarr"])]
        return cli.words.cli_words(message, cli.build_parser().parse_args(args).command_parser)

    # The library's own hints (api, io, validate, checkpoint), as a command line shows them.
    hints = {
        "for frames stored on the last axis open it with "
        "daskreg.open_stack(source, frame_axis=-1)": "for frames stored on the last axis pass "
        "--frame-axis -1",
        "pass frame_axis=-1 (or frame_axis=0 if the 64 frames are really on axis 0)":
            "pass --frame-axis -1 (or --frame-axis 0 if the 64 frames are really on axis 0)",
        "shape (2,); leave frame_axis=None": "shape (2,); leave out --frame-axis",
        "takes frames on axis 0, so open such an array first with "
        "daskreg.open_stack(array, frame_axis=-1)":
            "takes frames on axis 0, so pass --frame-axis -1",
        "pass resume=True (daskreg register --resume) to reuse its pair blocks":
            "pass --resume to reuse its pair blocks",
        "Pass signal=<index or title> to choose another.":
            "Pass --signal <index or title> to choose another.",
        "Check that the right file and signal were read (signal=...);":
            "Check that the right file and signal were read (--signal N|TITLE);",
        "signal='HAADF' matches none": "--signal HAADF matches none",
        "pass detect_bad_frames=True to exclude them, or bad_frames=[...]":
            "leave out --keep-bad-frames to exclude them, or --bad-frames I,J,...",
        "(11x11, window_radius=5); pass a smaller window_radius (at most 3)":
            "(11x11, --window-radius 5); pass a smaller --window-radius (at most 3)",
        "threshold=None (chosen from the data)": "no --threshold (chosen from the data)",
        "frames=(2, 40) is not within (0, 6)": "--frames 2:40 is not within (0, 6)",
        "keep crop=False": "keep --no-crop",
        # No flag for these: as the library says.
        "e.g. np.nan_to_num(stack, nan=0.0)": "e.g. np.nan_to_num(stack, nan=0.0)",
        "pass client=... or n_workers=2": "pass client=... or --workers 2",
    }  # fmt: skip
    for message, expected in hints.items():
        assert words(message) == expected
    # Only the flags of the command that ran: ingest has no --band.
    assert words("band=None", "ingest") == "band=None"
    assert words("pass frame_axis=-1", "ingest") == "pass --frame-axis -1"


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
    # The README's Quick start run again: a fresh folder beside the first, which stays.
    before = digest(tmp_path / "demo" / "demo_average.tif")
    small = ["demo", "--out", "demo", "--n-frames", "8", "--size", "128", *FAST]
    again = run(tmp_path, *small)
    assert again.returncode == 0, again.stderr
    assert "demo-2 (demo holds an earlier demo; --overwrite replaces it)" in again.stdout
    assert {p.name for p in (tmp_path / "demo-2").iterdir()} == names
    assert digest(tmp_path / "demo" / "demo_average.tif") == before
    replaced = run(tmp_path, *small, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert re.search(r"average\s+demo/demo_average\.tif \(replaced\)", replaced.stdout)
    assert not (tmp_path / "demo-3").exists()


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


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert not python_keywords(lines[0]), lines[0]
    return lines[0]


def test_existing_checkpoint_hint_names_resume(tmp_path: Path, monkeypatch, capsys):
    write_stack(tmp_path / "s.tif", lattice_series(6, (64, 64), seed=4).stack)
    monkeypatch.chdir(tmp_path)
    args = ["register", "s.tif", "--window-radius", "4", *FAST]
    assert cli.main([*args, "-o", "a.tif", "--keep-checkpoint"]) == 0
    capsys.readouterr()
    assert cli.main([*args, "-o", "b.tif", "--checkpoint", "a.checkpoint.zarr"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "left by an earlier run; pass --resume to reuse its pair blocks" in line


def _hyperstack(path: Path) -> list:
    """An ImageJ hyperstack (frame, channel, y, x): two channels drifting differently."""
    channels = [
        lattice_series(8, (96, 96), dose=100, seed=seed, drift_step=step)
        for seed, step in ((21, (0.6, -0.4)), (22, (-0.5, 0.5)))
    ]
    tifffile.imwrite(
        path, np.stack([c.stack for c in channels], axis=1), imagej=True,
        metadata={"axes": "TCYX"},
    )  # fmt: skip
    return channels


def test_signal_picks_one_channel_of_a_hyperstack(tmp_path: Path, monkeypatch, capsys):
    channels = _hyperstack(tmp_path / "h.tif")
    monkeypatch.chdir(tmp_path)
    args = ["register", "h.tif", "--engine", "numpy", "--window-radius", "4"]
    assert cli.main([*args, "-o", "a.tif"]) == 2
    assert "pick one with --signal N (0 to 1)" in _one_line_error(capsys.readouterr().err)
    assert cli.main([*args, "-o", "a.tif", "--signal", "2"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "--signal 2 is not a series" in line and "from 0 to 1" in line
    assert cli.main([*args, "-o", "a.tif", "--signal", "1"]) == 0, capsys.readouterr().err
    from_cli = daskreg.load_result(tmp_path / "a.result.zarr")
    # Channel 1, not channel 0: the same shifts as the API on channel 1's frames, and its
    # drift (the two channels drift apart by several pixels).
    expected = daskreg.register(channels[1].stack, window_radius=4, engine="numpy")
    np.testing.assert_allclose(from_cli.shifts, expected.shifts, rtol=0, atol=1e-6)
    other = channels[0].shifts - channels[0].shifts.mean(axis=0)
    assert np.abs(from_cli.shifts.values - other).max() > 1


def test_signal_picks_one_series_of_a_4d_store(tmp_path: Path, monkeypatch, capsys):
    series = np.stack([lattice_series(5, (64, 64), seed=s).stack for s in (1, 2)])
    daskreg.ingest(xr.DataArray(series, dims=("series", "frame", "y", "x")), tmp_path / "4d.zarr")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["info", "4d.zarr"]) == 2
    assert "--signal N (0 to 1)" in _one_line_error(capsys.readouterr().err)
    assert cli.main(["ingest", "4d.zarr", "one.zarr", "--signal", "1"]) == 0
    np.testing.assert_array_equal(daskreg.open_stack(tmp_path / "one.zarr").values, series[1])
    assert cli.main(["info", "4d.zarr", "--signal", "1"]) == 0
    assert "5 x 64 x 64 (frame, y, x)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (lambda s: s[:1], "registration needs at least 3 frames; got 1"),
        (lambda s: s[:2], "registration needs at least 3 frames; got 2"),
        (lambda s: np.concatenate([np.full_like(s[:5], np.nan), s[5:]]),
         "cannot be registered: 1 of frames 0:6 can be used (unusable: 0 (contains NaN"),
        (lambda s: np.concatenate([s[:1], np.ones_like(s[1:])]),
         "cannot be registered: 1 of frames 0:6 can be used (unusable: 1 (constant frame"),
    ],
    ids=["single-image", "two-frames", "nan-frames", "constant-frames"],
)  # fmt: skip
def test_info_says_why_a_file_cannot_be_registered(
    tmp_path: Path, monkeypatch, capsys, frames, message
):
    stack = frames(lattice_series(6, (64, 64), seed=5).stack)
    write_stack(tmp_path / "s.tif", stack)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["info", "s.tif"]) == 2
    captured = capsys.readouterr()
    assert message in _one_line_error(captured.err)
    # What the file holds is still described.
    assert f"{len(stack)} x 64 x 64" in captured.out


def test_info_lists_the_frames_register_leaves_out(tmp_path: Path, monkeypatch, capsys):
    stack = lattice_series(6, (64, 64), seed=5).stack
    stack[2] = np.nan
    write_stack(tmp_path / "s.tif", stack)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["info", "s.tif"]) == 0
    assert "1 of 6 unusable, left out by register: 2 (contains NaN" in capsys.readouterr().out
    assert cli.main(["info", "s.tif", "--keep-bad-frames"]) == 2
    assert "leave out --keep-bad-frames" in _one_line_error(capsys.readouterr().err)
    assert cli.main(["info", "s.tif", "--no-scan"]) == 0
    assert "not read" in capsys.readouterr().out


def test_register_keeps_a_stores_chunks_and_says_so(tmp_path: Path, monkeypatch, capsys):
    write_stack(tmp_path / "s.tif", lattice_series(24, (64, 64), seed=5).stack)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ingest", "s.tif", "s.zarr", "--chunks", "8"]) == 0
    capsys.readouterr()
    # The chunks of the graph the engine really computes, not only what is printed.
    used = []
    build_graph = engine.build_graph
    monkeypatch.setattr(
        engine, "build_graph", lambda one, *a, **k: used.append(one.data.chunks[0]) or
        build_graph(one, *a, **k),
    )  # fmt: skip
    args = ["register", "s.zarr", "--window-radius", "4", *FAST]
    assert cli.main([*args, "-o", "a.tif"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert used == [(8, 8, 8)]
    assert re.search(r"chunks\s+\(8, 64, 64\): 3 chunk", out), out
    assert "dask: 3 chunk(s) of 8 frames, 6 pair block(s)" in out, out
    # --chunks overrides the store's; fewer pair blocks than workers is warned about.
    monkeypatch.setattr(commands, "CPU_COUNT", 4)
    # A small stack, for speed: it is warned about as a large one would be.
    monkeypatch.setattr(commands, "_IDLE_WARNING_PIXELS", 0)
    with warnings.catch_warnings():
        # Shown by the command line as users see it, not raised by the test settings.
        warnings.simplefilter("always", RegistrationWarning)
        assert cli.main([*args, "-o", "b.tif", "--chunks", "12"]) == 0
    assert used[-1] == (12, 12)
    captured = capsys.readouterr()
    assert "dask: 2 chunk(s) of 12 frames, 3 pair block(s) on 4 worker(s)" in captured.out
    # 11 frames per chunk: (11, 11, 2), 6 blocks; 12 gives 3.
    assert (
        "warning: 3 pair block(s) for 4 workers: some workers idle while the pairs are "
        "measured; --chunks 11 gives each a block"
    ) in captured.err


def test_resume_hint_only_for_a_checkpoint_with_blocks(tmp_path: Path):
    """An empty checkpoint (a run stopped before its first block) is not worth resuming:
    the hint would send the user round the same failure (issue 19)."""
    import argparse

    from daskreg.cli.run import _resume_hint

    checkpoint = tmp_path / "avg.checkpoint.zarr"
    args = argparse.Namespace(checkpoint=checkpoint)
    assert _resume_hint(args) == ""
    (checkpoint / "pairs" / ".0-1.tmp").mkdir(parents=True)
    assert _resume_hint(args) == ""  # a block still being written
    (checkpoint / "pairs" / "0-1").mkdir()
    assert "--resume" in _resume_hint(args)
