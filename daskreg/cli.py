"""The ``daskreg`` command line: argparse over the Python API.

Subcommands
-----------
``register IN -o OUT.tif``
    Register a stack; write the average (float32 TIFF with the JSON provenance), the
    full result (``<OUT stem>.result.zarr`` beside it unless ``--save-result`` says
    otherwise, or ``--no-result``), optionally the registered stack (``--save-stack``)
    and the PDF report (``--report``). Parameters come from the flags, from
    ``--config params.toml`` (top-level keys named as in :func:`daskreg.register`), or
    both (flags win). Measured pair blocks are saved as they finish in a checkpoint
    (``<OUT stem>.checkpoint.zarr`` beside OUT, or ``--checkpoint``), removed once every
    output is written; after an interruption the same command with ``--resume``
    computes only the missing blocks.
``ingest IN OUT.zarr``
    Convert any supported stack to a chunked Zarr v3 store, out of core.
``apply RESULT OTHER -o OUT.tif``
    Align another channel with the shifts of a saved result and average it.
``info IN``
    Shape, dtype, calibration, chunking, and what ``register`` would do.
``report RESULT -o REPORT.pdf``
    The PDF report of a saved result.
``demo [--out DIR]``
    Generate a synthetic drifting series, register it, write every output and compare
    the shifts with the ground truth. Needs no data.

Exit codes: 0 success; 2 bad input (any :class:`~daskreg.errors.DaskregError`, or a
usage error) with a one-line message naming the problem and the fix; 1 any other
failure (run again with ``--debug`` for the traceback); 130 interrupted. Every output
is written under a temporary name and renamed when complete, so a failure leaves no
partial file; inputs are only read.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from daskreg._version import __version__
from daskreg.api import register
from daskreg.errors import DaskregError, OutputPathError, ParameterError, RegistrationWarning
from daskreg.io import ingest, open_stack
from daskreg.io.atomic import writable_folder
from daskreg.io.average_tif import write_average_tif
from daskreg.kernels.correlate import CORRELATION_KINDS, WINDOWS
from daskreg.kernels.masks import MASK_KINDS
from daskreg.kernels.peaks import FIND_MAXIMA
from daskreg.parallel.cluster import choose_engine
from daskreg.params import RegistrationParams
from daskreg.planning import plan
from daskreg.result import RegistrationResult, load_result, save_result
from daskreg.signatures import PARAM_NAMES, check_names

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Suffix of the full result written beside the average by ``daskreg register``.
RESULT_SUFFIX = ".result.zarr"
#: Suffix of the checkpoint ``daskreg register`` keeps beside the average while it runs.
CHECKPOINT_SUFFIX = ".checkpoint.zarr"
_TIF = (".tif", ".tiff")
# Bad frames listed one by one in the summary; the rest are counted (all are in the result).
_MAX_LISTED = 8
_MIB = 2**20
# Width of the label column of the printed summaries.
_W = 13


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see {self.prog} --help\n")


# -- argument groups -----------------------------------------------------------------------
def _frame_range(text: str) -> tuple[int, int | None]:
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start or 0), int(stop) if stop else None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--frames {text!r} is not START:STOP (a half-open range, e.g. 0:20 or 5:)"
        ) from None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of frame indices, e.g. 3,7"
        ) from None


def _signal(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


# Flag -> parameter of RegistrationParams; default None means "not given" (config or API
# default applies).
_PARAM_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("mask", {"choices": (*MASK_KINDS, "elliptical"), "help": "Fourier mask kind"}),
    ("n", {"type": float, "help": "mask cutoff: ignore features smaller than ~N px"}),
    ("n1", {"type": float, "help": "elliptical mask: feature size along its first axis, px"}),
    ("n2", {"type": float, "help": "elliptical mask: feature size along its second axis, px"}),
    ("theta", {"type": float, "help": "elliptical mask: angle of the n1 axis, radians"}),
    ("correlation", {"choices": CORRELATION_KINDS, "help": "correlation kind"}),
    ("find_maxima", {"choices": FIND_MAXIMA, "help": "how each correlation peak is located"}),
    (
        "window",
        {"choices": (*filter(None, WINDOWS), "none"), "help": "real-space window (default hann)"},
    ),
    ("num_peaks", {"type": int, "help": "gf: local maxima fitted per pair"}),
    ("sigma_guess", {"type": float, "help": "gf: starting Gaussian width, px"}),
    ("window_radius", {"type": int, "help": "gf: fit window half-size, px"}),
    ("num_iter", {"type": int, "help": "com: iterations"}),
    ("min_window_frac", {"type": float, "help": "com: smallest window fraction"}),
    (
        "outliers",
        {
            "choices": ("robust", "transitivity", "nn", "none"),
            "help": "outlier test on the shift matrix (default robust)",
        },
    ),
    (
        "threshold",
        {"type": float, "help": "robust cut-off or transitivity threshold, px (default: data)"},
    ),
    ("maxpaths", {"type": int, "help": "transitivity: paths per pair"}),
    ("max_shift", {"type": float, "help": "nn: largest difference to a neighbour, px"}),
    ("bad_frames", {"type": _int_list, "metavar": "I,J,...", "help": "frames to leave out"}),
    ("frames", {"type": _frame_range, "metavar": "START:STOP", "help": "frame range to use"}),
    (
        "solver",
        {"choices": ("robust", "mean", "lstsq"), "help": "final shifts (default robust)"},
    ),
    ("band", {"type": int, "help": "correlate only pairs with |i - j| <= BAND"}),
    ("precision", {"choices": ("single", "double"), "help": "precision of the spectra"}),
)
_PARAM_NAMES = (*(name for name, _ in _PARAM_FLAGS), "crop", "detect_bad_frames")


def _add_input(parser: argparse.ArgumentParser, name: str = "input") -> None:
    parser.add_argument(name, type=Path, help="stack file or Zarr store")
    parser.add_argument("--frame-axis", type=int, help="axis holding the frames, e.g. -1")
    parser.add_argument(
        "--signal", type=_signal, help="signal index or title, for files with several signals"
    )


def _add_params(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registration parameters (see register)")
    for name, options in _PARAM_FLAGS:
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, **options)
    group.add_argument(
        "--no-crop", dest="crop", action="store_const", const=False, help="keep the full frame"
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
    group.add_argument("--workers", type=int, help="workers of the local cluster")
    group.add_argument("--memory-limit", help="memory per worker of the local cluster, e.g. 4GiB")
    group.add_argument("--chunks", type=int, help="frames per Dask chunk")
    group.add_argument("--temp-dir", help="folder for spectra spilled to disk")
    _add_progress(
        group,
        "show progress, and the dashboard link on Dask (default: when the terminal is "
        "interactive)",
    )


def _add_progress(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    text: str = "show a progress bar (default: when the terminal is interactive)",
) -> None:
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help=text
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``daskreg`` argument parser with all its subcommands."""
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
        p.set_defaults(handler=handler)
        return p

    p = command("register", _register, "register a stack and write its average and result")
    _add_input(p)
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT.tif", help="the average"
    )
    p.add_argument(
        "--save-result",
        type=Path,
        metavar="PATH",
        help=f"full result, .zarr or .nc (default: <OUT stem>{RESULT_SUFFIX} beside OUT)",
    )
    p.add_argument("--no-result", action="store_true", help="do not write the full result")
    p.add_argument(
        "--save-stack",
        type=Path,
        metavar="PATH.zarr",
        help="every frame aligned (NaN for unused frames), a new Zarr store",
    )
    p.add_argument("--report", type=Path, metavar="PDF", help="the PDF report")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
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

    p = command("ingest", _ingest, "convert a stack to a chunked Zarr v3 store, out of core")
    _add_input(p)
    p.add_argument("store", type=Path, help="output store, .zarr")
    p.add_argument("--chunks", type=int, help="frames per chunk (default: ~64 MiB chunks)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    _add_progress(p)

    p = command("apply", _apply, "align another channel with the shifts of a saved result")
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
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    _add_progress(p)

    p = command("info", _info, "describe a stack and what register would do with it")
    _add_input(p)
    p.add_argument("--chunks", type=int, help="frames per chunk when reading")
    _add_params(p)

    p = command("report", _report, "write the PDF report of a saved result")
    p.add_argument("result", type=Path, help="result, .zarr or .nc")
    p.add_argument("-o", "--output", type=Path, required=True, help="report, .pdf")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")

    p = command("demo", _demo, "register a generated series and compare with the truth")
    p.add_argument("--out", type=Path, default=Path("daskreg-demo"), help="output folder")
    p.add_argument("--n-frames", type=int, default=16, help="frames to generate")
    p.add_argument("--size", type=int, default=256, help="frame size, px")
    p.add_argument("--seed", type=int, default=0, help="random seed of the series")
    p.add_argument("--overwrite", action="store_true", help="replace earlier demo outputs")
    _add_execution(p)
    return parser


# -- subcommands ---------------------------------------------------------------------------
def _register(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    output = _tif_output(args.output)
    outputs = {"average": output}
    if not args.no_result:
        outputs["result"] = args.save_result or output.with_name(output.stem + RESULT_SUFFIX)
    if args.save_stack:
        outputs["stack"] = args.save_stack
    if args.report:
        outputs["report"] = args.report
    _check_outputs(outputs, [args.input], args.overwrite)
    if args.save_stack and args.save_stack.exists():
        raise OutputPathError(
            f"--save-stack {str(args.save_stack)!r} exists; a registered stack is never "
            "overwritten (it could be an input), even with --overwrite. Remove it or pick "
            "a new name"
        )
    stack = open_stack(args.input, args.frame_axis, signal=args.signal)
    _require_one_series(stack, args.input)
    params = _params(args, stack.sizes["frame"])
    _print(_describe(args.input, stack))
    # The resolved path, for main's message if the run is interrupted or fails.
    args.checkpoint = checkpoint = _checkpoint(args, output, stack)
    options = _execution(args)
    if checkpoint is not None:
        # Kept by the registration: it is removed only once every output is written.
        options.update(checkpoint=str(checkpoint), resume=args.resume, keep_checkpoint=True)
    started_checkpoint = checkpoint is not None and not checkpoint.exists()
    try:
        with _all_or_none(outputs):
            result = register(stack, **params, **options)
            _write_outputs(result, outputs)
    except DaskregError:
        # Bad input is not resumable: the fix changes the input or the parameters that
        # the checkpoint is bound to, so a checkpoint this run started is only litter.
        if started_checkpoint:
            shutil.rmtree(checkpoint, ignore_errors=True)
        raise
    if checkpoint is not None and not args.keep_checkpoint:
        shutil.rmtree(checkpoint, ignore_errors=True)
    _print(_summary(result, outputs, time.perf_counter() - started))
    return EXIT_OK


def _ingest(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    _check_outputs({"store": args.store}, [args.input], args.overwrite)
    with _local_progress(args.progress):
        stack = ingest(
            args.input,
            args.store,
            chunks=args.chunks,
            frame_axis=args.frame_axis,
            overwrite=args.overwrite,
        )
    _print(_describe(args.store, stack, label="store"))
    _print([f"{'time':<{_W}}{time.perf_counter() - started:.1f} s"])
    return EXIT_OK


def _apply(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    output = _tif_output(args.output)
    outputs = {"average": output, **({"stack": args.save_stack} if args.save_stack else {})}
    _check_outputs(outputs, [args.result, args.other], args.overwrite)
    result = load_result(args.result)
    other = open_stack(args.other, args.frame_axis, signal=args.signal)
    _require_one_series(other, args.other)
    _print(_describe(args.other, other))
    with _local_progress(args.progress):
        average = result.apply(other, crop=args.crop, save_stack=args.save_stack)
    description = {**result.description(), "applied_to": str(args.other)}
    pixel = average.attrs.get("pixel_size")
    write_average_tif(
        output, average.values, description, pixel_size=tuple(pixel) if pixel else None
    )
    _print(
        [
            f"{'frames':<{_W}}{average.attrs['frames_averaged']} averaged "
            f"(shifts from {args.result})",
            *_output_lines(outputs),
            f"{'time':<{_W}}{time.perf_counter() - started:.1f} s",
        ]
    )
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    stack = open_stack(args.input, args.frame_axis, chunks=args.chunks, signal=args.signal)
    lines = _describe(args.input, stack)
    p = plan(stack, chunks=args.chunks, **_params(args, int(stack.sizes["frame"])))
    start, stop = p.frame_range
    chunks = p.frame_chunks
    lines += [
        f"{'register':<{_W}}frames {start}:{stop} of {p.n_frames}; {p.n_pairs} pairs correlated "
        + ("(all pairs)" if p.band is None else f"(|i - j| <= {p.band})"),
        f"{'dask':<{_W}}{len(chunks)} chunk(s) of up to {max(chunks)} frames; "
        f"{p.n_pair_blocks} pair blocks (chunk x chunk tasks)",
        f"{'memory':<{_W}}~{p.in_memory_bytes / _MIB:.0f} MiB in one process (--engine numpy); "
        f"the Dask engine spreads {p.spectra_bytes / _MIB:.0f} MiB of spectra over its workers",
    ]
    _print(lines)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    _check_outputs({"report": args.output}, [args.result], args.overwrite)
    result = load_result(args.result)
    path = result.save_report(args.output)
    _print([f"{'report':<{_W}}{path}"])
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from daskreg.synthetic import lattice_series

    started = time.perf_counter()
    folder = args.out
    outputs = {
        "series": folder / "demo_series.zarr",
        "average": folder / "demo_average.tif",
        "result": folder / f"demo_average{RESULT_SUFFIX}",
        "report": folder / "demo_report.pdf",
    }
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"--out {str(folder)!r} is a file; pass a folder for the demo")
    folder.mkdir(parents=True, exist_ok=True)
    _check_outputs(outputs, [], args.overwrite)
    series = lattice_series(args.n_frames, (args.size, args.size), seed=args.seed)
    stack = ingest(series.to_xarray(), outputs["series"], overwrite=args.overwrite)
    _print(_describe(outputs["series"], stack, label="series"))
    result = register(stack, **_execution(args))
    _write_outputs(result, outputs)
    used = ~result.bad_frames.values
    truth = series.shifts - series.shifts[used].mean(axis=0)
    error = np.hypot(*(result.shifts.values[used] - truth[used]).T)
    lines = _summary(result, outputs, time.perf_counter() - started)
    lines.insert(
        -1,
        f"{'truth':<{_W}}shift error vs ground truth: RMS {np.sqrt(np.mean(error**2)):.3f} px, "
        f"max {error.max():.3f} px over {int(used.sum())} frames",
    )
    lines.append(f"{'next':<{_W}}daskreg register {outputs['series']} -o average.tif")
    _print(lines)
    return EXIT_OK


# -- helpers -------------------------------------------------------------------------------
def _params(args: argparse.Namespace, n_frames: int) -> dict[str, Any]:
    """Parameters from --config, overridden by the flags given, validated."""
    values = _read_config(args.config) if args.config else {}
    # theta_degrees is how a saved description records an elliptical mask's angle.
    given = [name for name in values if name != "theta_degrees"]
    check_names(given, PARAM_NAMES, f"--config {args.config}")
    for name in _PARAM_NAMES:
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    # Neither argparse nor TOML has a None; "none" stands for it.
    for name in ("outliers", "window"):
        if values.get(name) == "none":
            values[name] = None
    if isinstance(values.get("frames"), tuple) and values["frames"][1] is None:
        values["frames"] = (values["frames"][0], n_frames)
    checked = RegistrationParams.from_dict(dict(values))
    return {name: getattr(checked, name) for name in values}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ParameterError(
                "--config needs Python 3.11 or newer, or the tomli package: pip install tomli"
            ) from None
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ParameterError(f"--config {str(path)!r} does not exist; check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(
            f"--config {str(path)!r} is not valid TOML ({exc}); write one key = value per line, "
            'e.g. mask = "hann"'
        ) from None


def _execution(args: argparse.Namespace) -> dict[str, Any]:
    """Execution options of :func:`daskreg.register`, only those given."""
    options = {
        "engine": args.engine,
        "scheduler": args.scheduler,
        "n_workers": args.workers,
        "memory_limit": args.memory_limit,
        "chunks": args.chunks,
        "temp_dir": args.temp_dir,
        "progress": args.progress,
        "save_stack": str(args.save_stack) if getattr(args, "save_stack", None) else None,
    }
    return {key: value for key, value in options.items() if value is not None}


def _checkpoint(args: argparse.Namespace, output: Path, stack: Any) -> Path | None:
    """Where pair blocks are saved to resume from; none for the in-process numpy engine,
    which ``--engine auto`` picks, as register() does, for a stack that fits in memory
    when no cluster option asks for Dask (a checkpoint would: --resume, --checkpoint)."""
    if args.engine == "numpy" and not args.resume:
        return None
    if args.engine in (None, "auto") and not args.resume and args.checkpoint is None:
        cluster = {
            key: value
            for key, value in _execution(args).items()
            if key not in ("engine", "progress", "temp_dir")
        }
        if choose_engine(stack, "auto", cluster) == "numpy":
            return None
    return args.checkpoint or output.with_name(output.stem + CHECKPOINT_SUFFIX)


def _tif_output(path: Path) -> Path:
    if path.suffix.lower() not in _TIF:
        raise OutputPathError(
            f"-o {str(path)!r}: the average is written as TIFF, so end the name in .tif "
            f"(the full result goes to <stem>{RESULT_SUFFIX}, or --save-result)"
        )
    return path


def _check_outputs(outputs: dict[str, Path], inputs: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before any work, outputs that would fail or replace something."""
    inputs_resolved = {p.expanduser().resolve() for p in inputs}
    seen: dict[Path, str] = {}
    for kind, path in outputs.items():
        target = path.expanduser().resolve()
        if target in inputs_resolved:
            raise OutputPathError(
                f"the {kind} output {str(path)!r} is also an input; inputs are never "
                "overwritten, choose another output name"
            )
        if target in seen:
            raise OutputPathError(
                f"the {seen[target]} and {kind} outputs are both {str(path)!r}; give them "
                "different names"
            )
        seen[target] = kind
        writable_folder(path.expanduser(), f"the {kind} {str(path)!r}")
        if path.exists() and not overwrite:
            raise OutputPathError(
                f"the {kind} output {str(path)!r} already exists; pass --overwrite to "
                "replace it or choose another name"
            )


def _write_outputs(result: RegistrationResult, outputs: dict[str, Path]) -> None:
    """The outputs written after registering (the engine writes the stack itself)."""
    result.save_tif(outputs["average"])
    if "result" in outputs:
        save_result(result, outputs["result"])
    if "report" in outputs:
        result.save_report(outputs["report"])


@contextlib.contextmanager
def _all_or_none(outputs: dict[str, Path]) -> Iterator[None]:
    """Remove the outputs written here if the command stops before writing them all.

    Each output is renamed into place only once complete, but there are several: an
    interrupted run must leave none, so that its rerun (``--resume``) neither finds nor
    refuses to replace some of them. Outputs that existed before are left alone.
    """
    new = [path for path in outputs.values() if not path.exists()]
    try:
        yield
    except BaseException:
        for path in new:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def _require_one_series(stack: Any, path: Path) -> None:
    if stack.ndim > 3:
        raise ParameterError(
            f"{path} holds several series (dims {stack.dims}, shape {stack.shape}); the "
            "command line registers one (frame, y, x) stack: pick one with --signal, or "
            "register all with the Python API (daskreg.register_series returns one result each)"
        )


def _describe(path: Path, stack: Any, label: str = "input") -> list[str]:
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
        f"{label:<{_W}}{path}",
        f"{'stack':<{_W}}{shape} ({dims}), {stack.dtype}, {stack.nbytes / _MIB:.1f} MiB",
        f"{'calibration':<{_W}}{calibration}",
        f"{'chunks':<{_W}}{chunks}: {n_chunks} chunk(s) of {chunk_bytes / _MIB:.1f} MiB",
    ]
    if stack.attrs.get("calibration_note"):
        lines.append(f"{'note':<{_W}}{stack.attrs['calibration_note']}")
    return lines


def _summary(result: RegistrationResult, outputs: dict[str, Path], seconds: float) -> list[str]:
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
    resumed = [
        f"{'resumed':<{_W}}{s.resumed[0]} of {s.resumed[1]} pair blocks reused from the checkpoint"
    ] if s.resumed else []
    return [
        f"{'frames':<{_W}}{s.n_used} of {s.n_frames} used",
        f"{'bad frames':<{_W}}{'; '.join(listed) if listed else 'none'}",
        f"{'outliers':<{_W}}{s.n_outliers} of {s.n_pairs} pairs "
        f"({s.outlier_test or 'no test'}{threshold})",
        f"{'shift range':<{_W}}dy {s.shift_min[0]:+.2f} to {s.shift_max[0]:+.2f} px, "
        f"dx {s.shift_min[1]:+.2f} to {s.shift_max[1]:+.2f} px (median uncertainty "
        f"dy {s.uncertainty[0]:.3f} px, dx {s.uncertainty[1]:.3f} px)",
        f"{'crop':<{_W}}"
        + (
            f"y {crop.ymin}:{crop.ymax}, x {crop.xmin}:{crop.xmax}"
            if s.cropped
            else "none (--no-crop); coverage map in the result"
        ),
        *resumed,
        *_output_lines(outputs),
        f"{'time':<{_W}}{seconds:.1f} s" + (f" ({timings} s)" if timings else ""),
    ]


def _output_lines(outputs: dict[str, Path]) -> list[str]:
    width = max(len(kind) for kind in outputs)
    return [
        f"{'output' if i == 0 else '':<{_W}}{kind:<{width}}  {path}"
        for i, (kind, path) in enumerate(outputs.items())
    ]


@contextlib.contextmanager
def _local_progress(enabled: bool | None) -> Iterator[None]:
    """A progress bar on stderr for work on the local Dask scheduler."""
    if enabled or (enabled is None and sys.stderr.isatty()):
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr):
            yield
    else:
        yield


def _print(lines: Sequence[str]) -> None:
    print("\n".join(lines), flush=True)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    def show(message: Any, category: type, *_: Any, **__: Any) -> None:
        label = "warning" if issubclass(category, RegistrationWarning) else category.__name__
        print(f"daskreg: {label}: {_one_line(message)}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _resume_hint(args: argparse.Namespace) -> str:
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is None or not checkpoint.exists():
        return ""
    return (
        f"; the pair blocks measured so far are saved in {checkpoint}: run the same command "
        "with --resume to continue"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 success, 2 bad input, 1 other failure, 130 interrupted.
    """
    args = build_parser().parse_args(argv)
    prog = f"daskreg {args.command}"
    try:
        with _one_line_warnings():
            return args.handler(args)
    except DaskregError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; unfinished outputs were not written{_resume_hint(args)}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the command line reports every failure
        if args.debug:
            traceback.print_exc()
            hint = "the traceback is above"
        else:
            hint = "run again with --debug to see the traceback"
        print(
            f"{prog}: failed: {type(exc).__name__}: {_one_line(exc)} ({hint}); unfinished "
            f"outputs were not written{_resume_hint(args)}",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
