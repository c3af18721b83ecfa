"""Where the graph runs: a real scheduler and workers, lost workers, clients, batch systems."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import daskreg
from daskreg.errors import ParameterError
from daskreg.parallel import cluster, hpc_cluster
from daskreg.synthetic import lattice_series

from .conftest import assert_same_result

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessCluster:
    """``dask scheduler`` and ``dask worker`` subprocesses on 127.0.0.1 (no nannies)."""

    def __init__(self, n_workers: int = 2):
        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        dask_cli = [str(BIN / "dask")]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.scheduler = subprocess.Popen(
            [*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            **quiet,
        )
        self.workers = [
            subprocess.Popen(
                [
                    *dask_cli,
                    "worker",
                    self.address,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--memory-limit",
                    "2GiB",
                    "--host",
                    "127.0.0.1",
                ],
                **quiet,
            )
            for _ in range(n_workers)
        ]
        with distributed.Client(self.address, timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=60)

    def close(self):
        # Test processes hold nothing worth a graceful shutdown.
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture
def process_cluster():
    if shutil.which("dask", path=str(BIN)) is None:
        pytest.skip("the dask command line is not installed")
    started = ProcessCluster()
    yield started
    started.close()


def test_register_through_a_scheduler_address(process_cluster, series):
    expected = daskreg.register(series.stack)
    got = daskreg.register(
        series.stack, scheduler=process_cluster.address, chunks=4, progress=False
    )
    assert_same_result(got, expected)


def test_survives_a_killed_worker(process_cluster):
    # Slow drift: all 60 frames overlap, so no frame is dropped and every pair counts.
    stack = lattice_series(60, (128, 128), dose=100, seed=8, drift_step=(0.3, -0.2)).stack
    expected = daskreg.register(stack, scheduler="synchronous", chunks=3, progress=False)
    outcome = {}

    def run():
        outcome["result"] = daskreg.register(
            stack, scheduler=process_cluster.address, chunks=3, progress=False
        )

    with distributed.Client(process_cluster.address) as watcher:
        thread = threading.Thread(target=run)
        thread.start()
        # Kill a worker once the pair stage is under way (some blocks done, most not).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = watcher.run_on_scheduler(
                lambda dask_scheduler: sum(
                    ts.state == "memory"
                    and "measure_block" in ts.key[0 if isinstance(ts.key, tuple) else slice(None)]
                    for ts in dask_scheduler.tasks.values()
                )
            )
            if done >= 3:
                break
            time.sleep(0.02)
        victim = process_cluster.workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        thread.join(timeout=300)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert done >= 3, "the registration finished before a worker could be killed"
    assert_same_result(outcome["result"], expected)


def test_reuses_the_running_client(client, series, monkeypatch, capsys):
    monkeypatch.setattr(cluster, "local_cluster", lambda *a: pytest.fail("new cluster"))
    got = daskreg.register(series.stack, engine="dask", chunks=6, progress=True)
    assert_same_result(got, daskreg.register(series.stack))
    printed = capsys.readouterr().out
    assert "Dask dashboard at" in printed and client.dashboard_link in printed


def test_starts_and_closes_a_local_cluster(series, monkeypatch):
    started = []
    real = cluster.local_cluster
    monkeypatch.setattr(
        cluster, "local_cluster", lambda *a: started.append(real(*a)) or started[-1]
    )
    got = daskreg.register(
        series.stack, engine="dask", n_workers=1, memory_limit="1GiB", progress=False
    )
    assert_same_result(got, daskreg.register(series.stack))
    (local,) = started
    assert local.status.name == "closed"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scheduler": "synchronous", "n_workers": 2}, "cannot resize"),
        ({"engine": "numpy", "chunks": 4}, "engine='dask'"),
        ({"engine": "cuda"}, "engine='cuda'"),
        ({"scheduler": "synchronous", "chunks": 0}, "chunks=0"),
    ],
)
def test_bad_execution_options(series, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        daskreg.register(series.stack, progress=False, **kwargs)


def test_jobqueue_cluster_from_the_example_config():
    pytest.importorskip("dask_jobqueue")
    config = ROOT / "workflows" / "jobqueue.yaml"
    with hpc_cluster("slurm", config=config, queue="debug") as slurm:
        script = slurm.job_script()
    assert "#SBATCH -p debug" in script  # keyword beats config
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH -J daskreg-worker" in script
    assert "--memory-limit 4.00GiB" in script
    with hpc_cluster("pbs", config=config) as pbs:
        assert "#PBS -q workq" in pbs.job_script()
    with pytest.raises(ParameterError, match="kind='lsf'"):
        hpc_cluster("lsf", config=config)


@pytest.mark.slow
def test_mpi_workflow(tmp_path):
    pytest.importorskip("dask_mpi")
    mpirun = shutil.which("mpirun", path=str(BIN)) or shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("no mpirun")
    out = tmp_path / "out"
    subprocess.run(
        [
            mpirun,
            "-n",
            "4",
            sys.executable,
            str(ROOT / "workflows" / "mpi_register.py"),
            "synthetic",
            str(out),
            "--synthetic",
            "10",
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    assert (out / "result.nc").exists()
