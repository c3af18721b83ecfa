"""Several files as one stack: a folder, a glob pattern or a list of per-frame files.

Each file is opened here once, for its shape, dtype and calibration, which must agree with
the first file's. Its pixels are read later, in one dask task per file that opens the file
by its path, so the graph holds only strings and pickles to any worker process.
"""

from __future__ import annotations

import glob
import json
import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from daskreg.errors import (
    CalibrationError,
    FileFormatError,
    StackDtypeError,
    StackFileNotFoundError,
    StackShapeError,
)
from daskreg.io._assemble import assemble
from daskreg.io._chunks import ChunksSpec, frame_chunks
from daskreg.io._readers import FILE_EXTENSIONS, read_path
from daskreg.io._warn import warn_caller
from daskreg.io._zarr import is_zarr_store
from daskreg.io.average_tif import DESCRIPTION_FORMAT

__all__ = ["expand_path", "natural_key", "open_files"]

_GLOB_CHARACTERS = ("*", "?", "[")
# Extensions that are one format; a folder mixing two formats is ambiguous (a TIA .emi and
# its .ser files hold the same frames twice).
_FORMAT_FAMILY = {".tiff": ".tif", ".dm4": ".dm3"}
# Pixel sizes one microscope writes for one series agree to float rounding (float32 in the
# file, metres to nm here: ~1e-7); a change of magnification differs by percents.
_PIXEL_SIZE_RTOL = 1e-4
_DTYPE_KINDS = {"u": "integer", "i": "integer", "f": "floating-point"}
_LISTED_FILES = 3


def natural_key(path: str | Path) -> tuple[Any, ...]:
    """Sort key that orders numbers in names by value: ``frame_2`` before ``frame_10``.

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    tuple
        Text runs (case-folded) and digit runs (as int) alternate, so keys of any two
        paths compare item by item; the path itself breaks ties.

    Examples
    --------
    >>> sorted(["f10.tif", "f2.tif", "F1.tif"], key=natural_key)
    ['F1.tif', 'f2.tif', 'f10.tif']
    """
    text = str(path)
    # re.split with a group puts text at even and digits at odd positions, always.
    runs = re.split(r"(\d+)", text)
    return (*(int(run) if i % 2 else run.casefold() for i, run in enumerate(runs)), text)


def expand_path(path: Path) -> list[Path] | None:
    """The files a folder or a glob pattern stands for.

    Parameters
    ----------
    path : pathlib.Path
        Absolute path given to :func:`~daskreg.io.open_stack`.

    Returns
    -------
    list of pathlib.Path or None
        A folder's stack files or the pattern's matches in natural order
        (:func:`natural_key`); ``None`` when ``path`` is one file or Zarr store (or does
        not exist and is no pattern; the reader then says so).

    Raises
    ------
    FileFormatError
        The folder holds no stack file, or files of more than one format.
    StackFileNotFoundError
        The pattern matches nothing.
    """
    if path.exists():
        if path.is_dir() and not is_zarr_store(path):
            return _folder_files(path)
        return None
    if any(c in str(path) for c in _GLOB_CHARACTERS):
        return _pattern_files(path)
    return None


def _folder_files(folder: Path) -> list[Path]:
    # Hidden files are never frames (macOS writes ._name.tif resource forks beside them).
    visible = [p for p in folder.iterdir() if not p.name.startswith(".")]
    files = [p for p in visible if p.is_file() and p.suffix.lower() in FILE_EXTENSIONS]
    if not files:
        names = ", ".join(sorted(p.name for p in visible)[:5]) or "nothing"
        raise FileFormatError(
            f"{str(folder)!r} is a directory but not a Zarr store (no zarr.json, .zarray or "
            f".zgroup in it) and holds no stack file ({', '.join(FILE_EXTENSIONS)}); it "
            f"holds {names}. Pass a stack file, a folder of per-frame files, a glob "
            "pattern such as 'folder/*.tif', or a store written by daskreg.io.ingest"
        )
    families: dict[str, int] = {}
    for p in files:
        family = _FORMAT_FAMILY.get(p.suffix.lower(), p.suffix.lower())
        families[family] = families.get(family, 0) + 1
    if len(families) > 1:
        counts = ", ".join(f"{n} {family}" for family, n in sorted(families.items()))
        example = max(families, key=families.__getitem__)
        raise FileFormatError(
            f"{str(folder)!r} holds stack files of several formats ({counts}), so which "
            f"are the frames is ambiguous; pass a glob pattern naming one, e.g. "
            f"{str(folder / ('*' + example))!r}"
        )
    return sorted(files, key=natural_key)


def _pattern_files(pattern: Path) -> list[Path]:
    matches = [Path(p) for p in glob.glob(str(pattern), recursive=True)]
    files = [p for p in matches if p.is_file() or is_zarr_store(p)]
    if not files:
        raise StackFileNotFoundError(
            f"no file matches the pattern {str(pattern)!r}"
            + (f" ({len(matches)} folder(s) do)" if matches else "")
            + "; check the folder and the pattern (quote it on the command line, e.g. "
            "'frames/*.tif', so that daskreg rather than the shell expands it)"
        )
    return sorted(files, key=natural_key)


def check_file_order(files: Sequence[Path]) -> None:
    """Warn when a list of files looks sorted as text, which puts ``f10`` before ``f2``.

    Parameters
    ----------
    files : sequence of pathlib.Path
        Files in the order the caller gave them, which is kept.
    """
    text_order = sorted(files, key=str)
    natural_order = sorted(files, key=natural_key)
    if list(files) == text_order and text_order != natural_order:
        moved = next(a for a, b in zip(text_order, natural_order, strict=True) if a != b)
        warn_caller(
            f"the {len(files)} files are in text order, which puts {moved.name!r} before "
            f"files with smaller numbers; frames are taken in the order given. For the "
            "numeric order pass sorted(paths, key=daskreg.io.natural_key), or the folder "
            "or a glob pattern, which are sorted that way"
        )


def open_files(
    files: Sequence[Path],
    frame_axis: int | None,
    chunks: ChunksSpec,
    signal: int | str | None,
    *,
    source: str,
    allow_external: bool = False,
) -> xr.DataArray:
    """Open files of frames as one lazy stack, calibrated as the first file.

    Parameters
    ----------
    files : sequence of pathlib.Path
        Absolute paths, in frame order; each holds one image or a (frame, y, x) stack.
    frame_axis, chunks, signal
        As for :func:`~daskreg.io.open_stack`; ``frame_axis`` and ``signal`` apply to
        every file, ``chunks`` to the whole stack.
    source : str
        What the user passed (folder, pattern or list), for the ``source`` attribute.
    allow_external : bool
        As for :func:`~daskreg.io.open_stack`; checked for each file here, not again
        when its pixels are read.

    Returns
    -------
    xarray.DataArray
        Dims ``("frame", "y", "x")``; ``frame`` is the index over all files; ``y``, ``x``
        and the attrs are the first file's, with ``source`` and ``n_files``. A single
        file is read as that file (as :func:`~daskreg.io.open_stack` reads a path).

    Raises
    ------
    StackShapeError
        A file holds frames of another size than the first file, or several series.
    StackDtypeError
        A file holds integers and another floats.
    CalibrationError
        A file has another pixel size or unit than the first file.
    """
    if len(files) == 1:
        return assemble(
            read_path(files[0], signal, allow_external=allow_external), frame_axis, chunks
        )
    first = _open_file(files[0], frame_axis, signal, allow_external=allow_external)
    # The first file's warnings (signal chosen, calibration assumed) stand for all files;
    # repeating them for each of hundreds of files would bury them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rest = [
            _open_file(path, frame_axis, signal, allow_external=allow_external)
            for path in files[1:]
        ]
    for path, stack in zip(files[1:], rest, strict=True):
        _check_agrees(stack, path, first, files[0])
    stacks = [first, *rest]
    dtype = np.result_type(*(stack.dtype for stack in stacks))
    counts = tuple(int(stack.sizes["frame"]) for stack in stacks)
    frame_shape = tuple(int(n) for n in first.shape[-2:])
    stamps = [(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files]
    # Deterministic (checkpoints compare graph names) and new whenever a file changes.
    token = tokenize(stamps, frame_axis, signal, dtype.str)
    paths = np.empty(len(files), dtype=object)
    paths[:] = [str(p) for p in files]
    data = da.from_array(paths, chunks=1, name=f"daskreg-files-{token}").map_blocks(
        _read_file,
        frame_axis=frame_axis,
        signal=signal,
        pixel_type=dtype,
        dtype=dtype,
        new_axis=[1, 2],
        chunks=(counts, (frame_shape[0],), (frame_shape[1],)),
        meta=np.empty((0, 0, 0), dtype=dtype),
        name=f"daskreg-read-files-{token}",
    )
    dims = ("frame", "y", "x")
    data = data.rechunk(frame_chunks(dims, data.shape, dtype.itemsize, chunks))
    coords = {
        "frame": ("frame", np.arange(sum(counts))),
        "y": first["y"].variable,
        "x": first["x"].variable,
    }
    attrs = {**first.attrs, "source": source, "n_files": len(files)}
    return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs)


def describe_files(files: Sequence[Path]) -> str:
    """A short label for a list of files: all of them, or the first and last."""
    if len(files) <= _LISTED_FILES:
        return ", ".join(str(p) for p in files)
    return f"{files[0]}, ..., {files[-1]} ({len(files)} files)"


def _open_file(
    path: Path, frame_axis: int | None, signal: int | str | None, *, allow_external: bool
) -> xr.DataArray:
    stack = assemble(read_path(path, signal, allow_external=allow_external), frame_axis, None)
    if _is_daskreg_average(stack):
        # An average written into the folder of its frames (register frames -o frames/avg.tif)
        # is found by the next run; uncropped, it even has the frames' size.
        raise FileFormatError(
            f"{str(path)!r} is an average written by daskreg, not a frame; move it out of "
            "the folder, or pass a glob pattern or list that leaves it out"
        )
    if stack.ndim != 3:
        raise StackShapeError(
            f"{str(path)!r} holds several series (dims {stack.dims}, shape {stack.shape}); "
            "each file of a stack must hold one image or one (frame, y, x) stack. Pick one "
            "series with signal=<index or title> (--signal on the command line)"
        )
    return stack


def _is_daskreg_average(stack: xr.DataArray) -> bool:
    info = json.loads(stack.attrs["original_metadata"]).get("imagej", {}).get("Info")
    if not isinstance(info, str):
        return False
    try:
        return json.loads(info).get("format") == DESCRIPTION_FORMAT
    except (json.JSONDecodeError, AttributeError):
        return False


def _check_agrees(stack: xr.DataArray, path: Path, first: xr.DataArray, first_path: Path) -> None:
    where = f"{str(path)!r} and the first file {str(first_path)!r}"
    shape, first_shape = stack.shape[-2:], first.shape[-2:]
    if shape != first_shape:
        raise StackShapeError(
            f"{str(path)!r} holds frames of {shape[0]} x {shape[1]} pixels, but the first "
            f"file {str(first_path)!r} holds {first_shape[0]} x {first_shape[1]}; the "
            f"files of one stack must hold frames of one size. Remove {path.name!r} from "
            f"the folder or list, or crop it to {first_shape[0]} x {first_shape[1]}"
        )
    kind, first_kind = (_DTYPE_KINDS.get(np.dtype(s.dtype).kind) for s in (stack, first))
    if kind != first_kind:
        raise StackDtypeError(
            f"{where} hold different kinds of pixel values ({stack.dtype} and "
            f"{first.dtype}); the files of one stack are one series exported one way. "
            f"Export every file as {first.dtype}, or remove {path.name!r}"
        )
    unit, first_unit = stack.attrs["unit"], first.attrs["unit"]
    pixel, first_pixel = stack.attrs["pixel_size"], first.attrs["pixel_size"]
    if unit != first_unit or not all(
        math.isclose(a, b, rel_tol=_PIXEL_SIZE_RTOL)
        for a, b in zip(pixel, first_pixel, strict=True)
    ):
        raise CalibrationError(
            f"{str(path)!r} has pixel size {_pixel_text(pixel, unit)}, but the first file "
            f"{str(first_path)!r} has {_pixel_text(first_pixel, first_unit)}; the frames of "
            "one stack must share one calibration (a different magnification is another "
            f"series). Remove {path.name!r} from the folder or list, or if its calibration "
            "is wrong, re-export it with the others' pixel size"
        )


def _pixel_text(pixel: Sequence[float], unit: str) -> str:
    return f"({pixel[0]:.6g}, {pixel[1]:.6g}) {unit} (y, x)"


def _read_file(
    path_block: np.ndarray,
    *,
    frame_axis: int | None,
    signal: int | str | None,
    pixel_type: np.dtype,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """The frames of one file: the dask task of :func:`open_files`."""
    path = Path(path_block.item())
    expected = tuple(block_info[None]["chunk-shape"]) if block_info else None
    with warnings.catch_warnings():
        # Reported when the stack was opened.
        warnings.simplefilter("ignore")
        # Checked for data outside its folder when the stack was opened.
        stack = _open_file(path, frame_axis, signal, allow_external=True)
    if expected is not None and stack.shape != expected:
        raise StackShapeError(
            f"{str(path)!r} changed after the stack was opened: it now holds "
            f"(frame, y, x) = {stack.shape}, not {expected}; open the stack again"
        )
    # In this task's thread: a nested compute on a cluster's only worker thread would wait
    # for itself.
    return np.asarray(stack.data.compute(scheduler="synchronous"), dtype=pixel_type)
