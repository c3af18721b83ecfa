"""Every notebook in workflows/ runs headless, top to bottom, within its time budget."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from daskreg import read_average_tif

from .conftest import DATA

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel", reason="the notebooks run on an ipykernel 'python3' kernel")

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
NOTEBOOKS = sorted(WORKFLOWS.glob("*.ipynb"))
# The budget per notebook on a 2-core machine; also the per-cell timeout, so that a
# hung cell fails the test instead of the whole run.
BUDGET_S = 120.0


def _run(notebook: Path, workdir: Path) -> nbformat.NotebookNode:
    """Execute ``notebook`` in ``workdir`` on this interpreter's kernel; return it run."""
    nb = nbformat.read(notebook, as_version=4)
    # The kernel must be this interpreter (the venv under test), not another python3
    # found first on the kernel search path.
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=int(BUDGET_S),
        resources={"metadata": {"path": str(workdir)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    assert elapsed < BUDGET_S, f"{notebook.name} took {elapsed:.0f} s (budget {BUDGET_S:.0f} s)"
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert Path(printed.strip()).resolve() == Path(sys.executable).resolve()
    return nb


def _printed(nb: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "") for cell in nb.cells for output in cell.get("outputs", [])
    )


def _number_after(label: str, printed: str) -> float:
    """The number a notebook printed after ``label`` (fails if it printed none)."""
    found = re.search(re.escape(label) + r"\s*([-+0-9.eE]+)", printed)
    assert found, f"the notebook did not print {label!r}"
    return float(found.group(1))


def test_every_notebook_is_tested():
    assert {p.name for p in NOTEBOOKS} == {
        "tutorial.ipynb",
        "time_series.ipynb",
        "4dstem.ipynb",
        "live.ipynb",
    }


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert all(not cell.outputs and cell.execution_count is None for cell in code), path.name


@pytest.mark.parametrize("data", ["shipped", "missing"])
def test_tutorial(tmp_path, monkeypatch, data):
    if data == "shipped" and not DATA.is_dir():
        pytest.skip("../shared/data not present: the tutorial's real-data run is skipped")
    # A folder without the file exercises the notebook's synthetic fallback.
    monkeypatch.setenv("DASKREG_DATA", str(DATA if data == "shipped" else tmp_path / "none"))
    nb = _run(WORKFLOWS / "tutorial.ipynb", tmp_path)
    printed = _printed(nb)
    if data == "missing":
        assert "not found: using a synthetic 20-frame series" in printed
    # 20 frames at ~10 counts per pixel register to a few hundredths of a pixel; 0.2 px
    # still fails any sign, axis or unit-cell error (those are a pixel or more).
    assert _number_after("largest error against the true drift:", printed) < 0.2
    out = tmp_path / "daskreg-out"
    image, description = read_average_tif(out / "average.tif")
    assert image.ndim == 2 and np.isfinite(image).all()
    assert description["params"]["mask"] == "bandpass"
    report = out / "report.pdf"
    assert report.read_bytes().startswith(b"%PDF")
    assert "dashboard: http" in printed
    # Both engines run the same kernels on the same frames, in single precision (the
    # default) and blocked differently: equal to float32 rounding, far below the error.
    assert _number_after("largest difference from the step-by-step shifts:", printed) < 1e-3
    # The HyperSpy route (defaults, in place on the signal): the same bound as above.
    assert _number_after("HyperSpy route: largest error against the true drift:", printed) < 0.2


def test_time_series(tmp_path):
    nb = _run(WORKFLOWS / "time_series.ipynb", tmp_path)
    # Banded pairs must not accumulate a walk-off over 200 frames: the rms error stays at
    # the single-pair precision of 128x128 frames at this dose (about 0.05 px).
    assert _number_after("shift error: rms", _printed(nb)) < 0.1
    assert not any(tmp_path.iterdir()), "the time-series notebook should write no files"


def test_4dstem(tmp_path):
    nb = _run(WORKFLOWS / "4dstem.ipynb", tmp_path)
    # Eight 64x64 virtual images: about 0.1 px; a sign or axis error would be pixels.
    assert _number_after("largest error against the true drift:", _printed(nb)) < 0.3
    assert (tmp_path / "daskreg-out" / "fourd_series.zarr").is_dir()


def test_live(tmp_path):
    nb = _run(WORKFLOWS / "live.ipynb", tmp_path)
    printed = _printed(nb)
    # Every frame the thread wrote was registered live, none half-read.
    assert "64 frames registered live" in printed
    # finish() is the batch registration; the float32 pairs measured one frame at a time
    # round differently from the batch's (1.1e-5 px measured on this series), while a
    # wrong frame, pair or sign would be hundredths of a pixel or more.
    assert _number_after("largest difference from the batch registration:", printed) < 1e-4
    # 128x128 frames at 3 counts per column: about 0.1 px; a sign or axis error is pixels.
    assert _number_after("shift error: rms", printed) < 0.2
    assert not any(tmp_path.iterdir()), "the live notebook should leave no files"
