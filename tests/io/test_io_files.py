"""Several files as one stack: a folder, a glob pattern or a list of per-frame files."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
import tifffile
from dask.core import flatten

import daskreg
from daskreg.errors import (
    CalibrationError,
    FileFormatError,
    RegistrationWarning,
    StackDtypeError,
    StackFileNotFoundError,
    StackShapeError,
)
from daskreg.io import natural_key, open_stack
from daskreg.synthetic import lattice_series

PIXEL_NM = 0.0391


def write_frame(path: Path, image: np.ndarray, pixel_nm: float = PIXEL_NM) -> Path:
    """One ImageJ TIFF calibrated in nm, as Fiji or a DM export script writes it."""
    tifffile.imwrite(
        path,
        image,
        imagej=True,
        resolution=(1 / pixel_nm, 1 / pixel_nm),
        metadata={"unit": "nm", "axes": "TYX" if image.ndim == 3 else "YX"},
    )
    return path


def write_frames(folder: Path, stack: np.ndarray, name: str = "frame_{}.tif") -> list[Path]:
    folder.mkdir(exist_ok=True)
    return [write_frame(folder / name.format(i), frame) for i, frame in enumerate(stack)]


def marked_frames(n: int, shape: tuple[int, int] = (8, 10)) -> np.ndarray:
    """Frame i filled with i: the frame order can be read off the pixels."""
    return np.broadcast_to(np.arange(n, dtype=np.uint16)[:, None, None], (n, *shape)).copy()


@pytest.mark.parametrize(("lattice", "seed"), [("perovskite", 3), ("hexagonal", 8)])
def test_folder_of_per_frame_tifs_registers_as_the_stacked_array(
    tmp_path: Path, lattice: str, seed: int
) -> None:
    series = lattice_series(12, (64, 64), lattice=lattice, dose=200, seed=seed)
    write_frames(tmp_path / "frames", series.stack)
    stack = open_stack(tmp_path / "frames")
    assert stack.dims == ("frame", "y", "x") and stack.shape == series.stack.shape
    assert stack.attrs["pixel_size"] == pytest.approx((PIXEL_NM, PIXEL_NM), rel=1e-6)
    assert stack.attrs["unit"] == "nm" and stack.attrs["n_files"] == 12
    np.testing.assert_allclose(stack["x"].values, PIXEL_NM * np.arange(64), rtol=1e-6)

    from_files = daskreg.register(stack, engine="numpy")
    from_array = daskreg.register(series.stack, engine="numpy")
    # Same pixels (the files hold the series' own dtype), same algorithm: same shifts up to
    # float summation order.
    np.testing.assert_allclose(from_files.shifts, from_array.shifts, atol=1e-9)
    # And right: shifts are relative to the mean of the used frames, the truth's offset is
    # arbitrary; 0.15 px is far below one frame-to-frame drift step (~1 px) and above the
    # 0.04-0.1 px error of these noisy 64^2 series with the default parameters.
    truth = series.shifts - series.shifts.mean(axis=0)
    np.testing.assert_allclose(from_files.shifts.values, truth, atol=0.15)
    assert from_files.dataset.attrs["pixel_size"] == pytest.approx((PIXEL_NM, PIXEL_NM))
    assert from_files.dataset.attrs["unit"] == "nm"


def test_a_glob_pattern_and_a_list_give_the_same_stack(tmp_path: Path) -> None:
    frames = marked_frames(11)
    paths = write_frames(tmp_path, frames)
    (tmp_path / "notes.txt").write_text("not a frame")
    by_folder = open_stack(tmp_path)
    by_pattern = open_stack(str(tmp_path / "frame_*.tif"))
    by_list = open_stack([str(p) if i % 2 else p for i, p in enumerate(paths)])
    for stack in (by_folder, by_pattern, by_list):
        np.testing.assert_array_equal(stack.values, frames)
        assert stack.attrs["pixel_size"] == pytest.approx((PIXEL_NM, PIXEL_NM), rel=1e-6)
    assert by_pattern.attrs["source"] == str(tmp_path / "frame_*.tif")
    assert by_list.attrs["source"].endswith("frame_10.tif (11 files)")


def test_files_are_taken_in_natural_order(tmp_path: Path) -> None:
    frames = marked_frames(12)
    write_frames(tmp_path, frames, name="Frame_{}.tif")
    # Text order would be 0, 1, 10, 11, 2, ...
    np.testing.assert_array_equal(open_stack(tmp_path)[:, 0, 0], np.arange(12))
    np.testing.assert_array_equal(open_stack(tmp_path / "*.tif")[:, 0, 0], np.arange(12))
    assert sorted(["a10b2", "a2b10", "a2b9", "A1"], key=natural_key) == [
        "A1",
        "a2b9",
        "a2b10",
        "a10b2",
    ]


def test_a_list_keeps_its_order_and_warns_when_sorted_as_text(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, marked_frames(12))
    shuffled = [paths[i] for i in (3, 0, 2, 1)]
    np.testing.assert_array_equal(open_stack(shuffled)[:, 0, 0], [3, 0, 2, 1])
    with pytest.warns(RegistrationWarning, match="text order.*'frame_10.tif'.*natural_key"):
        stack = open_stack(sorted(paths, key=str))
    np.testing.assert_array_equal(stack[:3, 0, 0], [0, 1, 10])


def test_files_of_a_few_frames_each_are_concatenated(tmp_path: Path) -> None:
    frames = marked_frames(7)
    write_frame(tmp_path / "part_1.tif", frames[:3])
    write_frame(tmp_path / "part_2.tif", frames[3])
    write_frame(tmp_path / "part_3.tif", frames[4:])
    stack = open_stack(tmp_path, chunks=2)
    np.testing.assert_array_equal(stack.values, frames)
    assert stack.data.chunks[0] == (2, 2, 2, 1)


def test_one_task_per_file_reading_the_file_when_computed(tmp_path: Path) -> None:
    frames = marked_frames(5)
    paths = write_frames(tmp_path, frames)
    stack = open_stack(tmp_path)
    graph = dict(stack.data.__dask_graph__())
    readers = [key for key in graph if key[0].startswith("daskreg-read-files-")]
    assert len(readers) == len(paths)
    # Nothing unpicklable in the graph (no open file, no lock): what a worker process gets.
    shipped = pickle.loads(pickle.dumps(graph))
    blocks = dask.get(shipped, list(flatten(stack.data.__dask_keys__())))
    np.testing.assert_array_equal(np.concatenate(blocks), frames)
    # Pixels are read when computed, not when opened: a file rewritten since is read anew.
    write_frame(paths[2], np.full_like(frames[2], 99))
    assert int(stack[2, 0, 0]) == 99
    paths[4].unlink()
    with pytest.raises(StackFileNotFoundError, match="frame_4.tif"):
        stack.values  # noqa: B018


def test_frames_of_another_size_name_the_file(tmp_path: Path) -> None:
    write_frames(tmp_path, marked_frames(4))
    write_frame(tmp_path / "frame_2.tif", np.zeros((8, 12), np.uint16))
    with pytest.raises(StackShapeError, match=r"frame_2\.tif.* 8 x 12 .*first file.*8 x 10"):
        open_stack(tmp_path)


def test_integer_and_float_files_name_the_file(tmp_path: Path) -> None:
    write_frames(tmp_path, marked_frames(3))
    write_frame(tmp_path / "frame_1.tif", np.zeros((8, 10), np.float32))
    with pytest.raises(StackDtypeError, match=r"frame_1\.tif.*float32 and uint16"):
        open_stack(tmp_path)


def test_integer_widths_are_promoted(tmp_path: Path) -> None:
    write_frame(tmp_path / "a1.tif", np.full((8, 10), 7, np.uint8))
    write_frame(tmp_path / "a2.tif", np.full((8, 10), 300, np.uint16))
    stack = open_stack(tmp_path)
    assert stack.dtype == np.uint16
    np.testing.assert_array_equal(stack[:, 0, 0], [7, 300])


@pytest.mark.parametrize(
    ("pixel_nm", "unit", "match"),
    [
        (0.05, "nm", r"frame_2\.tif.*\(0\.05, 0\.05\) nm.*first file.*\(0\.0391, 0\.0391\) nm"),
        (PIXEL_NM, "", r"frame_2\.tif.* px .*\(0\.0391, 0\.0391\) nm"),
    ],
)
def test_another_calibration_names_the_file_and_both_pixel_sizes(
    tmp_path: Path, pixel_nm: float, unit: str, match: str
) -> None:
    write_frames(tmp_path, marked_frames(4))
    odd = tmp_path / "frame_2.tif"
    if unit:
        write_frame(odd, marked_frames(1)[0], pixel_nm=pixel_nm)
    else:
        tifffile.imwrite(odd, marked_frames(1)[0])
    with pytest.raises(CalibrationError, match=match):
        open_stack(tmp_path)


def test_pixel_size_rounding_is_not_a_different_calibration(tmp_path: Path) -> None:
    write_frame(tmp_path / "f1.tif", marked_frames(1)[0], pixel_nm=PIXEL_NM)
    write_frame(tmp_path / "f2.tif", marked_frames(1)[0], pixel_nm=PIXEL_NM * (1 + 1e-6))
    assert open_stack(tmp_path).attrs["pixel_size"] == pytest.approx((PIXEL_NM, PIXEL_NM))


def test_folder_and_pattern_problems(tmp_path: Path) -> None:
    (tmp_path / "a.tif").write_bytes(b"")
    (tmp_path / "a_1.ser").write_bytes(b"")
    with pytest.raises(FileFormatError, match=r"1 \.ser, 1 \.tif.*glob pattern"):
        open_stack(tmp_path)
    with pytest.raises(StackFileNotFoundError, match=r"no file matches.*\*\.dm4"):
        open_stack(tmp_path / "*.dm4")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("")
    with pytest.raises(FileFormatError, match=r"not a Zarr store.*holds no stack file.*readme"):
        open_stack(empty)


def test_an_average_in_the_folder_of_its_frames_is_named(tmp_path: Path) -> None:
    frames = lattice_series(6, (64, 64), dose=200, seed=2).stack
    write_frames(tmp_path, frames)
    daskreg.register(frames, crop=False, engine="numpy").save_tif(
        tmp_path / "avg.tif"
    )
    with pytest.raises(FileFormatError, match=r"avg\.tif.* average written by daskreg"):
        open_stack(tmp_path)
    assert open_stack(tmp_path / "frame_*.tif").shape == (6, 64, 64)


def test_hidden_files_are_not_frames(tmp_path: Path) -> None:
    write_frames(tmp_path, marked_frames(3))
    (tmp_path / "._frame_0.tif").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork
    assert open_stack(tmp_path).shape == (3, 8, 10)


def test_a_tiff_whose_pages_differ_in_shape_names_the_page(tmp_path: Path) -> None:
    page = np.zeros((16, 16), np.uint16)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:
        for image in (page, page, np.zeros((8, 16), np.uint16), page):
            tif.write(image, metadata=None)
    with pytest.raises(StackShapeError, match=r"page 2 .*\(8, 16\).*page 0 .*\(16, 16\)"):
        open_stack(path)
    # A series chosen by the caller is read as it is.
    assert open_stack(path, signal=1).shape == (1, 8, 16)


def test_cli_registers_a_folder_and_reads_a_quoted_glob(tmp_path: Path) -> None:
    series = lattice_series(8, (64, 64), dose=200, seed=5)
    write_frames(tmp_path / "frames", series.stack)
    cli = [sys.executable, "-m", "daskreg.cli"]
    fast = ["--scheduler", "threads", "--no-progress", "--mask", "hann", "--n", "4"]
    info = subprocess.run(
        [*cli, "info", "frames/frame_*.tif"], cwd=tmp_path, capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    assert "8 x 64 x 64" in info.stdout and "0.0391" in info.stdout
    proc = subprocess.run(
        [*cli, "register", "frames", "-o", "avg.tif", *fast],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    _, description = daskreg.read_average_tif(tmp_path / "avg.tif")
    assert description["result_store"] == "avg.result.zarr"
    result = daskreg.load_result(tmp_path / "avg.result.zarr")
    expected = daskreg.register(series.stack, mask="hann", n=4, engine="numpy")
    # The Dask engine and the numpy engine give the same result (tests/parallel).
    np.testing.assert_allclose(result.shifts, expected.shifts, atol=1e-6)
    assert result.dataset.attrs["pixel_size"] == pytest.approx([PIXEL_NM, PIXEL_NM])


@pytest.mark.realdata
def test_a_list_of_vendor_files_opens_as_one_stack(data_dir: Path) -> None:
    dm4 = data_dir / "dmTest_3D_int16_64x65x66.dm4"
    ser = data_dir / "03_Scanning_Preview_1.ser"
    one_dm4, one_ser = open_stack(dm4), open_stack(ser)
    for path, single in ((dm4, one_dm4), (ser, one_ser)):
        stack = open_stack([path, path])
        assert stack.shape == (2 * single.sizes["frame"], *single.shape[1:])
        assert stack.attrs["pixel_size"] == single.attrs["pixel_size"]
        assert stack.attrs["unit"] == single.attrs["unit"] == "nm"
        np.testing.assert_array_equal(stack.values, np.concatenate([single.values] * 2))
    with pytest.raises(StackShapeError, match=r"03_Scanning_Preview_1\.ser.*128 x 128"):
        open_stack([dm4, ser])
