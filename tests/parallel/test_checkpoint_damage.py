"""Damaged checkpoints and changed inputs: ``--resume`` recomputes or refuses, never
finishes with another result (issue 19)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import daskreg
from daskreg import cli
from daskreg.errors import CheckpointError
from daskreg.parallel import checkpoint
from daskreg.synthetic import lattice_series

from .conftest import assert_same_result

# 17 frames in chunks of 3: 6 frame chunks, 21 block pairs, one survey per series.
ARGS = ["--chunks", "3", "--scheduler", "synchronous", "--no-progress"]
# One entry of each kind the checkpoint holds (checkpoint.py's layout).
ENTRIES = ["pairs/0-1-2", "frames/0-2", "survey/0"]
# Entries reloaded hold the very numbers computed before, and a recomputed entry is
# computed from the same frames by the same code: only round-off-free equality fits.
SHIFT_ATOL = 1e-9


def _damage(path: Path, how: str) -> None:
    if how == "delete":
        path.unlink()
    elif how == "empty":  # what a crash usually leaves: a 0-byte file
        path.write_bytes(b"")
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "zero":
        path.write_bytes(bytes(path.stat().st_size))
    else:  # flip one bit in the middle
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def run(series, tmp_path_factory):
    """An input store, the uninterrupted result, and the checkpoint it kept."""
    folder = tmp_path_factory.mktemp("damage")
    daskreg.ingest(series.to_xarray(), folder / "in.zarr", chunks=1)
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        args = ["register", "in.zarr", *ARGS, "-o", "whole.tif", "--checkpoint", "kept.zarr"]
        assert cli.main([*args, "--keep-checkpoint"]) == cli.EXIT_OK
    finally:
        os.chdir(cwd)
    return folder, daskreg.load_result(folder / "whole.result.zarr")


def _resume(folder: Path, damaged: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        args = ["register", "in.zarr", *ARGS, "-o", "out.tif", "--checkpoint", str(damaged)]
        code = cli.main([*args, "--resume", "--overwrite"])
    finally:
        os.chdir(cwd)
    return code, capsys.readouterr().err


@pytest.mark.filterwarnings("always::daskreg.errors.RegistrationWarning")
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("file", ["0", "zarr.json"])
@pytest.mark.parametrize("how", ["delete", "empty", "truncate", "zero", "flip"])
def test_a_damaged_entry_is_recomputed(run, tmp_path, capsys, entry, file, how):
    folder, whole = run
    damaged = tmp_path / "ck.zarr"
    shutil.copytree(folder / "kept.zarr", damaged)
    _damage(damaged / entry / file, how)
    code, err = _resume(folder, damaged, capsys)
    assert code == cli.EXIT_OK, err
    got = daskreg.load_result(folder / "out.result.zarr")
    assert_same_result(got, whole, shift_atol=SHIFT_ATOL)
    np.testing.assert_array_equal(got.shifts.values, whole.shifts.values)
    # A bit flipped in the metadata may land where it changes nothing read (a
    # compression level): then the entry is whole. Any other damage is named.
    if not (file == "zarr.json" and how == "flip") or "damaged" in err:
        assert f"checkpoint entry {entry} " in err and "computed again" in err, err
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("how", ["delete", "empty", "truncate", "zero", "flip"])
def test_damaged_checkpoint_metadata_is_refused(run, tmp_path, capsys, how):
    folder, whole = run
    damaged = tmp_path / "ck.zarr"
    shutil.copytree(folder / "kept.zarr", damaged)
    _damage(damaged / "zarr.json", how)
    code, err = _resume(folder, damaged, capsys)
    if code == cli.EXIT_OK:  # a flip where it is not read: the same checkpoint
        assert how == "flip"
        assert_same_result(daskreg.load_result(folder / "out.result.zarr"), whole)
    else:
        assert code == cli.EXIT_BAD_INPUT, err
        assert "damaged metadata" in err and "--resume" not in err, err


def test_every_kind_of_entry_is_damaged_above(run):
    # The cases above cover each kind of entry the checkpoint holds, and each file.
    kept = run[0] / "kept.zarr"
    kinds = sorted(p.name for p in kept.iterdir() if p.is_dir())
    assert kinds == sorted({e.split("/")[0] for e in ENTRIES})
    for entry in ENTRIES:
        assert sorted(os.listdir(kept / entry)) == ["0", "zarr.json"]


def _rewrite_in_place(store: Path, frames: np.ndarray, which: slice = slice(None)) -> None:
    """Overwrite frames of the store's array, restoring every file's times."""
    times = {p: p.stat() for p in store.rglob("*")}
    array = zarr.open_group(str(store), mode="r+")["stack"]
    array[which] = frames
    for p, st in times.items():
        if p.exists():
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_an_input_rewritten_in_place_is_refused(run, tmp_path, capsys):
    # A new acquisition saved over the old file, its times kept: the content hashes.
    folder, _ = run
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(folder / "in.zarr", work / "in.zarr", copy_function=shutil.copy2)
    shutil.copytree(folder / "kept.zarr", work / "ck.zarr")
    _rewrite_in_place(work / "in.zarr", lattice_series(17, (64, 64), dose=100, seed=6).stack)
    code, err = _resume(work, work / "ck.zarr", capsys)
    assert code == cli.EXIT_BAD_INPUT, err
    assert "another input" in err and "input: " in err, err
    assert not (work / "out.tif").exists()


@pytest.mark.parametrize(
    ("lose_survey", "named"),
    [(False, r"another input: frames \[4\] of series 0"), (True, "frames 3 to 5 differ")],
)
def test_one_frame_rewritten_where_not_sampled_is_refused(series, tmp_path, lose_survey, named):
    # The hashes read 6 of the 17 frames (0, 1, 8, 9, 15, 16), so
    # frame 4 is found by the survey entry, which holds every frame's quality; without
    # it (lost too), by the frames entry of its chunk (frames 3-5).
    daskreg.ingest(series.to_xarray(), tmp_path / "in.zarr", chunks=1)
    run = {"scheduler": "synchronous", "chunks": 3, "progress": False}

    def stack():
        return xr.open_zarr(tmp_path / "in.zarr", consolidated=False)["stack"].chunk(frame=1)

    path = tmp_path / "ck.zarr"
    daskreg.register(stack(), checkpoint=path, keep_checkpoint=True, **run)
    other = lattice_series(17, (64, 64), dose=100, seed=6).stack
    _rewrite_in_place(tmp_path / "in.zarr", other[4:5], slice(4, 5))
    if lose_survey:
        shutil.rmtree(path / "survey" / "0")
    with pytest.raises(CheckpointError, match=named):
        daskreg.register(stack(), checkpoint=path, resume=True, **run)


def test_cli_resume_of_a_zero_byte_chunk_in_a_subprocess(run, tmp_path):
    # The crash's usual leftover, through the real command: recomputed, warned once.
    folder, whole = run
    damaged = tmp_path / "ck.zarr"
    shutil.copytree(folder / "kept.zarr", damaged)
    (damaged / "pairs" / "0-0-1" / "0").write_bytes(b"")
    out = tmp_path / "out.tif"
    args = ["register", str(folder / "in.zarr"), *ARGS, "-o", str(out), "--checkpoint"]
    done = subprocess.run(
        [sys.executable, "-m", "daskreg.cli", *args, str(damaged), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert "checkpoint entry pairs/0-0-1 " in done.stderr and "--resume" not in done.stderr
    got = daskreg.load_result(tmp_path / "out.result.zarr")
    np.testing.assert_array_equal(got.shifts.values, whole.shifts.values)
    assert not damaged.exists()  # removed once every output is written


def test_identity_is_the_content_whatever_the_chunks(series):
    stack = series.to_xarray()
    same = {checkpoint.identity(stack.chunk(frame=size)) for size in (1, 4, 17)}
    assert same == {checkpoint.identity(stack)}
    changed = stack.copy(data=stack.values.copy())
    changed.values[16, 5, 7] = np.nextafter(changed.values[16, 5, 7], np.inf)  # last frame
    assert checkpoint.identity(changed) not in same
