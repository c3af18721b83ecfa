"""The ``daskreg`` argument parser: its subcommands, their flags and the types of their values."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from daskreg._version import __version__
from daskreg.cli import commands
from daskreg.cli.options import PARAM_FLAGS, signal_choice
from daskreg.cli.outputs import CHECKPOINT_SUFFIX, RESULT_SUFFIX
from daskreg.cli.text import EXIT_BAD_INPUT

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a number of ``kind`` above 0."""
    what = "a whole number" if kind is int else "a number"

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} above 0")
        return value

    return convert


def _add_outputs(parser: argparse.ArgumentParser, result_help: str) -> None:
    """The average (``-o``) and the full result (``--save-result``/``--no-result``)."""
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT.tif", help="the average"
    )
    parser.add_argument("--save-result", type=Path, metavar="PATH", help=result_help)
    parser.add_argument("--no-result", action="store_true", help="do not write the full result")


def _add_input(parser: argparse.ArgumentParser, name: str = "input") -> None:
    parser.add_argument(name, type=Path, help="stack file or Zarr store")
    parser.add_argument("--frame-axis", type=int, help="axis holding the frames, e.g. -1")
    parser.add_argument(
        "--signal",
        type=signal_choice,
        metavar="N|TITLE",
        help="signal index or title, for files with several signals; for one signal with "
        "several series (an ImageJ hyperstack's channels, a 4-D store), the series index",
    )
    parser.add_argument(
        "--allow-external-files",
        dest="allow_external",
        action="store_true",
        help="read data the input points to outside its folder (HDF5 external links or "
        "storage, OME-TIFF parts, Zarr symlinks); refused by default",
    )


def _add_params(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group("registration parameters (see register)")
    for name, options in PARAM_FLAGS:
        if name not in exclude:
            group.add_argument(f"--{name.replace('_', '-')}", dest=name, **options)
    group.add_argument(
        "--no-crop", dest="crop", action="store_const", const=False, help="keep the full frame"
    )
    group.add_argument(
        "--no-refine",
        dest="refine",
        action="store_const",
        const=False,
        help="keep the pair solve's shifts (no refinement against the average)",
    )
    group.add_argument(
        "--keep-bad-frames",
        dest="detect_bad_frames",
        action="store_const",
        const=False,
        help="do not leave out NaN/blank/weak frames automatically",
    )
    group.add_argument(
        "--config",
        type=Path,
        metavar="TOML",
        help='parameters as top-level keys, e.g. mask = "hann"; flags given win',
    )


def _add_execution(parser: argparse.ArgumentParser) -> None:
    # dest: the keyword of daskreg.register each flag sets (also how hints name them).
    group = parser.add_argument_group("execution (see register)")
    group.add_argument(
        "--engine",
        choices=("auto", "numpy", "dask"),
        help="numpy: in this process, in memory; dask: task graph, out of core (default auto)",
    )
    group.add_argument(
        "--scheduler",
        help="tcp://host:port of a running Dask scheduler, or threads|processes|synchronous "
        "for a local scheduler without a cluster (default: a local cluster)",
    )
    group.add_argument(
        "--scheduler-file",
        metavar="PATH",
        help="the file a running Dask scheduler wrote (dask scheduler --scheduler-file PATH, "
        "dask-mpi): connect to it, as batch jobs do",
    )
    group.add_argument(
        "--workers", dest="n_workers", type=int, help="workers of the local cluster, >= 1"
    )
    group.add_argument("--memory-limit", help="memory per worker of the local cluster, e.g. 4GiB")
    group.add_argument("--chunks", type=int, help="frames per Dask chunk")
    group.add_argument("--temp-dir", help="folder for spectra spilled to disk")
    _add_progress(
        group,
        "show progress, and the dashboard link on Dask (default: when the terminal is interactive)",
    )


def _add_progress(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    text: str = "show a progress bar (default: when the terminal is interactive)",
) -> None:
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help=text
    )


def _add_overwrite(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=text)


def build_parser() -> argparse.ArgumentParser:
    """The ``daskreg`` argument parser with all its subcommands.

    Returns
    -------
    argparse.ArgumentParser
        Parsed arguments carry ``handler`` (the function running the subcommand) and
        ``command_parser`` (the subcommand's parser, whose flags name the fixes in
        messages).
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    parser = _Parser(
        prog="daskreg",
        description="Rigid registration of atomic-resolution STEM image series.",
        epilog="Exit codes: 0 done, 2 bad input, 1 other failure. Start with: daskreg demo",
    )
    parser.add_argument("--version", action="version", version=f"daskreg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(handler=handler, command_parser=p)
        return p

    p = command("register", commands.register, "register a stack and write its average and result")
    _add_input(p)
    _add_outputs(p, f"full result, .zarr or .nc (default: <OUT stem>{RESULT_SUFFIX} beside OUT)")
    p.add_argument(
        "--save-stack",
        type=Path,
        metavar="PATH.zarr",
        help="every frame aligned (NaN for unused frames), a new Zarr store",
    )
    p.add_argument("--report", type=Path, metavar="PDF", help="the PDF report")
    _add_overwrite(p, "replace existing outputs (the summary says which were replaced)")
    group = p.add_argument_group("checkpoint and resume")
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run (Ctrl-C, killed job, lost cluster): reuse the pair "
        "blocks saved in its checkpoint and compute only the missing ones; the result is that "
        "of an uninterrupted run. Refused if the input, --chunks or a measuring parameter "
        "changed. Without a checkpoint yet, start one (so job scripts can always pass it)",
    )
    group.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH.zarr",
        help=f"where pair blocks are saved as they finish (default: <OUT stem>"
        f"{CHECKPOINT_SUFFIX} beside OUT; every worker must see it); removed once every "
        "output is written. An existing one is only used with --resume",
    )
    group.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep the checkpoint after success, to analyse again with --resume and other "
        "outlier or averaging parameters without measuring again",
    )
    _add_params(p)
    _add_execution(p)

    p = command(
        "watch",
        commands.watch,
        "register the frames an acquisition writes into a folder as they arrive; write the "
        "running average every few frames and the result at the end (quiet folder or Ctrl-C)",
    )
    p.add_argument(
        "folder",
        type=Path,
        help="folder the acquisition writes one file per frame into, or one multi-page TIFF "
        "it appends pages to",
    )
    _add_outputs(p, f"full result at the end, .zarr or .nc (default: <OUT stem>{RESULT_SUFFIX})")
    p.add_argument(
        "--pattern", default="*.tif", help="glob pattern of the frame files (default *.tif)"
    )
    p.add_argument(
        "--every",
        type=_positive(int),
        default=10,
        metavar="N",
        help="write the running average and print a summary line every N frames (default "
        "10); the result of the frames so far is written with it once the warm-up is over, "
        "as often as that takes at most a tenth of the time",
    )
    p.add_argument(
        "--quiet-seconds",
        type=_positive(float),
        default=60.0,
        metavar="T",
        help="finish when no frame arrived and no file changed for T seconds (default 60)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=0.5,
        metavar="S",
        help="a file is read once its size has not changed for S seconds and it parses "
        "completely (default 0.5)",
    )
    _add_overwrite(p, "replace existing outputs")
    group = p.add_argument_group("a Dask cluster for the pairs of each new frame (default: here)")
    group.add_argument("--scheduler", help="tcp://host:port of a running Dask scheduler")
    group.add_argument(
        "--scheduler-file", metavar="PATH", help="the file a running Dask scheduler wrote"
    )
    _add_params(p, exclude=("frames", "band"))
    p.add_argument(
        "--band",
        type=_positive(int),
        help="correlate each new frame with the BAND frames before it (default 32)",
    )

    p = command(
        "ingest", commands.ingest, "convert a stack to a chunked Zarr v3 store, out of core"
    )
    _add_input(p)
    p.add_argument("store", type=Path, help="output store, .zarr")
    p.add_argument("--chunks", type=int, help="frames per chunk (default: ~64 MiB chunks)")
    _add_overwrite(p, "replace an existing store")
    _add_progress(p)

    p = command("apply", commands.apply, "align another channel with the shifts of a saved result")
    p.add_argument("result", type=Path, help="result, .zarr or .nc (from daskreg register)")
    _add_input(p, "other")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT.tif", help="the average"
    )
    p.add_argument("--save-stack", type=Path, metavar="PATH.zarr", help="the used frames, aligned")
    p.add_argument(
        "--no-crop",
        dest="crop",
        action="store_false",
        default=None,
        help="keep the full frame (default: crop as the registration did)",
    )
    _add_overwrite(p, "replace existing outputs")
    _add_progress(p)

    p = command(
        "info",
        commands.info,
        "describe a stack and what register would do with it; exit status 2 if it cannot be "
        "registered",
    )
    _add_input(p)
    p.add_argument("--chunks", type=int, help="frames per chunk when reading")
    p.add_argument(
        "--scan",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read every frame to find those register would leave out (NaN/inf pixels, no "
        "contrast) (default: for stacks up to 2 GiB)",
    )
    _add_params(p)

    p = command("report", commands.report, "write the PDF report of a saved result")
    p.add_argument("result", type=Path, help="result, .zarr or .nc")
    p.add_argument("-o", "--output", type=Path, required=True, help="report, .pdf")
    _add_overwrite(p, "replace an existing report")

    p = command("demo", commands.demo, "register a generated series and compare with the truth")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("daskreg-demo"),
        help="output folder; if it holds an earlier demo, a new numbered folder beside it "
        "(OUT-2, OUT-3, ...) unless --overwrite",
    )
    p.add_argument("--n-frames", type=int, default=16, help="frames to generate")
    p.add_argument("--size", type=int, default=256, help="frame size, px")
    p.add_argument("--seed", type=int, default=0, help="random seed of the series")
    _add_overwrite(p, "replace the earlier demo's outputs in --out")
    _add_execution(p)
    return parser
