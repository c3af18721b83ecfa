"""A scheduler lost mid-run, or never reached: one line on the terminal, never tracebacks.

Real processes: ``dask scheduler`` and ``dask worker`` started as a batch job starts them
(``--scheduler-file``), and ``daskreg register`` as the user runs it, in its own process
with its stderr captured. The scheduler is killed (SIGKILL: a node lost, a job ended)
once the first pair block is in the checkpoint, so the kill lands in the pair phase.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tifffile

import daskreg
from daskreg.progress import COMPILE_NOTE
from daskreg.synthetic import lattice_series

from .test_execution_options import _dask, _stop, _wait_for

distributed = pytest.importorskip("distributed")

REPO = Path(daskreg.__file__).resolve().parents[1]
# distributed's client connect timeout (30 s by default), short for the tests.
CONNECT_SECONDS = 3


# Every process imports this checkout of daskreg (the workers unpickle its tasks).
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO),
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": f"{CONNECT_SECONDS}s",
}


def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "daskreg.cli", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _said(err: str) -> list[str]:
    """The lines of stderr but the note that the kernels compile (a fresh cache's)."""
    return [line for line in err.splitlines() if line.strip() and line != COMPILE_NOTE]


def _first_block(checkpoint: Path, run: subprocess.Popen, seconds: float = 120) -> None:
    pairs = checkpoint / "pairs"
    deadline = time.monotonic() + seconds
    while not (pairs.is_dir() and any(p.is_dir() for p in pairs.iterdir())):
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "no pair block saved"
        time.sleep(0.05)


@pytest.fixture
def long_stack(tmp_path: Path) -> Path:
    # 64 frames in chunks of 2: 528 pair blocks, many seconds of pairs on 2 workers, so
    # the kill lands in the pair phase after the first block.
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, lattice_series(64, (128, 128), dose=100, seed=3).stack)
    return path


@pytest.mark.parametrize(
    "debug", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["plain", "debug"]
)
def test_scheduler_killed_in_the_pair_phase(long_stack: Path, tmp_path: Path, debug: bool):
    file = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": ENV}
    scheduler = subprocess.Popen(
        _dask("scheduler", "--scheduler-file", str(file), "--host", "127.0.0.1",
              "--port", "0", "--no-dashboard"),
        **quiet,
    )  # fmt: skip
    started = [scheduler]
    try:
        _wait_for(file, scheduler)
        started.append(
            subprocess.Popen(
                _dask("worker", "--scheduler-file", str(file), "--nworkers", "2",
                      "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"),
                **quiet,
            )
        )  # fmt: skip
        run = _cli(
            "register", str(long_stack), "-o", "avg.tif", "--scheduler-file", str(file),
            "--chunks", "2", "--no-progress", *(["--debug"] if debug else []),
            cwd=tmp_path,
        )  # fmt: skip
        checkpoint = tmp_path / "avg.checkpoint.zarr"
        _first_block(checkpoint, run)
        scheduler.kill()
        _, err = run.communicate(timeout=90)
    finally:
        _stop(started)
    assert run.returncode == 1, err
    lines = _said(err)
    if debug:
        # Everything: the traceback and distributed's own records.
        assert "Traceback (most recent call last)" in err
        assert "ClusterLostError" in err and "distributed" in err
        return
    assert len(lines) == 1, err
    (line,) = lines
    assert line.startswith("daskreg register: failed: ClusterLostError: lost the connection")
    assert "--resume to continue" in line and str(checkpoint.name) in line
    assert "Traceback" not in err and "distributed." not in err
    assert not (tmp_path / "avg.tif").exists()


def test_unreachable_scheduler(long_stack: Path, tmp_path: Path):
    before = sorted(p.name for p in tmp_path.iterdir())
    start = time.monotonic()
    run = _cli(
        "register", str(long_stack), "-o", "avg.tif", "--scheduler", "tcp://127.0.0.1:1",
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    _, err = run.communicate(timeout=120)
    took = time.monotonic() - start
    assert run.returncode == 2, err
    lines = _said(err)
    assert len(lines) == 1, err
    assert "could not connect to the scheduler at tcp://127.0.0.1:1" in lines[0]
    assert "--resume" not in err
    # The connect timeout plus the CLI's start and the stack's opening (a few seconds,
    # more on a loaded machine), not forever.
    assert took < CONNECT_SECONDS + 40, took
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no checkpoint, no lock
