"""Live sources (issue 20): following a folder the acquisition writes into, ``feed``, and
``daskreg watch`` run as users run it, against an acquisition simulated in another process.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import daskreg
from daskreg import cli
from daskreg.errors import (
    FileFormatError,
    ParameterError,
    RegistrationWarning,
    StackFileNotFoundError,
    StackShapeError,
)
from daskreg.io.average_tif import read_average_tif
from daskreg.io.follow import follow_folder
from daskreg.live_sources import feed
from daskreg.synthetic import lattice_series

CLI = [sys.executable, "-m", "daskreg.cli"]
SHAPE = (128, 128)
# Fast looks for the tests: a file is read once unchanged for 0.1 s.
FAST = {"poll": 0.02, "settle": 0.1}

# Writes the frames of a saved stack into a folder one by one, each in two pieces with a
# pause between them that is longer than --settle: a reader that took a file whose size
# had settled, without checking that it parses completely, would read half a frame.
WRITER = """
import sys, time, io
import numpy as np, tifffile
stack = np.load(sys.argv[1])
folder, pause = sys.argv[2], float(sys.argv[3])
for k, frame in enumerate(stack):
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, frame)
    data = buffer.getvalue()
    with open(f"{folder}/frame_{k}.tif", "wb") as file:
        file.write(data[: len(data) // 2])
        file.flush()
        time.sleep(pause)
        file.write(data[len(data) // 2 :])
"""


def tif_bytes(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, frame)
    return buffer.getvalue()


def hidden_leftovers(folder: Path) -> list[str]:
    """Staged outputs and lock files a run left behind."""
    return [name for name in os.listdir(folder) if name.startswith(".")]


class Collector:
    """Iterate ``follow_folder`` in a thread; its frames and what it raised."""

    def __init__(self, folder: Path, **options) -> None:
        self.stop = threading.Event()
        self.frames: list[np.ndarray] = []
        self.error: BaseException | None = None
        self.warnings: list[str] = []
        frames = follow_folder(folder, stop=self.stop, **{**FAST, **options})
        self.thread = threading.Thread(target=self._run, args=(frames,), daemon=True)
        self.thread.start()

    def _run(self, frames) -> None:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.frames.extend(frames)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                self.error = exc
        self.warnings = [str(w.message) for w in caught if w.category is RegistrationWarning]

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.frames) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    def finish(self, timeout: float = 10.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "follow_folder did not stop"


# follow_folder -------------------------------------------------------------------------


def test_a_partly_written_file_is_not_read_until_complete(tmp_path):
    frame = lattice_series(1, SHAPE, dose=2, seed=3).stack[0]
    data = tif_bytes(frame)
    with open(tmp_path / "frame_0.tif", "wb") as file:
        file.write(data[: len(data) // 2])
        file.flush()
        collector = Collector(tmp_path, quiet_seconds=5.0)
        # Ten times --settle: the half file has settled, been tried, and refused.
        time.sleep(1.0)
        assert collector.frames == []
        file.write(data[len(data) // 2 :])
    collector.wait_for(1)
    collector.stop.set()
    collector.finish()
    assert collector.error is None
    assert len(collector.frames) == 1
    np.testing.assert_array_equal(collector.frames[0], frame)


def test_frames_come_in_natural_order_of_the_names(tmp_path):
    stack = lattice_series(4, SHAPE, dose=2, seed=4).stack
    # Written newest first, and named so that text order would put 10 before 2.
    for k, name in reversed(list(enumerate(["f1", "f2", "f10", "f11"]))):
        tifffile.imwrite(tmp_path / f"{name}.tif", stack[k])
    frames = list(follow_folder(tmp_path, quiet_seconds=0.3, **FAST))
    np.testing.assert_array_equal(np.stack(frames), stack)


def test_a_late_file_named_before_one_already_read_is_left_out(tmp_path):
    stack = lattice_series(3, SHAPE, dose=2, seed=5).stack
    tifffile.imwrite(tmp_path / "f1.tif", stack[0])
    tifffile.imwrite(tmp_path / "f3.tif", stack[2])
    collector = Collector(tmp_path, quiet_seconds=1.0)
    collector.wait_for(2)
    tifffile.imwrite(tmp_path / "f2.tif", stack[1])
    collector.finish()
    assert collector.error is None
    np.testing.assert_array_equal(np.stack(collector.frames), stack[[0, 2]])
    assert any("'f3.tif' had been read" in w for w in collector.warnings), collector.warnings


@pytest.mark.parametrize("n_files", [0, 2])
def test_it_stops_when_the_folder_is_quiet(tmp_path, n_files):
    for k, frame in enumerate(lattice_series(n_files, SHAPE, seed=6).stack if n_files else []):
        tifffile.imwrite(tmp_path / f"frame_{k}.tif", frame)
    quiet = 0.5
    started = time.monotonic()
    frames = list(follow_folder(tmp_path, quiet_seconds=quiet, **FAST))
    elapsed = time.monotonic() - started
    assert len(frames) == n_files
    # At least the quiet time; at most that plus the settle time and a few looks.
    assert quiet <= elapsed < quiet + 1.0, elapsed


def test_the_time_the_consumer_spends_is_not_quiet(tmp_path):
    stack = lattice_series(3, SHAPE, dose=2, seed=9).stack
    tifffile.imwrite(tmp_path / "frame_0.tif", stack[0])
    frames = follow_folder(tmp_path, quiet_seconds=0.3, **FAST)
    got = []
    for k, frame in enumerate(frames):
        got.append(frame)
        if k + 1 < len(stack):
            # The next frame arrives while this one is processed, for twice the quiet
            # time (a live registration's first refinement, a slow plot).
            tifffile.imwrite(tmp_path / f"frame_{k + 1}.tif", stack[k + 1])
            time.sleep(0.6)
    np.testing.assert_array_equal(np.stack(got), stack)


def test_the_stop_event_ends_it_at_once(tmp_path):
    collector = Collector(tmp_path, quiet_seconds=60.0)
    time.sleep(0.2)
    started = time.monotonic()
    collector.stop.set()
    collector.finish(timeout=2.0)
    assert time.monotonic() - started < 0.5
    assert collector.error is None and collector.frames == []


def test_pages_appended_to_one_tiff_are_followed(tmp_path):
    stack = lattice_series(5, SHAPE, dose=2, seed=7).stack.astype(np.float32)
    path = tmp_path / "series.tif"
    tifffile.imwrite(path, stack[0], metadata=None)
    collector = Collector(path, quiet_seconds=2.0)
    for k in range(1, len(stack)):
        collector.wait_for(k)
        # Plain pages appended form one series, as acquisition programs write them.
        tifffile.imwrite(path, stack[k], append=True, metadata=None)
    collector.finish()
    assert collector.error is None
    np.testing.assert_array_equal(np.stack(collector.frames), stack)


def test_a_file_that_never_completes_is_named_when_the_folder_is_quiet(tmp_path):
    stack = lattice_series(2, SHAPE, dose=2, seed=8).stack
    tifffile.imwrite(tmp_path / "frame_0.tif", stack[0])
    (tmp_path / "frame_1.tif").write_bytes(tif_bytes(stack[1])[:3000])
    tifffile.imwrite(tmp_path / "frame_2.tif", stack[1])
    frames = follow_folder(tmp_path, quiet_seconds=0.5, **FAST)
    np.testing.assert_array_equal(next(frames), stack[0])
    with pytest.raises(FileFormatError, match=r"frame_1\.tif' stopped changing but cannot be"):
        next(frames)


def test_a_frame_of_another_size_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "frame_0.tif", np.ones(SHAPE, np.float32))
    tifffile.imwrite(tmp_path / "frame_1.tif", np.ones((64, 64), np.float32))
    with pytest.raises(StackShapeError, match="frame_1.tif' holds frames of 64 x 64"):
        list(follow_folder(tmp_path, quiet_seconds=0.5, **FAST))


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"quiet_seconds": 0}, ParameterError, "quiet_seconds=0 must be"),
        ({"poll": -1}, ParameterError, "poll=-1 must be"),
        ({"settle": float("nan")}, ParameterError, "settle=nan must be"),
        ({"pattern": ""}, ParameterError, "pattern='' matches no file"),
    ],
)
def test_bad_options_are_refused_at_the_call(tmp_path, options, error, match):
    with pytest.raises(error, match=match):
        follow_folder(tmp_path, **options)


def test_a_missing_folder_is_refused_at_the_call(tmp_path):
    with pytest.raises(StackFileNotFoundError, match="no such folder or file to follow"):
        follow_folder(tmp_path / "nothing")


# feed ----------------------------------------------------------------------------------


class Counter:
    """The part of LiveRegistration that feed uses: it counts the frames added."""

    def __init__(self) -> None:
        self.n_frames = 0

    def add(self, frame: np.ndarray) -> None:
        assert frame.ndim == 2
        self.n_frames += 1

    def add_many(self, frames: np.ndarray) -> None:
        assert frames.ndim == 3
        self.n_frames += len(frames)


def test_feed_calls_back_every_n_frames_and_after_the_last():
    frame = np.zeros((4, 4))
    # Single frames, then a block of 5 passing two multiples of 3 (3 and 6), then 2 more.
    items = [frame, frame, np.zeros((5, 4, 4)), frame, frame]
    seen: list[int] = []
    live = feed(Counter(), items, callback=lambda live: seen.append(live.n_frames), every=3)
    assert live.n_frames == 9
    # One call after the block (its state is only complete at its end), one at 9, none
    # repeated at the end.
    assert seen == [7, 9]
    seen.clear()
    feed(Counter(), [frame] * 4, callback=lambda live: seen.append(live.n_frames), every=3)
    assert seen == [3, 4]


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"every": 0}, ParameterError, "every=0 must be a whole number"),
        ({"every": 2.5}, ParameterError, "every=2.5 must be a whole number"),
        ({"callback": "print"}, ParameterError, "callback='print' is not callable"),
    ],
)
def test_feed_refuses_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        feed(Counter(), [], **options)


def test_feed_refuses_an_item_that_is_not_frames():
    with pytest.raises(StackShapeError, match=r"feed got an item of shape \(4,\)"):
        feed(Counter(), [np.zeros(4)])


# daskreg watch -------------------------------------------------------------------------


def watch(folder: Path, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "watch", str(folder), "-o", str(out / "avg.tif"), "--settle", "0.1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_watch_equals_the_batch_registration_of_a_slowly_written_series(tmp_path):
    n_frames, band = 30, 8
    series = lattice_series(n_frames, SHAPE, dose=2, seed=20)
    stack = series.stack.astype(np.float32)
    np.save(tmp_path / "stack.npy", stack)
    folder, out = tmp_path / "frames", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    watcher = watch(folder, out, "--band", str(band), "--every", "10", "--quiet-seconds", "3")
    # The acquisition starts once the watch is ready (its first line), so that the watch
    # meets each file while it is being written, not after.
    assert watcher.stdout.readline().startswith("watching"), watcher.communicate()
    writer = subprocess.run(
        [sys.executable, "-c", WRITER, str(tmp_path / "stack.npy"), str(folder), "0.25"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert writer.returncode == 0, writer.stderr
    stdout, stderr = watcher.communicate(timeout=120)
    assert watcher.returncode == cli.EXIT_OK, stderr
    live_lines = [line for line in stdout.splitlines() if line.startswith("live")]
    assert len(live_lines) == 3, stdout
    assert hidden_leftovers(out) == []

    result = daskreg.load_result(out / "avg.result.zarr")
    image, description = read_average_tif(out / "avg.tif")
    assert "live" not in description
    # The frames written, read whole and in order: the same numbers as a live
    # registration fed them in this process (a half-read or misplaced frame changes its
    # pairs, hence every shift, by far more).
    live = daskreg.LiveRegistration(SHAPE, band=band)
    live.add_many(stack)
    np.testing.assert_allclose(result.shifts.values, live.finish().shifts.values, atol=1e-9)
    # The parameters the live registration used (its mask and cutoff chosen from the
    # frames), as the result records them.
    params = {k: v for k, v in description["params"].items() if k not in ("extra", "theta_degrees")}
    batch = daskreg.register(stack, **params)
    assert batch.params.band == band
    # The criterion: the batch registration of the same frames, to 1e-6 px.
    np.testing.assert_allclose(result.shifts.values, batch.shifts.values, atol=1e-6)
    np.testing.assert_array_equal(result.bad_frames.values, batch.bad_frames.values)
    np.testing.assert_allclose(image, batch.average.values, atol=1e-5)


def frames_folder(tmp_path: Path, n_frames: int, seed: int) -> tuple[np.ndarray, Path, Path]:
    """A low-dose series written one tif per frame into ``frames/``; ``out/`` beside it."""
    stack = lattice_series(n_frames, SHAPE, dose=2, seed=seed).stack.astype(np.float32)
    folder, out = tmp_path / "frames", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    for k, frame in enumerate(stack):
        tifffile.imwrite(folder / f"frame_{k}.tif", frame)
    return stack, folder, out


@pytest.fixture
def waiting_watch(tmp_path):
    """A watch that has registered 12 frames and waits for more."""
    stack, folder, out = frames_folder(tmp_path, 12, seed=21)
    process = watch(folder, out, "--band", "4", "--every", "4", "--quiet-seconds", "60")
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("live") and " 12 frames" in line:
            break
    else:
        pytest.fail(f"the watch ended early: {lines} {process.communicate()}")
    return process, out


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_a_stop_signal_writes_the_result_of_the_frames_received(waiting_watch, signum, status):
    process, out = waiting_watch
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    assert f"stopped by {signal.Signals(signum).name} after 12 frames" in stderr
    assert "output" in stdout
    assert hidden_leftovers(out) == []
    assert daskreg.load_result(out / "avg.result.zarr").shifts.shape == (12, 2)
    _, description = read_average_tif(out / "avg.tif")
    assert "live" not in description


def test_a_second_signal_leaves_a_complete_last_state(waiting_watch):
    process, out = waiting_watch
    process.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert hidden_leftovers(out) == []
    # Whichever the second signal interrupted: the running average of 12 frames, or the
    # final outputs, each complete.
    _, description = read_average_tif(out / "avg.tif")
    if description.get("live"):
        assert description["n_frames"] == 12
        # 12 frames, fewer than the warm-up's 16: no snapshot had its result yet.
        assert not (out / "avg.result.zarr").exists()
    else:
        assert daskreg.load_result(out / "avg.result.zarr").shifts.shape == (12, 2)


def test_the_result_so_far_is_written_while_it_waits(tmp_path):
    """The result store beside the running average, before the end: the batch result of
    the frames so far, what a LiveRegistration fed them finishes with."""
    stack, folder, out = frames_folder(tmp_path, 20, seed=22)
    process = watch(folder, out, "--band", "4", "--every", "4", "--quiet-seconds", "60")
    try:
        for line in process.stdout:
            if line.startswith("live") and " 20 frames" in line:
                break
        result = daskreg.load_result(out / "avg.result.zarr")
        _, description = read_average_tif(out / "avg.tif")
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert description["live"] and description["n_frames"] == 20
    # Snapshots every 4 frames; results from the end of the warm-up (16 frames) on: the
    # first then, the next when it costs under a tenth of the time since.
    n = result.shifts.shape[0]
    assert n in (16, 20)
    live = daskreg.LiveRegistration(SHAPE, band=4)
    live.add_many(stack[:n])
    np.testing.assert_allclose(result.shifts.values, live.finish().shifts.values, atol=1e-9)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing", "-o", "avg.tif"], "no such folder or file to follow"),
        (["frames", "-o", "avg.png"], "the average is written as TIFF"),
        (
            ["frames", "-o", "avg.tif", "--every", "0"],
            "argument --every: '0' is not a whole number above 0",
        ),
        (["frames", "-o", "avg.tif", "--quiet-seconds", "-1"], "'-1' is not a number above 0"),
        (["frames", "-o", "avg.tif", "--settle", "-1"], "--settle -1.0 must be a number"),
        (["frames", "-o", "avg.tif", "--frames", "0:4"], "unrecognized arguments: --frames"),
        (["frames", "-o", "avg.tif", "--num-peaks", "0"], "--num-peaks must be"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    (tmp_path / "frames").mkdir()
    done = subprocess.run(
        [*CLI, "watch", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == cli.EXIT_BAD_INPUT, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert sorted(os.listdir(tmp_path)) == ["frames"]


def test_watch_measures_the_pairs_on_a_named_scheduler(tmp_path, capsys):
    """--scheduler: each new frame's pairs run on that cluster (live-pairs tasks); the
    result is the one measured here."""
    distributed = pytest.importorskip("distributed")
    stack, folder, out = frames_folder(tmp_path, 20, seed=23)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        code = cli.main(
            ["watch", str(folder), "-o", str(out / "avg.tif"), "--band", "4", "--settle", "0.1",
             "--quiet-seconds", "1", "--scheduler", cluster.scheduler_address]
        )  # fmt: skip
        prefixes = client.run_on_scheduler(
            lambda dask_scheduler: sorted(dask_scheduler.task_prefixes)
        )
    assert code == cli.EXIT_OK, capsys.readouterr().err
    assert "live-pairs" in prefixes, prefixes
    live = daskreg.LiveRegistration(SHAPE, band=4)
    live.add_many(stack)
    result = daskreg.load_result(out / "avg.result.zarr")
    np.testing.assert_array_equal(result.shifts.values, live.finish().shifts.values)


# Appends frames to a Zarr v3 array as an acquisition would: the array is resized (its
# zarr.json written) before the new frames' chunk, with a pause between longer than
# --settle, so a reader trusting the shape would read fill values.
ZARR_WRITER = """
import sys, time
import numpy as np, zarr
stack = np.load(sys.argv[1])
path, per_chunk, pause = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
array = zarr.open_array(path, mode="r+")
for start in range(per_chunk, len(stack), per_chunk):
    block = stack[start : start + per_chunk]
    array.resize((start + len(block), *stack.shape[1:]))
    time.sleep(pause)
    array[start : start + len(block)] = block
    time.sleep(pause)
"""


@pytest.mark.parametrize("per_chunk", [1, 4])
def test_a_growing_zarr_array_is_followed_without_unwritten_frames(tmp_path, per_chunk):
    stack = lattice_series(16, SHAPE, dose=2, seed=24).stack.astype(np.float32)
    np.save(tmp_path / "stack.npy", stack)
    path = tmp_path / "growing.zarr"
    import zarr

    first = zarr.create_array(
        path, shape=(per_chunk, *SHAPE), chunks=(per_chunk, *SHAPE), dtype=np.float32,
        fill_value=0,
    )  # fmt: skip
    first[:] = stack[:per_chunk]
    collector = Collector(path, quiet_seconds=1.5)
    writer = subprocess.run(
        [sys.executable, "-c", ZARR_WRITER, str(tmp_path / "stack.npy"), str(path),
         str(per_chunk), "0.3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert writer.returncode == 0, writer.stderr
    collector.finish(timeout=30)
    assert collector.error is None, collector.error
    # Every frame, each once, in order: none read before its chunk was written.
    np.testing.assert_array_equal(np.stack(collector.frames), stack)
