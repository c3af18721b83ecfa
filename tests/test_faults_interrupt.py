"""Ctrl-C in the API while an output is written leaves no temporary and no half output.

A KeyboardInterrupt is raised inside each write (after the writer has filled its
temporary, the worst moment: everything is on disk under the staging name) and at the
final rename; the folder must then hold exactly what it held before, and an output being
replaced (``overwrite``) must be the old one, whole.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import daskreg
from daskreg.parallel import cluster
from daskreg.synthetic import lattice_series


@pytest.fixture(scope="module")
def result():
    series = lattice_series(6, (64, 64), dose=100, seed=2)
    return daskreg.register(series.stack, engine="numpy", progress=False)


def _listing(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with a hash of its content (hidden files included)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        content = path.read_bytes() if path.is_file() else b"<dir>"
        found[str(path.relative_to(folder))] = hashlib.sha256(content).hexdigest()
    return found


def _interrupted_after(function: Callable) -> Callable:
    def write(*args, **kwargs):
        function(*args, **kwargs)
        raise KeyboardInterrupt

    return write


# Where each kind of output is written: the function to interrupt, after it has run.
WRITERS = {
    ".tif": ("daskreg.io.average_tif.tifffile", "imwrite"),
    ".zarr": ("daskreg.io.results", "_write_zarr"),
    ".nc": ("daskreg.io.results", "_write_netcdf"),
    ".hspy": ("hyperspy.signal.BaseSignal", "save"),
}


def _patch_writer(monkeypatch, suffix: str) -> None:
    module, name = WRITERS[suffix]
    if suffix == ".hspy":
        pytest.importorskip("hyperspy")
    owner = _resolve(module)
    monkeypatch.setattr(owner, name, _interrupted_after(getattr(owner, name)))


def _resolve(dotted: str):
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            owner = getattr(owner, attribute)
        return owner
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("suffix", list(WRITERS))
@pytest.mark.parametrize("moment", ["in the write", "at the rename"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
def test_result_save_interrupted(result, tmp_path, monkeypatch, suffix, moment, existing):
    path = tmp_path / f"out{suffix}"
    if existing:
        result.save(path)
    before = _listing(tmp_path)
    if moment == "in the write":
        _patch_writer(monkeypatch, suffix)
    else:
        # Only daskreg's staging renames: Zarr renames its own files as it writes them.
        real = os.replace

        def replace(src, dst, **kwargs):
            if ".partial-" in Path(src).name:
                raise KeyboardInterrupt
            real(src, dst, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        result.save(path)
    monkeypatch.undo()
    # Byte for byte as before: an output being replaced is the old one, whole (a store,
    # a folder, cannot be replaced by one rename: it must be moved aside, not deleted).
    assert _listing(tmp_path) == before


def test_register_save_stack_interrupted(tmp_path, monkeypatch):
    # The Dask engine writes the aligned stack in its second compute; Ctrl-C there.
    series = lattice_series(6, (64, 64), dose=100, seed=2)
    real = cluster.compute
    calls = []

    def compute(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # survey, pairs, then average + stack
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cluster, "compute", compute)
    before = _listing(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        daskreg.register(
            series.stack, engine="dask", scheduler="threads", progress=False,
            save_stack=str(tmp_path / "aligned.zarr"),
        )  # fmt: skip
    assert len(calls) == 3
    assert _listing(tmp_path) == before
