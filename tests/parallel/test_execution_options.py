"""Execution options: checked before anything starts; scheduler files; no workers; dashboard."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tifffile

import daskreg
from daskreg import cli
from daskreg.errors import DaskregError, ParameterError
from daskreg.io import open_stack
from daskreg.parallel import cluster
from daskreg.parallel.execution import Execution
from daskreg.result import load_result
from daskreg.synthetic import lattice_series

from .conftest import assert_same_result

distributed = pytest.importorskip("distributed")

BIN = Path(sys.executable).parent


@pytest.fixture
def stack_tif(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, lattice_series(8, (64, 64), dose=100, seed=3).stack)
    return path


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--memory-limit", "foo"], ["--memory-limit foo", "4GiB"]),
        (["--memory-limit", "0"], ["--memory-limit 0", "4GiB"]),
        (["--workers", "0"], ["--workers 0", ">= 1"]),
        (["--workers", "-1"], ["--workers -1", ">= 1"]),
        (["--scheduler", "bogus"], ["--scheduler bogus", "tcp://"]),
        (["--temp-dir", "/nonexistent"], ["--temp-dir /nonexistent", "create it"]),
        (["--scheduler-file", "/nonexistent.json"], ["/nonexistent.json", "dask scheduler"]),
    ],
)
def test_bad_options_refused_before_anything_starts(stack_tif, capsys, flags, words):
    folder = stack_tif.parent
    before = sorted(p.name for p in folder.iterdir())
    # An explicit checkpoint: the Dask engine, which would create it, is chosen.
    code = cli.main(
        ["register", str(stack_tif), "-o", str(folder / "avg.tif"), "--engine", "dask",
         "--checkpoint", str(folder / "ck.zarr"), "--no-progress", *flags]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err
    # Nothing written: no checkpoint, no lock, no output.
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"scheduler": "sync"}, {"scheduler": "synchronous"}),
        ({"scheduler": "single-threaded"}, {"scheduler": "synchronous"}),
        ({"scheduler": "tcp://10.0.0.1:8786"}, {"scheduler": "tcp://10.0.0.1:8786"}),
        ({"n_workers": 3, "memory_limit": "1.5GiB"}, {"n_workers": 3}),
        ({"memory_limit": 2**30}, {"memory_limit": 2**30}),
        ({"memory_limit": "auto"}, {"memory_limit": "auto"}),
    ],
)
def test_good_options_pass(options, expected):
    execution = Execution.from_options(**options)
    for name, value in expected.items():
        assert getattr(execution, name) == value


@pytest.mark.parametrize(
    "options",
    [{"n_workers": True}, {"n_workers": 2.0}, {"memory_limit": -5}, {"scheduler": 8786}],
)
def test_bad_options_in_the_api(options):
    with pytest.raises(ParameterError):
        Execution.from_options(**options)


def _dask(*args: str) -> list[str]:
    if shutil.which("dask", path=str(BIN)) is None:
        pytest.skip("the dask command line is not installed")
    return [str(BIN / "dask"), *args]


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() or path.stat().st_size == 0:
        assert process.poll() is None, "the scheduler exited"
        assert time.monotonic() < deadline, "the scheduler wrote no file in 60 s"
        time.sleep(0.1)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_register_through_a_scheduler_file(stack_tif, tmp_path):
    file = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    started = [
        subprocess.Popen(
            _dask("scheduler", "--scheduler-file", str(file), "--host", "127.0.0.1",
                  "--port", "0", "--no-dashboard"),
            **quiet,
        )
    ]  # fmt: skip
    try:
        _wait_for(file, started[0])
        started.append(
            subprocess.Popen(
                _dask("worker", "--scheduler-file", str(file), "--nworkers", "1",
                      "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"),
                **quiet,
            )
        )  # fmt: skip
        code = cli.main(
            ["register", str(stack_tif), "-o", str(tmp_path / "avg.tif"),
             "--scheduler-file", str(file), "--no-progress"]
        )  # fmt: skip
        assert code == 0
        with distributed.Client(scheduler_file=str(file), timeout=30) as client:
            # The tasks ran on that scheduler (a fresh one: nothing else ran there).
            ran = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
            assert ran > 100, ran
    finally:
        _stop(started)
    got = load_result(tmp_path / "avg.result.zarr")
    expected = daskreg.register(open_stack(stack_tif), engine="numpy", progress=False)
    assert_same_result(got, expected)


def test_a_scheduler_without_workers_times_out(tmp_path, monkeypatch, series):
    monkeypatch.setattr(cluster, "WORKER_WAIT_SECONDS", 2.0)
    file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        _dask("scheduler", "--scheduler-file", str(file), "--host", "127.0.0.1",
              "--port", "0", "--no-dashboard"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(file, scheduler)
        start = time.monotonic()
        with pytest.raises(DaskregError, match=r"has no workers after 2 s; start workers"):
            daskreg.register(series.stack, scheduler_file=file, progress=False)
        # Connecting and giving up: the 2 s wait plus a second or two, not forever.
        assert time.monotonic() - start < 20
    finally:
        _stop([scheduler])


def test_local_cluster_dashboard_on_this_machine_only():
    with cluster.local_cluster(1, "500MiB") as local:
        sockets = local.scheduler.http_server._sockets.values()
        hosts = {s.getsockname()[0] for s in sockets}
        assert hosts == {"127.0.0.1"}, hosts
        assert "127.0.0.1" in local.dashboard_link
