"""The batch job scripts (``workflows/slurm_job.sbatch``, ``pbs_job.sh``) end to end.

Outside SLURM and PBS: the same scripts, with the workers started in the job's shell.

Each script starts a scheduler with ``--scheduler-file`` and the workers as SLURM would
(here in its own shell: no ``srun``), runs ``daskreg register --resume`` with a
checkpoint, and at the walltime (SLURM's ``--signal=B:TERM``: SIGTERM to the batch
shell only) stops with exit 143 and requeues itself; the requeued job resumes. The
requeue command is replaced by ``touch`` so the test can see it was asked for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

import daskreg
from daskreg.errors import RegistrationWarning
from daskreg.synthetic import lattice_series

from .test_scheduler_faults import ENV, REPO, _first_block

distributed = pytest.importorskip("distributed")

SCRIPTS = [REPO / "workflows" / "slurm_job.sbatch", REPO / "workflows" / "pbs_job.sh"]


@pytest.fixture
def jobs():
    """The job scripts started; their process groups (scheduler, workers) are killed."""
    started: list[subprocess.Popen] = []
    yield started
    for job in started:
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _job(jobs: list, script: Path, stack: Path, cwd: Path, *options: str) -> subprocess.Popen:
    env = {
        **ENV,
        # The venv's `dask` and `daskreg` commands, as an activated environment has them.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), ENV.get("PATH", "")]),
        "DASKREG_WORKERS": "2",
        "DASKREG_WORKER_MEMORY": "2GiB",
        "DASKREG_HOST": "127.0.0.1",
        "DASKREG_REQUEUE": "touch requeued-job",
    }
    for batch in ("SLURM_JOB_ID", "PBS_JOBID", "IN", "OUT"):
        env.pop(batch, None)
    job = subprocess.Popen(
        ["bash", str(script), str(stack), "out", *options],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    jobs.append(job)
    return job


def _stack(path: Path, n_frames: int) -> np.ndarray:
    frames = lattice_series(n_frames, (128, 128), dose=100, seed=3).stack
    tifffile.imwrite(path, frames)
    return frames


def _shifts(out: Path) -> np.ndarray:
    return daskreg.load_result(out / "result.zarr").shifts.values


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_job_registers_and_cleans_up(script, tmp_path, jobs):
    frames = _stack(tmp_path / "stack.tif", 16)
    job = _job(jobs, script, tmp_path / "stack.tif", tmp_path, "--chunks", "4")
    _, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    out = tmp_path / "out"
    assert (out / "average.tif").is_file()
    assert not (out / "checkpoint.zarr").exists()
    assert not list(out.glob("scheduler-*.json"))
    assert not (tmp_path / "requeued-job").exists()
    expected = daskreg.register(frames, engine="numpy", progress=False)
    np.testing.assert_allclose(_shifts(out), expected.shifts.values, atol=1e-5)


# The PBS script differs from the SLURM one in its header and launcher only: its
# walltime run is in the slow suite.
@pytest.mark.parametrize(
    "script",
    [SCRIPTS[0], pytest.param(SCRIPTS[1], marks=pytest.mark.slow)],
    ids=lambda p: p.name,
)
def test_walltime_stops_requeues_and_resumes(script, tmp_path, jobs):
    frames = _stack(tmp_path / "stack.tif", 64)
    # 64 frames in chunks of 2: 528 pair blocks, many seconds on 2 workers.
    job = _job(jobs, script, tmp_path / "stack.tif", tmp_path, "--chunks", "2")
    _first_block(tmp_path / "out" / "checkpoint.zarr", job, seconds=240)
    # The workers run with the malloc settings the script gives them.
    with distributed.Client(scheduler_file=str(tmp_path / "out" / "scheduler-local.json")) as c:
        settings = c.run(lambda: {k: v for k, v in os.environ.items() if k.startswith("MALLOC")})
    assert len(settings) == 2
    for env in settings.values():
        assert env["MALLOC_MMAP_THRESHOLD_"] == env["MALLOC_TRIM_THRESHOLD_"] == str(2**25)
    # SLURM's --signal=B:TERM: the batch shell only.
    os.kill(job.pid, signal.SIGTERM)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 143, err
    assert "--resume" in err, err
    assert (tmp_path / "requeued-job").exists()
    assert (tmp_path / "out" / "checkpoint.zarr").is_dir()
    assert not (tmp_path / "out" / "average.tif").exists()

    start = time.monotonic()
    again = _job(jobs, script, tmp_path / "stack.tif", tmp_path, "--chunks", "2")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert not (tmp_path / "out" / "checkpoint.zarr").exists()
    # The uninterrupted result (this drifting series leaves frames out: with a warning).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RegistrationWarning)
        expected = daskreg.register(frames, engine="numpy", progress=False)
    np.testing.assert_allclose(
        _shifts(tmp_path / "out"), expected.shifts.values, atol=1e-5, equal_nan=True
    )
    assert time.monotonic() - start < 300
