"""Outputs under faults (issue 19): one run per output, paths kept apart, SIGTERM as Ctrl-C.

The runs that a batch system or a second user starts are real processes of the entry
point; the rest call :func:`daskreg.cli.main` in this process, where a writer can be made
to fail. Every case checks that the input's bytes are unchanged and that nothing the run
did not finish is left (lock files, staged outputs, scratch folders included).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import daskreg
from daskreg import cli
from daskreg.cli import signals
from daskreg.errors import OutputInUseError, OutputPathError
from daskreg.io import lock
from daskreg.synthetic import lattice_series

CLI = [sys.executable, "-m", "daskreg.cli"]
# The Dask engine on local threads, 24 frames in chunks of 4: 21 pair blocks, seconds.
RUN = ["--engine", "dask", "--scheduler", "threads", "--chunks", "4", "--no-progress"]
N_BLOCKS = 21
# A resumed run loads the very numbers an uninterrupted one computes: equality.
SHIFT_ATOL = 1e-9


def digest(path: Path) -> str:
    """Hash of a file, or of every file of a folder (names and bytes)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        h.update(str(file.relative_to(path.parent)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def listing(folder: Path) -> list[str]:
    """Everything in ``folder``, hidden files (locks, staged outputs) included."""
    return sorted(os.listdir(folder))


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory) -> Path:
    """24 drifting 128^2 frames as a TIFF (1.5 MiB)."""
    series = lattice_series(24, (128, 128), dose=100, seed=19, drift_step=(0.3, -0.2))
    path = tmp_path_factory.mktemp("input") / "in.tif"
    tifffile.imwrite(path, series.stack.astype(np.float32))
    return path


@pytest.fixture(scope="module")
def uninterrupted(stack_file, tmp_path_factory) -> np.ndarray:
    """Shifts of the uninterrupted run (same engine and chunks)."""
    folder = tmp_path_factory.mktemp("whole")
    done = subprocess.run(
        [*CLI, "register", str(stack_file), "-o", "whole.tif", *RUN],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return daskreg.load_result(folder / "whole.result.zarr").shifts.values


@pytest.fixture
def work(stack_file, tmp_path) -> Path:
    """A folder holding a copy of the input, with an empty scratch folder."""
    (tmp_path / "in.tif").write_bytes(stack_file.read_bytes())
    (tmp_path / "scratch").mkdir()
    return tmp_path


def start(folder: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "register", "in.tif", *args, *RUN, "--temp-dir", "scratch"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(found, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found():
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before {what}: {process.communicate()}")
        time.sleep(0.005)
    process.kill()
    pytest.fail(f"no {what} within {timeout} s")


def pair_entries(checkpoint: Path) -> list[str]:
    folder = checkpoint / "pairs"
    if not folder.is_dir():
        return []
    # Entries are folders (zarr.json is the group's own); hidden ones are unfinished.
    return [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]


def test_a_second_run_on_the_same_output_refuses_naming_the_first(work):
    first = start(work, "-o", "avg.tif", "--checkpoint", "run.ckpt.zarr", "--resume")
    wait_for(lambda: pair_entries(work / "run.ckpt.zarr"), first, "a pair block")
    # Held still while the second runs, as a requeued job finds the first one mid-run.
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(
            [*CLI, "register", "in.tif", "-o", "avg.tif", "--checkpoint", "run.ckpt.zarr"]
            + ["--resume", *RUN],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        entries = pair_entries(work / "run.ckpt.zarr")
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == cli.EXIT_BAD_INPUT
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"host {socket.gethostname()}, pid {first.pid}" in lines[0]
    assert "in use by another daskreg run" in lines[0] and "avg.tif" in lines[0]
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    # The second run deleted nothing of the first's: its blocks were all there to finish.
    assert entries and "output" in out
    assert listing(work) == ["avg.result.zarr", "avg.tif", "in.tif", "scratch"]
    assert daskreg.load_result(work / "avg.result.zarr").shifts.shape == (24, 2)


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["TERM", "HUP"]
)
def test_a_signal_during_the_pairs_stops_cleanly_and_resumes(work, uninterrupted, signum, status):
    before = digest(work / "in.tif")
    process = start(work, "-o", "avg.tif")
    checkpoint = work / "avg.checkpoint.zarr"
    wait_for(lambda: pair_entries(checkpoint), process, "a pair block")
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"interrupted by {signal.Signals(signum).name}" in lines[0]
    assert "avg.checkpoint.zarr: run the same command with --resume" in lines[0]
    # Nothing half written, the spilled spectra's scratch folder removed, no lock left.
    assert listing(work) == ["avg.checkpoint.zarr", "in.tif", "scratch"]
    assert listing(work / "scratch") == []
    stored = len(pair_entries(checkpoint))
    assert 0 < stored < N_BLOCKS

    resumed = subprocess.run(
        [*CLI, "register", "in.tif", "-o", "avg.tif", "--resume", *RUN],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{stored} of {N_BLOCKS} pair blocks reused" in resumed.stdout
    shifts = daskreg.load_result(work / "avg.result.zarr").shifts.values
    np.testing.assert_allclose(shifts, uninterrupted, atol=SHIFT_ATOL)
    assert digest(work / "in.tif") == before
    assert listing(work) == ["avg.result.zarr", "avg.tif", "in.tif", "scratch"]


def test_sigterm_while_writing_leaves_no_average_without_its_result(work, uninterrupted):
    process = start(work, "-o", "avg.tif", "--report", "avg.pdf")
    # The average is written first, then the result and the report (seconds of
    # plotting): a SIGTERM as soon as the average appears, staged or not, lands in the
    # write phase.
    wait_for(
        lambda: any(n.startswith((".avg.daskreg-", "avg.tif")) for n in os.listdir(work)),
        process,
        "the average",
    )
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "--resume" in err, err
    assert listing(work) == ["avg.checkpoint.zarr", "in.tif", "scratch"]
    assert listing(work / "scratch") == []

    resumed = subprocess.run(
        [*CLI, "register", "in.tif", "-o", "avg.tif", "--report", "avg.pdf", "--resume", *RUN],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{N_BLOCKS} of {N_BLOCKS} pair blocks reused" in resumed.stdout
    shifts = daskreg.load_result(work / "avg.result.zarr").shifts.values
    np.testing.assert_allclose(shifts, uninterrupted, atol=SHIFT_ATOL)
    assert listing(work) == ["avg.pdf", "avg.result.zarr", "avg.tif", "in.tif", "scratch"]


# -- paths -------------------------------------------------------------------------------


@pytest.fixture
def zarr_input(stack_file, tmp_path, monkeypatch) -> Path:
    """The series as a Zarr store ``in.zarr``, and a folder ``box.zarr`` holding a TIFF."""
    monkeypatch.chdir(tmp_path)
    daskreg.ingest(str(stack_file), tmp_path / "in.zarr")
    (tmp_path / "box.zarr").mkdir()
    (tmp_path / "box.zarr" / "in.tif").write_bytes(stack_file.read_bytes())
    (tmp_path / "link").symlink_to(tmp_path / "in.zarr")
    return tmp_path


PATH_CASES = {
    "average inside the input": (["in.zarr", "-o", "in.zarr/avg.tif"], "lies inside the input"),
    "average inside the input, through a symlink": (
        ["in.zarr", "-o", "link/avg.tif"],
        "lies inside the input",
    ),
    "result is the input, --overwrite": (
        ["in.zarr", "-o", "avg.tif", "--save-result", "in.zarr", "--overwrite"],
        "'in.zarr' is the input",
    ),
    "result holds the input": (
        ["box.zarr/in.tif", "-o", "avg.tif", "--save-result", "box.zarr", "--overwrite"],
        "contains the input",
    ),
    "checkpoint is the result": (
        ["in.zarr", "-o", "avg.tif", "--checkpoint", "avg.result.zarr"],
        "the result 'avg.result.zarr' is the checkpoint",
    ),
    "checkpoint is the stack": (
        ["in.zarr", "-o", "avg.tif", "--checkpoint", "x.zarr", "--save-stack", "x.zarr"],
        "the stack 'x.zarr' is the checkpoint",
    ),
    "checkpoint inside the input": (
        ["in.zarr", "-o", "avg.tif", "--checkpoint", "in.zarr/c.zarr", "--resume"],
        "lies inside the input",
    ),
    "report inside the result": (
        ["in.zarr", "-o", "avg.tif", "--report", "avg.result.zarr/r.pdf"],
        "the result 'avg.result.zarr' contains the report",
    ),
    "temp folder inside the input": (
        ["in.zarr", "-o", "avg.tif", "--temp-dir", "in.zarr"],
        "--temp-dir) 'in.zarr' is or lies inside the input",
    ),
}


@pytest.mark.parametrize("case", PATH_CASES)
def test_outputs_never_touch_the_input_or_each_other(zarr_input, case, capsys):
    args, expected = PATH_CASES[case]
    before = {name: digest(zarr_input / name) for name in ("in.zarr", "box.zarr")}
    files = listing(zarr_input)
    assert cli.main(["register", *args, *RUN]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err, err
    assert "choose" in err or "separate paths" in err, err
    assert {name: digest(zarr_input / name) for name in before} == before
    assert listing(zarr_input) == files


def test_saving_a_result_over_its_source_is_refused(zarr_input):
    before = {name: digest(zarr_input / name) for name in ("in.zarr", "box.zarr")}
    result = daskreg.register("in.zarr", scheduler="synchronous", progress=False)
    tif = daskreg.register("box.zarr/in.tif", scheduler="synchronous", progress=False)
    calls = [
        lambda: result.save("in.zarr"),
        lambda: result.save("link/avg.tif"),
        lambda: daskreg.save_result(result, "in.zarr"),
        lambda: tif.save("box.zarr/in.tif"),
        lambda: tif.save_tif(zarr_input / "box.zarr" / "in.tif"),
        lambda: tif.save("box.zarr"),
    ]
    for call in calls:
        with pytest.raises(OutputPathError, match="registered from"):
            call()
    with pytest.raises(OutputPathError, match="checkpoint 'in.zarr/c.zarr' lies inside"):
        daskreg.register("in.zarr", checkpoint="in.zarr/c.zarr", scheduler="synchronous")
    assert {name: digest(zarr_input / name) for name in before} == before
    # Elsewhere the same calls save.
    assert tif.save("avg.tif").exists() and result.save("r.zarr").exists()


# -- --overwrite and failures --------------------------------------------------------------


@pytest.fixture
def written(work, monkeypatch, capsys) -> dict[str, str]:
    """A first run's outputs in ``work`` (cwd), with their hashes."""
    monkeypatch.chdir(work)
    assert cli.main(["register", "in.tif", "-o", "avg.tif", "--report", "r.pdf", *RUN]) == 0
    capsys.readouterr()
    return {name: digest(work / name) for name in ("avg.tif", "avg.result.zarr", "r.pdf")}


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("failing", ["save_result", "save_report", "rename"])
def test_overwrite_failing_mid_write_restores_the_old_outputs(
    work, written, monkeypatch, capsys, failing
):
    if failing == "rename":
        # The commit itself fails at its second rename (the result): the average already
        # renamed into place is taken back and the old one restored.
        real, failed = os.rename, []

        def rename(src, dst):
            if Path(dst).name == "avg.result.zarr" and not failed:
                failed.append(dst)
                _disk_full()
            real(src, dst)

        monkeypatch.setattr(cli.outputs.os, "rename", rename)
    elif failing == "save_result":
        monkeypatch.setattr(cli.outputs, "save_result", _disk_full)
    else:
        monkeypatch.setattr(daskreg.RegistrationResult, "save_report", _disk_full)
    args = ["register", "in.tif", "-o", "avg.tif", "--report", "r.pdf", "--overwrite", *RUN]
    assert cli.main(args) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert "No space left on device" in err
    monkeypatch.undo()
    assert {name: digest(work / name) for name in written} == written
    # The checkpoint is kept to resume from; nothing else is left.
    assert listing(work) == [*sorted([*written, "avg.checkpoint.zarr", "in.tif", "scratch"])]


def test_an_output_appearing_during_the_run_is_not_replaced(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    real = cli.outputs.save_result

    def save_result(result, path):
        (work / "avg.tif").write_bytes(b"another program")
        return real(result, path)

    monkeypatch.setattr(cli.outputs, "save_result", save_result)
    assert cli.main(["register", "in.tif", "-o", "avg.tif", *RUN]) == cli.EXIT_BAD_INPUT
    assert "appeared while this run was working" in capsys.readouterr().err
    assert (work / "avg.tif").read_bytes() == b"another program"
    # Refused as bad input: the checkpoint this run started is removed with the rest.
    assert listing(work) == ["avg.tif", "in.tif", "scratch"]


# -- locks ---------------------------------------------------------------------------------


def _owner(pid: int, host: str | None = None) -> str:
    me = lock.LockOwner.me()
    started = me.process_started
    if pid != os.getpid():
        import psutil

        started = psutil.Process(pid).create_time() if psutil.pid_exists(pid) else 0.0
    return json.dumps(
        {
            "host": host or me.host,
            "pid": pid,
            "started": "2026-01-01T00:00:00",
            "process_started": started,
        }
    )


def test_a_lock_left_by_a_dead_run_is_taken_over(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.lock_file(work / "avg.tif").write_text(_owner(dead.pid))
    assert cli.main(["register", "in.tif", "-o", "avg.tif", *RUN]) == 0, capsys.readouterr()
    assert listing(work) == ["avg.result.zarr", "avg.tif", "in.tif", "scratch"]


@pytest.mark.parametrize("where", ["this host", "another host"])
def test_a_lock_held_by_a_live_run_is_refused(work, monkeypatch, capsys, where):
    monkeypatch.chdir(work)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = None if where == "this host" else "node-17"
        path = lock.lock_file(work / "avg.checkpoint.zarr")
        path.write_text(_owner(alive.pid, host))
        assert cli.main(["register", "in.tif", "-o", "avg.tif", *RUN]) == cli.EXIT_BAD_INPUT
        err = capsys.readouterr().err
    finally:
        alive.kill()
        alive.wait()
    assert "checkpoint 'avg.checkpoint.zarr' is in use by another daskreg run" in err
    if where == "this host":
        assert f"pid {alive.pid}" in err and f"kill {alive.pid}" in err
    else:
        assert f"host node-17, pid {alive.pid}" in err and f"delete '{path}'" in err
    # Refused before anything was written; the other run's lock is left to it, and the
    # locks this run took on the other outputs are released.
    assert listing(work) == [path.name, "in.tif", "scratch"]


def test_a_lock_is_reentrant_and_released(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with lock.hold({"a": Path("x.tif")}), lock.hold({"b": Path("x.tif")}):
        assert lock.lock_file("x.tif").exists()
    assert not lock.lock_file("x.tif").exists()
    with pytest.raises(OutputInUseError), lock.hold({"a": Path("y.tif")}):
        lock.lock_file("z.tif").write_text(_owner(os.getppid()))
        with lock.hold({"b": Path("z.tif")}):
            pass
    lock.lock_file("z.tif").unlink()
    assert not lock.lock_file("y.tif").exists()


def test_signals_are_held_while_outputs_are_committed():
    before = signal.getsignal(signal.SIGTERM)
    with signals.stopping_on_signals():
        with pytest.raises(signals.Interrupted) as stopped:
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                held = True
        assert held and stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_signals_ignored_on_entry_stay_ignored():
    # nohup daskreg register ...: closing the terminal must not stop the run.
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals.stopping_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is signals._handler
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


@pytest.mark.parametrize("delay", [0.04, 0.07, 0.1, 0.13])
def test_a_store_interrupted_mid_write_is_discarded_whole(tmp_path, delay):
    # Ctrl-C/SIGTERM stops the wait for to_zarr, not Zarr's own I/O loop: without waiting
    # for it, its late writes recreated the deleted store (3 of 6 such trials).
    import xarray as xr

    transaction = cli.outputs.Transaction({"result": tmp_path / "r.zarr"}, overwrite=False)
    dataset = xr.Dataset({f"v{k}": (("a", "b"), np.ones((64, 4096))) for k in range(40)})
    encoding = {name: {"chunks": (8, 512)} for name in dataset}

    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, delay)
    try:
        with pytest.raises(KeyboardInterrupt), transaction:
            dataset.to_zarr(transaction.staged("result"), zarr_format=3, encoding=encoding)
            time.sleep(10)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    time.sleep(0.5)
    assert listing(tmp_path) == []
