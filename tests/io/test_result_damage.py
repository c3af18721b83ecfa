"""Damaged result stores give a FileFormatError naming the store, never other values
(issue 19): ``load_result``, ``daskreg apply`` and ``daskreg report``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import daskreg
from daskreg import cli
from daskreg.errors import DaskregError, FileFormatError
from daskreg.io import results
from daskreg.synthetic import lattice_series

HOWS = ("delete", "empty", "truncate", "zero", "flip")


def _damage(path: Path, how: str, at: float = 0.5) -> None:
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero":
        path.write_bytes(bytes(len(data)))
    else:
        flipped = bytearray(data)
        flipped[int(len(data) * at)] ^= 0x10
        path.write_bytes(bytes(flipped))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A result (numpy engine, 9 frames) saved as Zarr and as NetCDF, and the series."""
    series = lattice_series(9, (64, 64), dose=100, seed=3)
    result = daskreg.register(series.stack, engine="numpy", progress=False)
    folder = tmp_path_factory.mktemp("results")
    for name in ("r.result.zarr", "r.nc"):
        result.save(folder / name)
    return folder, result, series


def _chunk_files(store: Path) -> list[Path]:
    return sorted(p for p in store.rglob("*") if p.is_file() and p.name != "zarr.json")


@pytest.mark.parametrize("how", HOWS)
def test_every_damaged_zarr_chunk_is_an_error_naming_the_store(saved, tmp_path, how):
    folder, result, _ = saved
    chunks = _chunk_files(folder / "r.result.zarr")
    # Each variable's data (one chunk each at this size), coordinates included.
    assert len(chunks) >= 20
    for chunk in chunks:
        store = tmp_path / "d.result.zarr"
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(folder / "r.result.zarr", store)
        _damage(store / chunk.relative_to(folder / "r.result.zarr"), how)
        with pytest.raises(FileFormatError, match="d.result.zarr") as raised:
            daskreg.load_result(store)
        assert "damaged" in str(raised.value), (chunk, how)


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_metadata_or_file_damage_is_an_error_or_the_same_values(saved, tmp_path, suffix):
    # A flip in metadata may land where nothing read changes (a compression level, a
    # per-variable zarr.json that the consolidated metadata supersedes): then the values
    # are those saved, checked by the digest. Everything else is an error.
    folder, result, _ = saved
    original = folder / ("r.result.zarr" if suffix == ".zarr" else "r.nc")
    # The root's metadata (consolidated: what is read) and two variables'.
    parts = ["zarr.json", "shifts/zarr.json", "average_full/zarr.json"]
    targets = [original / part for part in parts] if suffix == ".zarr" else [original]
    spots = np.linspace(0.01, 0.99, 7 if suffix == ".zarr" else 40)
    outcomes = {"error": 0, "same": 0}
    for target in targets:
        for how, at in [(h, 0.5) for h in HOWS[:-1]] + [("flip", a) for a in spots]:
            damaged = tmp_path / ("d.result.zarr" if suffix == ".zarr" else "d.nc")
            shutil.rmtree(damaged, ignore_errors=True)
            damaged.unlink(missing_ok=True)
            (shutil.copy if suffix == ".nc" else shutil.copytree)(original, damaged)
            part = damaged if suffix == ".nc" else damaged / target.relative_to(original)
            _damage(part, how, at)
            try:
                got = daskreg.load_result(damaged)
            except DaskregError as exc:  # deleting the .nc: "no such result"
                assert damaged.name in str(exc)
                outcomes["error"] += 1
                continue
            assert got.dataset.identical(result.dataset), (target, how, at)
            outcomes["same"] += 1
    assert outcomes["error"] >= 5, outcomes


def test_a_store_saved_before_the_digest_is_still_read(saved, tmp_path):
    # The writer of earlier versions: no digest attribute, no checksum codec.
    _, result, _ = saved
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        results._encoded(result.dataset).to_zarr(
            tmp_path / "old.result.zarr", zarr_format=3, consolidated=True
        )
    assert daskreg.load_result(tmp_path / "old.result.zarr").dataset.identical(result.dataset)
    # Damaged, it has no checksum to fail: zstd's own RuntimeError becomes the error.
    _damage(next((tmp_path / "old.result.zarr" / "shifts").rglob("c/*/*")), "truncate")
    with pytest.raises(FileFormatError, match=r"old.result.zarr.*RuntimeError.*damaged"):
        daskreg.load_result(tmp_path / "old.result.zarr")


@pytest.mark.parametrize("command", ["apply", "report"])
def test_cli_reading_a_damaged_store_exits_2_with_one_line(saved, tmp_path, command):
    folder, _, series = saved
    store = tmp_path / "d.result.zarr"
    shutil.copytree(folder / "r.result.zarr", store)
    _damage(next((store / "shifts").rglob("c/*/*")), "truncate")
    if command == "apply":
        daskreg.ingest(series.to_xarray(), tmp_path / "other.zarr")
        args = ["apply", str(store), str(tmp_path / "other.zarr"), "-o", str(tmp_path / "a.tif")]
    else:
        args = ["report", str(store), "-o", str(tmp_path / "r.pdf")]
    if command == "apply":
        args.append("--no-progress")
    done = subprocess.run(
        [sys.executable, "-m", "daskreg.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == cli.EXIT_BAD_INPUT, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "d.result.zarr" in lines[0] and "damaged" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["d.result.zarr", *(["other.zarr"] if command == "apply" else [])]
    )
