"""``workflows/mpi_register.py`` under a real ``mpiexec`` (dask-mpi): rank 0 the
scheduler, rank 1 the client, the others workers; the result equals the in-memory
engine's. MPICH comes from PyPI (the ``mpich`` wheel) in the test extra."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr

import daskreg
from daskreg.synthetic import lattice_series

from .test_scheduler_faults import ENV, REPO

pytest.importorskip("dask_mpi")
pytest.importorskip("mpi4py")

BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_mpi_job_registers(tmp_path):
    frames = lattice_series(16, (128, 128), dose=100, seed=3).stack
    tifffile.imwrite(tmp_path / "stack.tif", frames)
    env = {**ENV, "PATH": os.pathsep.join([str(BIN), ENV.get("PATH", "")])}
    done = subprocess.run(
        [MPIEXEC, "-n", "4", sys.executable, str(REPO / "workflows" / "mpi_register.py"),
         "stack.tif", "out", "--chunks", "4"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with xr.open_dataset(tmp_path / "out" / "result.nc") as result:
        shifts = result["shifts"].values
    expected = daskreg.register(frames, engine="numpy", progress=False)
    np.testing.assert_allclose(shifts, expected.shifts.values, atol=1e-5)
