"""Bad input through the public API and the command line (issue 8).

Each row is one mistake a user makes; the call must raise the specific DaskregError
subclass, and its message must say how to fix it, not only what went wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import daskreg
from daskreg.errors import (
    ConstantFrameError,
    DaskregError,
    FileFormatError,
    FrameAxisError,
    NonFiniteError,
    OutputPathError,
    ParameterError,
    StackDtypeError,
    StackFileNotFoundError,
    StackShapeError,
    TooFewFramesError,
)
from daskreg.synthetic import lattice_series

from .test_cli import FAST, python_keywords, run, write_stack


@dataclass(frozen=True)
class Inputs:
    """What the rows of the table spoil: a good stack, a result, a scratch folder."""

    stack: np.ndarray
    result: daskreg.RegistrationResult
    folder: Path

    def with_frame(self, index: int, value: float) -> np.ndarray:
        spoiled = self.stack.copy()
        spoiled[index] = value
        return spoiled

    def file(self, name: str, content: bytes = b"") -> Path:
        path = self.folder / name
        path.write_bytes(content)
        return path

    def truncated_tif(self) -> Path:
        path = write_stack(self.folder / "cut.tif", self.stack)
        content = path.read_bytes()
        return self.file("cut.tif", content[: len(content) // 2])


@pytest.fixture(scope="module")
def good():
    series = lattice_series(6, (64, 64), dose=100, seed=2)
    return series.stack, daskreg.register(series.stack, window_radius=4)


@pytest.fixture
def inputs(good, tmp_path: Path) -> Inputs:
    stack, result = good
    return Inputs(stack, result, tmp_path)


def _row(call: Callable[[Inputs], Any], error: type[DaskregError], fix: str, name: str) -> Any:
    return pytest.param(call, error, fix, id=name)


BAD_INPUTS = [
    _row(lambda x: daskreg.register(np.zeros(10)), StackShapeError,
         r"pass a single image \(y, x\), a stack", "1-D"),
    _row(lambda x: daskreg.register(x.stack[0]), TooFewFramesError,
         r"open_stack\(source, frame_axis=-1\)", "2-D-single-image"),
    _row(lambda x: daskreg.open_stack(np.zeros((2, 2, 2, 3, 16, 16))), StackShapeError,
         r"pass a single image", "6-D"),
    _row(lambda x: daskreg.register_series(np.zeros((2, 2, 3, 16, 16)), engine="numpy"),
         ParameterError, r"Use engine='dask'", "5-D-without-names-on-numpy-engine"),
    _row(lambda x: daskreg.register(np.zeros((2, 2, 3, 16, 16))), ParameterError,
         r"Use daskreg.register_series\(stack, ...\)", "5-D-to-register"),
    _row(lambda x: daskreg.register(x.stack, treshold=2), ParameterError,
         r"did you mean 'threshold'", "misspelt-parameter"),
    _row(lambda x: daskreg.register(np.moveaxis(x.stack, 0, -1)), FrameAxisError,
         r"open_stack\(array, frame_axis=-1\)", "frame-axis-ambiguous"),
    _row(lambda x: daskreg.register(x.stack[:2]), TooFewFramesError,
         r"Pass a longer series", "two-frames"),
    _row(lambda x: daskreg.register(x.stack.astype(str)), StackDtypeError,
         r"astype\('float32'\)", "strings"),
    _row(lambda x: daskreg.Registration(x.stack.astype(object)), StackDtypeError,
         r"astype\('float32'\)", "object"),
    _row(lambda x: daskreg.open_stack(x.stack.astype(np.complex64)), StackDtypeError,
         r"np\.abs\(\.\.\.\) or \.real", "complex"),
    _row(lambda x: daskreg.register(x.with_frame(2, np.nan), detect_bad_frames=False),
         NonFiniteError, r"pass detect_bad_frames=True", "nan-frame-kept"),
    _row(lambda x: daskreg.register(x.with_frame(4, np.inf), detect_bad_frames=False),
         NonFiniteError, r"pass detect_bad_frames=True", "inf-frame-kept"),
    _row(lambda x: daskreg.register(np.full_like(x.stack, np.nan)), NonFiniteError,
         r"np\.nan_to_num", "all-nan"),
    _row(lambda x: daskreg.register(np.ones_like(x.stack)), ConstantFrameError,
         r"right file and signal were read \(signal=", "all-constant"),
    _row(lambda x: daskreg.register(x.stack, window_radius=40), StackShapeError,
         r"pass a smaller window_radius \(at most 31\)", "fit-window-larger-than-frame"),
    _row(lambda x: daskreg.register(x.stack[:, :3, :3], find_maxima="pixel"),
         StackShapeError, r"frame_axis=", "frames-of-3x3"),
    _row(lambda x: daskreg.register(x.stack, mask="bandpass", n=1000), ParameterError,
         r"use a smaller n \(at most 32\)", "mask-keeps-no-frequency"),
    _row(lambda x: daskreg.register(x.stack, band=6), ParameterError,
         r"pass band=None to correlate all pairs, or a band of at most 5", "band-wider"),
    _row(lambda x: daskreg.register(x.stack, band=0), ParameterError,
         r"band=None \(correlate all pairs", "band-zero"),
    _row(lambda x: daskreg.register(x.stack, frames=(2, 40)), ParameterError,
         r"within \(0, 6\)", "frames-past-the-end"),
    _row(lambda x: daskreg.Registration(x.stack).set_bad_frames([8]), ParameterError,
         r"indices 0 to 5", "bad-frame-not-in-stack"),
    _row(lambda x: daskreg.register(x.stack, num_peaks=0), ParameterError,
         r"num_peaks=5, the default", "num-peaks-zero"),
    _row(lambda x: daskreg.register(x.stack, threshold=-1.0), ParameterError,
         r"threshold=None \(chosen from the data", "negative-threshold"),
    _row(lambda x: daskreg.Registration(x.stack).set_mask("bandpas"), ParameterError,
         r"'bandpass'.*pick one of those", "unknown-mask"),
    _row(lambda x: daskreg.open_stack(x.truncated_tif()), FileFormatError,
         r"truncated.*copy it again", "truncated-tif"),
    _row(lambda x: daskreg.open_stack(x.file("noise.dm4", bytes(range(256)) * 8)),
         FileFormatError, r"re-export it", "unreadable-dm4"),
    _row(lambda x: daskreg.register(x.folder / "absent.tif"), StackFileNotFoundError,
         r"check the path", "missing-file"),
    _row(lambda x: x.result.save_tif(x.folder / "absent" / "avg.tif"), OutputPathError,
         r"create it first", "output-folder-missing"),
    _row(lambda x: daskreg.save_result(x.result, x.file("notes") / "run.zarr"),
         OutputPathError, r"inside an existing folder", "output-parent-is-a-file"),
    _row(lambda x: x.result.save(x.folder / "avg.png"), FileFormatError,
         r"not one of \.tif", "output-extension"),
    _row(lambda x: daskreg.apply_shifts(x.stack, x.result.shifts.values[:3]), StackShapeError,
         r"pass the channel recorded with the registered series", "apply-wrong-frame-count"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "fix"), BAD_INPUTS)
def test_bad_input_raises_the_specific_error_with_the_fix(
    inputs: Inputs, call: Callable[[Inputs], Any], error: type[DaskregError], fix: str
):
    with pytest.raises(error, match=fix) as caught:
        call(inputs)
    assert type(caught.value) is error
    assert "\n" not in str(caught.value)


# Bad input of the command line, each given as a file or a flag (tests/test_cli.py has the
# missing file, unknown extension, single image, complex data and usage errors).
BAD_RUNS = [
    pytest.param(lambda x: [x.truncated_tif()], "truncated", id="truncated-tif"),
    pytest.param(lambda x: [x.file("noise.dm4", bytes(range(256)) * 8)], "re-export",
                 id="unreadable-dm4"),
    pytest.param(lambda x: [_frames_last_store(x)], "pass --frame-axis -1", id="frames-last-zarr"),
    pytest.param(lambda x: [write_stack(x.folder / "nan.tif", np.full_like(x.stack, np.nan))],
                 "NaN", id="all-nan"),
    pytest.param(lambda x: [write_stack(x.folder / "s.tif", x.with_frame(1, np.nan)),
                            "--keep-bad-frames"], "leave out --keep-bad-frames to exclude them",
                 id="nan-frame-kept"),
    pytest.param(lambda x: [write_stack(x.folder / "s.tif", x.stack), "--window-radius", "40"],
                 "smaller --window-radius (at most 31)", id="fit-window-larger-than-frame"),
    pytest.param(lambda x: [write_stack(x.folder / "s.tif", x.stack), "--band", "9"],
                 "leave out --band to correlate all pairs", id="band-wider"),
    pytest.param(lambda x: [write_stack(x.folder / "s.tif", x.stack), "-o",
                            x.file("notes") / "avg.tif"], "inside an existing folder",
                 id="output-parent-is-a-file"),
]  # fmt: skip


def _frames_last_store(x: Inputs) -> Path:
    path = x.folder / "frames_last.zarr"
    zarr.create_array(path, data=np.moveaxis(x.stack, 0, -1))
    return path


@pytest.mark.parametrize(("make", "message"), BAD_RUNS)
def test_bad_input_on_the_command_line_exits_2_with_one_line(
    inputs: Inputs, make: Callable[[Inputs], list], message: str
):
    args = make(inputs)
    out = inputs.folder / "out"
    out.mkdir()
    if "-o" not in args:
        args += ["-o", "out/avg.tif"]
    proc = run(inputs.folder, "register", *args, *FAST)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    # The fix is named in flags, as typed on the command line, not as Python keywords.
    assert not python_keywords(lines[0]), lines[0]
    # Errors found by the analysis come after the pairs were measured; the checkpoint that
    # run started goes too.
    assert [p.name for p in out.iterdir()] == []
