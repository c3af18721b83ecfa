"""Checkpoints: pair blocks saved as they finish; an interrupted run resumes from them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from dask.utils import key_split

import daskreg
import daskreg.stack
from daskreg import cli
from daskreg.autoparams import resolve_stack
from daskreg.errors import CheckpointError, ParameterError
from daskreg.kernels.peak_result import PeakResult
from daskreg.parallel import checkpoint, engine, pairs
from daskreg.params import RegistrationParams
from daskreg.synthetic import lattice_series

from .conftest import assert_same_result

# 17 frames in chunks of 3: 6 chunks, 21 block pairs.
RUN = {"scheduler": "synchronous", "chunks": 3, "progress": False}
N_BLOCKS = 21
# Loaded blocks hold the very numbers computed before: only round-off-free equality fits.
SHIFT_ATOL = 1e-9


@pytest.fixture(scope="module")
def expected(series):
    """The uninterrupted run."""
    return daskreg.register(series.stack, **RUN)


@pytest.fixture
def measured(monkeypatch):
    """Counts the pair blocks measured (on the local scheduler, in this process);
    ``measured.stop_after = k`` presses Ctrl-C when the k+1-th block is to be measured."""
    real = pairs._measure_block

    def measure(*args):
        if measure.stop_after is not None and len(measure.calls) >= measure.stop_after:
            raise KeyboardInterrupt
        measure.calls.append(args[2:4])
        return real(*args)

    measure.calls = []
    measure.stop_after = None
    monkeypatch.setattr(pairs, "_measure_block", measure)
    return measure


def _entries(path: Path, kind: str = "pairs") -> list[str]:
    # Hidden folders are temporaries of blocks being written.
    return sorted(p.name for p in (path / kind).iterdir() if p.is_dir() and p.name[0] != ".")


def test_resume_computes_only_the_missing_blocks(series, expected, measured, tmp_path):
    path = tmp_path / "run.checkpoint.zarr"
    measured.stop_after = 8
    with pytest.raises(KeyboardInterrupt):
        daskreg.register(series.stack, checkpoint=path, **RUN)
    stored = _entries(path)
    assert 0 < len(stored) <= 8
    # What a job killed mid-write leaves: a hidden temporary, never read back.
    (path / "pairs" / f".{stored[0]}.partial-0badc0de").mkdir()
    (path / "pairs" / ".0-5-5.partial-0badc0de").mkdir()

    measured.calls.clear()
    measured.stop_after = None
    got = daskreg.register(series.stack, checkpoint=path, resume=True, **RUN)
    assert got.dataset.attrs["pair_blocks_reused"] == len(stored)
    assert got.dataset.attrs["pair_blocks"] == N_BLOCKS
    assert len(measured.calls) == N_BLOCKS - len(stored)
    assert_same_result(got, expected, shift_atol=SHIFT_ATOL)
    assert not path.exists()


def test_resume_on_a_cluster(series, expected, client, tmp_path):
    # A run that lost its cluster: its checkpoint holds some blocks, workers do the rest.
    path = tmp_path / "run.zarr"
    daskreg.register(series.stack, checkpoint=path, keep_checkpoint=True, **RUN)
    lost = _entries(path)[::3]
    for key in lost:
        shutil.rmtree(path / "pairs" / key)
    run = {**RUN, "scheduler": None, "client": client}
    got = daskreg.register(series.stack, checkpoint=path, resume=True, keep_checkpoint=True, **run)
    assert got.dataset.attrs["pair_blocks_reused"] == N_BLOCKS - len(lost)
    assert len(_entries(path)) == N_BLOCKS
    assert_same_result(got, expected, shift_atol=SHIFT_ATOL)


def test_a_kept_checkpoint_is_analysed_again_without_measuring(
    series, expected, measured, tmp_path, capsys
):
    path = tmp_path / "kept.zarr"
    first = daskreg.register(series.stack, checkpoint=path, keep_checkpoint=True, **RUN)
    assert "pair_blocks_reused" not in first.dataset.attrs
    assert len(_entries(path)) == N_BLOCKS and len(_entries(path, "frames")) == 6
    # Nothing is read or transformed again: no frame, no spectrum, no pair.
    params = RegistrationParams()
    stack = engine.prepare_stack(series.stack, params, chunks=RUN["chunks"])
    token = checkpoint.identity(daskreg.stack.as_stack(series.stack))
    saved = checkpoint.Checkpoint.open(path, checkpoint.describe(token, stack, params), resume=True)
    # The graph measures with the parameters chosen from the frames, as register does.
    graph = engine.build_graph(stack, resolve_stack(stack, params).params, checkpoint=saved)
    assert {key_split(k) for k in dict(graph.__dask_graph__())} == {"load", "analyse"}
    measured.calls.clear()
    run = {**RUN, "progress": True}
    got = daskreg.register(series.stack, checkpoint=path, resume=True, threshold=3.0, **run)
    assert measured.calls == []
    assert f"resumed: {N_BLOCKS} of {N_BLOCKS} pair blocks reused" in capsys.readouterr().out
    np.testing.assert_array_equal(
        got.dataset["shift_matrix"].values, expected.dataset["shift_matrix"].values
    )
    assert got.params.threshold == 3.0


def test_resume_without_a_checkpoint_yet_starts_one(series, expected, tmp_path):
    path = tmp_path / "new.zarr"
    got = daskreg.register(series.stack, checkpoint=path, resume=True, **RUN)
    assert got.dataset.attrs["pair_blocks_reused"] == 0
    assert_same_result(got, expected, shift_atol=SHIFT_ATOL)
    assert not path.exists()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"n": 3.0}, "params.n: None then, 3.0 now"),
        ({"band": 4}, "params.band"),
        ({"chunks": 4}, "frame_chunks"),
        ({"stack": "other"}, "input"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused(series, measured, tmp_path, change, named):
    path = tmp_path / "run.zarr"
    measured.stop_after = 0
    with pytest.raises(KeyboardInterrupt):
        daskreg.register(series.stack, checkpoint=path, **RUN)
    stack = series.stack if "stack" not in change else series.stack[::-1].copy()
    run = {**RUN, **{k: v for k, v in change.items() if k != "stack"}}
    with pytest.raises(CheckpointError, match="another input") as refused:
        daskreg.register(stack, checkpoint=path, resume=True, **run)
    assert named in str(refused.value) and "Delete it" in str(refused.value)
    assert measured.calls == []


def test_an_existing_checkpoint_needs_resume(series, measured, tmp_path):
    path = tmp_path / "run.zarr"
    measured.stop_after = 0
    with pytest.raises(KeyboardInterrupt):
        daskreg.register(series.stack, checkpoint=path, **RUN)
    with pytest.raises(CheckpointError, match="resume=True"):
        daskreg.register(series.stack, checkpoint=path, **RUN)
    assert path.is_dir()


@pytest.mark.parametrize("resume", [True, False])
def test_other_folders_are_not_taken_for_checkpoints(series, tmp_path, resume):
    (tmp_path / "data.zarr").mkdir()
    with pytest.raises(CheckpointError, match="not a daskreg checkpoint"):
        daskreg.register(series.stack, checkpoint=tmp_path / "data.zarr", resume=resume, **RUN)
    assert os.listdir(tmp_path / "data.zarr") == []


def test_resume_needs_a_checkpoint_path(series):
    with pytest.raises(ParameterError, match="checkpoint="):
        daskreg.register(series.stack, resume=True, **RUN)


def test_storing_a_block_twice_keeps_the_first(tmp_path):
    # A task retried after its worker died stores the same block again.
    block = pairs.PairBlock(
        np.array([0, 1]),
        np.array([2, 2]),
        PeakResult(np.ones((2, 2)), np.array([True, False]), np.array([3.0, 4.0])),
    )
    folder = tmp_path / "pairs"
    folder.mkdir()
    for _ in range(2):
        assert checkpoint._store(block, str(folder), "0-0-1", "pairs") is block
    loaded = checkpoint._load(str(folder), "0-0-1", "pairs")
    np.testing.assert_array_equal(loaded.found.shifts, block.found.shifts)
    np.testing.assert_array_equal(loaded.found.ok, block.found.ok)
    assert os.listdir(folder) == ["0-0-1"]


def _wait_for_a_block(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if (path / "pairs").is_dir() and _entries(path):
            return
        time.sleep(0.02)
    pytest.fail("no pair block was saved before the run ended")


def test_cli_interrupted_with_ctrl_c_then_resumed(tmp_path, capsys, monkeypatch):
    # 24 frames in chunks of 4: 21 block pairs, a few seconds on two cores.
    series = lattice_series(24, (96, 96), dose=100, seed=8, drift_step=(0.3, -0.2))
    daskreg.ingest(series.to_xarray(), tmp_path / "in.zarr")
    args = ["register", "in.zarr", "--chunks", "4", "--scheduler", "threads", "--no-progress"]
    process = subprocess.Popen(
        [sys.executable, "-m", "daskreg.cli", *args, "-o", "out.tif"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_a_block(tmp_path / "out.checkpoint.zarr", process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == cli.EXIT_INTERRUPTED
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert "interrupted" in line and "--resume" in line and "out.checkpoint.zarr" in line
    assert sorted(os.listdir(tmp_path)) == ["in.zarr", "out.checkpoint.zarr"]
    stored = len(_entries(tmp_path / "out.checkpoint.zarr"))

    monkeypatch.chdir(tmp_path)
    assert cli.main([*args, "-o", "out.tif", "--resume"]) == cli.EXIT_OK
    resumed = capsys.readouterr().out
    assert cli.main([*args, "-o", "whole.tif"]) == cli.EXIT_OK
    assert f"resumed      {stored} of 21 pair blocks reused" in resumed
    assert 0 < stored < 21
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["in.zarr", "out.tif", "out.result.zarr", "whole.tif", "whole.result.zarr"]
    )
    got = daskreg.load_result(tmp_path / "out.result.zarr")
    whole = daskreg.load_result(tmp_path / "whole.result.zarr")
    assert_same_result(got, whole, shift_atol=SHIFT_ATOL)


def test_cli_interrupted_while_writing_leaves_no_output(series, tmp_path, monkeypatch, capsys):
    daskreg.ingest(series.to_xarray(), tmp_path / "in.zarr")
    monkeypatch.chdir(tmp_path)
    args = ["register", "in.zarr", "-o", "out.tif", "--chunks", "3", "--scheduler", "threads"]

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(cli.outputs, "save_result", ctrl_c)
        assert cli.main([*args, "--no-progress"]) == cli.EXIT_INTERRUPTED
    # The average was written before the result: it is removed with the rest.
    assert sorted(os.listdir(tmp_path)) == ["in.zarr", "out.checkpoint.zarr"]
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*args, "--no-progress", "--resume"]) == cli.EXIT_OK
    assert f"{N_BLOCKS} of {N_BLOCKS} pair blocks reused" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["in.zarr", "out.result.zarr", "out.tif"]
