"""What the command line prints: exit codes, the summaries of stacks and results, warnings."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from daskreg.cli.words import cli_words
from daskreg.errors import RegistrationWarning
from daskreg.result import RegistrationResult

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "MIB",
    "W",
    "describe",
    "live_line",
    "local_progress",
    "one_line",
    "one_line_warnings",
    "output_lines",
    "print_lines",
    "summary",
]

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
MIB = 2**20
#: Width of the label column of the printed summaries.
W = 13
# Bad frames listed one by one in the summary; the rest are counted (all are in the result).
_MAX_LISTED = 8


def describe(path: Path, stack: Any, label: str = "input") -> list[str]:
    """Lines naming a stack's shape, dtype, size, calibration and chunks."""
    dims = ", ".join(str(d) for d in stack.dims)
    shape = " x ".join(str(n) for n in stack.shape)
    chunks = tuple(int(c[0]) for c in stack.chunks) if stack.chunks else stack.shape
    n_chunks = int(np.prod([len(c) for c in stack.chunks])) if stack.chunks else 1
    chunk_bytes = int(np.prod(chunks)) * stack.dtype.itemsize
    pixel = stack.attrs.get("pixel_size")
    unit = stack.attrs.get("unit", "px")
    calibration = (
        f"{pixel[0]:g} x {pixel[1]:g} {unit}/px (y x)"
        if pixel is not None and unit != "px"
        else "none: shifts and sizes in pixels"
    )
    frame_unit = stack["frame"].attrs.get("units")
    if frame_unit:
        calibration += f"; frames in {frame_unit}"
    lines = [
        f"{label:<{W}}{path}",
        f"{'stack':<{W}}{shape} ({dims}), {stack.dtype}, {stack.nbytes / MIB:.1f} MiB",
        f"{'calibration':<{W}}{calibration}",
        f"{'chunks':<{W}}{chunks}: {n_chunks} chunk(s) of {chunk_bytes / MIB:.1f} MiB",
    ]
    if stack.attrs.get("calibration_note"):
        lines.append(f"{'note':<{W}}{stack.attrs['calibration_note']}")
    return lines


def summary(
    result: RegistrationResult,
    outputs: Mapping[str, Path],
    seconds: float,
    replaced: Collection[str] = (),
) -> list[str]:
    """Lines summarising a registration, its outputs (``replaced`` marked) and its time."""
    s = result.summary()
    listed = [f"{k} ({why})" for k, why in s.bad_frames.items()]
    if len(listed) > _MAX_LISTED:
        listed = [*listed[:_MAX_LISTED], f"... {len(listed) - _MAX_LISTED} more in the result"]
    if s.outside_range:
        start, stop = s.frame_range
        listed.append(f"{len(s.outside_range)} outside --frames {start}:{stop}")
    threshold = f", threshold {s.threshold:.3g} px" if s.threshold is not None else ""
    if s.hops_corrected:
        threshold += f", {s.hops_corrected} hops corrected"
    if not s.reliable:
        threshold += "; UNRELIABLE: the pairs disagree too much (see the warning)"
    timings = ", ".join(f"{k} {v:.1f}" for k, v in s.timings.items())
    crop = s.crop
    resumed = (
        [f"{'resumed':<{W}}{s.resumed[0]} of {s.resumed[1]} pair blocks reused from the checkpoint"]
        if s.resumed
        else []
    )
    return [
        f"{'frames':<{W}}{s.n_used} of {s.n_frames} used",
        f"{'bad frames':<{W}}{'; '.join(listed) if listed else 'none'}",
        f"{'outliers':<{W}}{s.n_outliers} of {s.n_pairs} pairs "
        f"({s.outlier_test or 'no test'}{threshold})",
        f"{'shift range':<{W}}dy {s.shift_min[0]:+.2f} to {s.shift_max[0]:+.2f} px, "
        f"dx {s.shift_min[1]:+.2f} to {s.shift_max[1]:+.2f} px (median uncertainty "
        f"dy {s.uncertainty[0]:.3f} px, dx {s.uncertainty[1]:.3f} px)",
        f"{'crop':<{W}}"
        + (
            f"y {crop.ymin}:{crop.ymax}, x {crop.xmin}:{crop.xmax}"
            if s.cropped
            else "none (--no-crop); coverage map in the result"
        ),
        *resumed,
        *output_lines(outputs, replaced),
        f"{'time':<{W}}{seconds:.1f} s" + (f" ({timings} s)" if timings else ""),
    ]


def live_line(summary: Mapping[str, Any], warmup: int) -> str:
    """One line of a live registration's state: frames, drift, rate, sigma, bad frames.

    ``summary`` is :meth:`daskreg.live.LiveRegistration.summary`; nothing is measured
    before ``warmup`` frames have come (the parameters are chosen from them).
    """
    if summary["frames"] < warmup:
        return (
            f"{'live':<{W}}{summary['frames']} frames; the parameters are chosen from the "
            f"first {warmup}, then the frames are registered"
        )
    (dy, dx), (sy, sx) = summary["next"], summary["next_sigma"]
    return (
        f"{'live':<{W}}{summary['frames']} frames ({summary['rate']:.1f}/s); drift "
        f"{summary['drift']:.2f} px, {summary['velocity']:.3f} px/frame; sigma "
        f"{summary['sigma']:.3f} px; {summary['bad_frames']} bad; next dy {dy:+.2f} "
        f"+- {sy:.2f}, dx {dx:+.2f} +- {sx:.2f} px"
    )


def output_lines(outputs: Mapping[str, Path], replaced: Collection[str] = ()) -> list[str]:
    """One line per output, ``(replaced)`` after those that existed (``--overwrite``)."""
    width = max(len(kind) for kind in outputs)
    return [
        f"{'output' if i == 0 else '':<{W}}{kind:<{width}}  {path}"
        + (" (replaced)" if kind in replaced else "")
        for i, (kind, path) in enumerate(outputs.items())
    ]


@contextlib.contextmanager
def local_progress(enabled: bool | None) -> Iterator[None]:
    """A progress bar on stderr for work on the local Dask scheduler."""
    if enabled or (enabled is None and sys.stderr.isatty()):
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr):
            yield
    else:
        yield


def print_lines(lines: Sequence[str]) -> None:
    """Print ``lines`` to stdout at once (flushed, so they interleave with stderr)."""
    print("\n".join(lines), flush=True)


def one_line(text: object) -> str:
    """``text`` on one line, its runs of whitespace made single spaces."""
    return " ".join(str(text).split())


@contextlib.contextmanager
def one_line_warnings(parser: argparse.ArgumentParser) -> Iterator[None]:
    """Show each warning as one line on stderr, naming the flags of ``parser``."""

    def show(message: Any, category: type, *_: Any, **__: Any) -> None:
        label = "warning" if issubclass(category, RegistrationWarning) else category.__name__
        text = cli_words(one_line(message), parser)
        print(f"daskreg: {label}: {text}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
