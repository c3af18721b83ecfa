"""A new user's first contact (issue 18): the engine fits the data, a plain script works,
progress only where someone watches, and the first compile says what it is doing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

import daskreg
from daskreg import progress
from daskreg.errors import DaskregError
from daskreg.parallel import cluster, engine
from daskreg.synthetic import lattice_series

from .conftest import DATA, requires_data, rms_error

ROOT = Path(__file__).resolve().parents[1]
# The README's two lines, as a plain script: no `if __name__ == "__main__":` guard.
PLAIN_SCRIPT = """\
import numpy as np
import daskreg
result = daskreg.register(daskreg.open_stack({path!r}))
np.savetxt("shifts.csv", result.shifts.values, delimiter=",")
print("registered", result.shifts.shape)
"""


def run_script(folder: Path, source: str, timeout: float = 300) -> subprocess.CompletedProcess:
    script = folder / "script.py"
    script.write_text(source)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture(scope="module")
def series():
    return lattice_series(8, (96, 96), dose=100, seed=21)


# -- the engine ------------------------------------------------------------------------------
def test_small_file_stack_runs_in_memory(series, tmp_path, monkeypatch):
    """A stack from a file is a dask array; when it fits it runs in this process."""
    monkeypatch.setattr(engine, "register_dask", lambda *a, **k: pytest.fail("used Dask"))
    monkeypatch.setattr(cluster, "local_cluster", lambda *a: pytest.fail("started a cluster"))
    tifffile.imwrite(tmp_path / "s.tif", series.stack.astype(np.float32))
    stack = daskreg.open_stack(tmp_path / "s.tif")
    assert isinstance(stack.data, da.Array)
    result = daskreg.register(stack, progress=False)
    # Frames 96^2 at dose 100: the numpy engine's usual accuracy (0.1 px, see
    # test_register) shows that the right frames were registered.
    assert rms_error(result.shifts.values, series.shifts - series.shifts.mean(0)) < 0.1


@pytest.mark.parametrize("lazy", [False, True])
def test_auto_engine_rule(series, lazy, monkeypatch):
    stack = daskreg.stack.as_stack(series.stack)
    if lazy:
        stack = stack.chunk({"frame": 4})
    assert cluster.choose_engine(stack, "auto", {}) == "numpy"
    for option in ("n_workers", "scheduler", "checkpoint", "save_stack", "chunks"):
        assert cluster.choose_engine(stack, "auto", {option: 1}) == "dask"
    assert cluster.choose_engine(stack, "numpy", {}) == "numpy"
    assert cluster.choose_engine(stack, "dask", {}) == "dask"
    # Too large for a quarter of the memory available: out of core, on Dask.
    need = cluster.in_memory_bytes(stack.shape, stack.dtype.itemsize, loaded=not lazy)
    monkeypatch.setattr(cluster.psutil, "virtual_memory", lambda: _Memory(3 * need))
    assert cluster.choose_engine(stack, "auto", {}) == "dask"
    monkeypatch.setattr(cluster.psutil, "virtual_memory", lambda: _Memory(5 * need))
    assert cluster.choose_engine(stack, "auto", {}) == "numpy"


class _Memory:
    def __init__(self, available: int):
        self.available = available


def test_too_large_for_memory_goes_to_dask(series, monkeypatch):
    calls = []
    real = engine.register_dask
    monkeypatch.setattr(engine, "register_dask", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(cluster, "IN_MEMORY_FRACTION", 0.0)
    # The threads scheduler: no cluster started, the Dask engine still chosen.
    daskreg.register(series.stack, scheduler="threads", progress=False)
    assert calls == [1]
    calls.clear()
    # Without options too: auto picks Dask (on threads here, instead of a LocalCluster).
    real_open = cluster.open_client
    monkeypatch.setattr(
        cluster, "open_client", lambda *a, **k: real_open(None, "threads", progress=False)
    )
    daskreg.register(series.stack, progress=False)
    assert calls == [1]


def test_plain_script_without_guard_registers_a_tif(series, tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", series.stack.astype(np.float32))
    proc = run_script(tmp_path, PLAIN_SCRIPT.format(path="s.tif"))
    assert proc.returncode == 0, proc.stderr
    assert "registered (8, 2)" in proc.stdout
    assert "bootstrapping" not in proc.stderr and "Nanny" not in proc.stderr
    shifts = np.loadtxt(tmp_path / "shifts.csv", delimiter=",")
    assert rms_error(shifts, series.shifts - series.shifts.mean(0)) < 0.1


@requires_data
@pytest.mark.realdata
def test_plain_script_on_the_shared_sto_tif(tmp_path):
    source = DATA / "derived_STO_HAADF_drift_20x512.tif"
    if not source.exists():
        pytest.skip(f"{source.name} not in ../shared/data")
    proc = run_script(tmp_path, PLAIN_SCRIPT.format(path=str(source)))
    assert proc.returncode == 0, proc.stderr
    assert "Nanny" not in proc.stderr
    truth = np.loadtxt(source.with_name(source.stem + "_shifts.csv"), delimiter=",", skiprows=1)
    # As test_register's test of the same file: 0.05 px RMS (measured ~0.03).
    assert rms_error(np.loadtxt(tmp_path / "shifts.csv", delimiter=","), truth[:, 1:]) <= 0.05


def test_unguarded_script_needing_a_cluster_says_what_to_add(tmp_path):
    source = """\
    import daskreg
    from daskreg.synthetic import lattice_series
    print("top of script")
    daskreg.register(lattice_series(6, (64, 64), seed=1).stack, n_workers=1, progress=False)
    """
    proc = run_script(tmp_path, textwrap.dedent(source), timeout=120)
    assert proc.returncode != 0
    assert 'if __name__ == "__main__":' in proc.stderr and "line 4 of script.py" in proc.stderr
    # Refused before any worker process re-ran the script.
    assert proc.stdout.count("top of script") == 1
    assert "Nanny" not in proc.stderr


def test_guard_is_recognised(tmp_path):
    source = """\
    from daskreg.parallel import cluster

    def where():
        return cluster._unguarded_script_line()

    print("top", where())
    if __name__ == "__main__":
        print("guarded", where())
    """
    proc = run_script(tmp_path, textwrap.dedent(source), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["top 6", "guarded None"]


def test_a_package_main_needs_no_guard(tmp_path):
    """``python -m pkg`` runs ``pkg/__main__.py``, which spawned workers never re-run
    (multiprocessing skips it): ``python -m daskreg.cli register ... --workers 2`` was
    refused as an unguarded script."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "from daskreg.parallel import cluster\nprint('line', cluster._unguarded_script_line())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pkg"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "line None"


def test_register_in_a_bootstrapping_worker_is_refused(series, monkeypatch):
    process = cluster.multiprocessing.current_process()
    monkeypatch.setattr(process, "_inheriting", True, raising=False)
    with pytest.raises(DaskregError, match='if __name__ == "__main__":'):
        daskreg.register(series.stack, progress=False)


# -- progress ---------------------------------------------------------------------------------
class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_only_where_watched():
    assert progress.enabled(None, _Stream(tty=True))
    assert not progress.enabled(None, _Stream(tty=False))
    assert progress.enabled(True, _Stream(tty=False))
    assert not progress.enabled(False, _Stream(tty=True))


def test_numpy_engine_counts_pairs_and_frames(series, monkeypatch):
    stream = _Stream(tty=False)
    monkeypatch.setattr(sys, "stderr", stream)
    daskreg.register(series.stack, progress=True)
    text = stream.getvalue()
    # 8 frames: 28 pairs measured, 8 frames averaged, each bar ending at its total.
    assert "pairs" in text and "28/28" in text
    assert "frames" in text and "8/8" in text
    stream = _Stream(tty=False)
    monkeypatch.setattr(sys, "stderr", stream)
    daskreg.register(series.stack)  # default: stderr is no terminal, so nothing
    assert "pairs" not in stream.getvalue()


def test_cli_writes_no_bar_into_a_log(series, tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", series.stack.astype(np.float32))
    proc = subprocess.run(
        [sys.executable, "-m", "daskreg.cli", "register", "s.tif", "-o", "avg.tif"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "daskreg: pairs" not in proc.stderr and "\r" not in proc.stderr


def test_cli_follows_the_engine_rule(series, tmp_path, monkeypatch):
    """`daskreg register` on a small tif runs in this process, without a checkpoint
    (which would send it to Dask); --resume still takes the Dask engine."""
    from daskreg import cli

    tifffile.imwrite(tmp_path / "s.tif", series.stack.astype(np.float32))
    real = engine.register_dask
    monkeypatch.setattr(engine, "register_dask", lambda *a, **k: pytest.fail("used Dask"))
    assert cli.main(["register", str(tmp_path / "s.tif"), "-o", str(tmp_path / "a.tif")]) == 0
    calls = []
    monkeypatch.setattr(engine, "register_dask", lambda *a, **k: calls.append(1) or real(*a, **k))
    argv = ["register", str(tmp_path / "s.tif"), "-o", str(tmp_path / "b.tif"), "--resume"]
    assert cli.main([*argv, "--scheduler", "threads", "--no-progress"]) == 0
    assert calls == [1]


def test_text_progress_in_a_notebook_without_ipywidgets(monkeypatch, capsys):
    distributed = pytest.importorskip("distributed")
    from distributed.diagnostics import progressbar

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets fails
    monkeypatch.setattr(progressbar, "is_kernel", lambda: True)
    with distributed.Client(processes=False, n_workers=1, dashboard_address=":0") as client:
        (value,) = cluster.compute(
            [da.ones(10, chunks=5).sum()], client, progress=True, retries=0
        )
    assert value == 10


def test_compile_note_once_when_cold(monkeypatch):
    monkeypatch.setattr(progress, "_announced", False)
    monkeypatch.setattr(progress, "kernels_cold", lambda: True)
    stream = io.StringIO()
    assert progress.announce_compile(stream)
    assert not progress.announce_compile(stream)
    assert stream.getvalue() == progress.COMPILE_NOTE + "\n"
    monkeypatch.setattr(progress, "_announced", False)
    monkeypatch.setattr(progress, "kernels_cold", lambda: False)
    assert not progress.announce_compile(stream)


def test_cold_cache_is_detected(series, tmp_path):
    """An empty numba cache reads as cold; this checkout's cache, once used, as warm."""
    daskreg.register(series.stack[:4], progress=False)
    code = "from daskreg import progress; print(progress.kernels_cold())"
    cold = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path)},
    )
    assert cold.stdout.strip() == "True", cold.stderr
    assert not progress.kernels_cold()
