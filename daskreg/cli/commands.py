"""The subcommands: each reads its flags, calls the Python API and prints what it did.

Each takes the parsed arguments and returns the exit code; bad input raises a
:class:`~daskreg.errors.DaskregError`, which :func:`daskreg.cli.main` prints as one line.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import threading
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import dask
import numpy as np
from dask.system import CPU_COUNT

from daskreg.api import register as register_stack
from daskreg.cli.options import execution, params
from daskreg.cli.outputs import (
    RESULT_SUFFIX,
    LiveResultPace,
    Transaction,
    check_outputs,
    checkpoint_path,
    demo_folder,
    remove,
    tif_output,
    write_live_state,
    write_outputs,
)
from daskreg.cli.signals import stopping_gently
from daskreg.cli.text import (
    EXIT_OK,
    MIB,
    W,
    describe,
    live_line,
    local_progress,
    output_lines,
    print_lines,
    summary,
)
from daskreg.errors import (
    DaskregError,
    OutputPathError,
    ParameterError,
    RegistrationWarning,
    TooFewFramesError,
)
from daskreg.io import ingest as ingest_stack
from daskreg.io import open_stack
from daskreg.io.average_tif import write_average_tif
from daskreg.io.follow import follow_folder
from daskreg.io.follow_zarr import is_zarr_store
from daskreg.io.lock import hold
from daskreg.live import LiveRegistration
from daskreg.live_sources import feed
from daskreg.method.screening import initial_bad_frames, unusable_frames
from daskreg.parallel.cluster import choose_engine, open_client
from daskreg.parallel.cluster_faults import distributed_logs
from daskreg.parallel.execution import LOCAL_SCHEDULER_NAMES
from daskreg.params import RegistrationParams
from daskreg.planning import RegistrationPlan, dask_layout, plan
from daskreg.result import load_result
from daskreg.validate import frame_quality

__all__ = ["apply", "demo", "info", "ingest", "register", "report", "watch"]

# ``info`` reads every frame of stacks up to this size unless told (--scan/--no-scan).
_SCAN_BYTES = 2 * 2**30
# Frames named one by one in ``info``'s list of unusable frames.
_MAX_LISTED = 8
# Idle workers are warned about from this many pixels in the stack: below, the pairs
# take about a second or less in all.
_IDLE_WARNING_PIXELS = 2**22


def register(args: argparse.Namespace) -> int:
    """``daskreg register``: the average, the result, and optionally stack and report."""
    started = time.perf_counter()
    execution(args)  # checked before anything is opened, locked or written
    output = tif_output(args.output)
    outputs = {"average": output}
    if not args.no_result:
        outputs["result"] = args.save_result or output.with_name(output.stem + RESULT_SUFFIX)
    if args.save_stack:
        if args.save_stack.exists():
            raise OutputPathError(
                f"--save-stack {str(args.save_stack)!r} exists; a registered stack is never "
                "overwritten (it could be an input), even with --overwrite. Remove it or pick "
                "a new name"
            )
        outputs["stack"] = args.save_stack
    if args.report:
        outputs["report"] = args.report
    # Checked and locked before any work, even if the run then proves to need no
    # checkpoint (a stack registered in memory).
    planned = checkpoint_path(args, output)
    replaced = check_outputs(
        outputs,
        [args.input],
        args.overwrite,
        others={"checkpoint": planned},
        folders={"temp folder (--temp-dir)": args.temp_dir},
    )
    # One run per output and checkpoint: a second (a requeued job) refuses, naming this one.
    with hold({**outputs, "checkpoint": planned}):
        # Opened with the chunks the registration uses, so that the header shows them.
        stack = _open_input(args, args.input, chunks=args.chunks)
        require_one_series(stack, args.input)
        method = params(args, stack.sizes["frame"])
        print_lines(describe(args.input, stack))
        print_lines(engine_lines(stack, method, args))
        # The resolved path, for main's message if the run is interrupted or fails.
        args.checkpoint = checkpoint = None if _in_process(args, stack) else planned
        options = execution(args)
        if checkpoint is not None:
            # Kept by the registration: it is removed with the commit of the outputs.
            options.update(checkpoint=str(checkpoint), resume=args.resume, keep_checkpoint=True)
        started_checkpoint = checkpoint is not None and not checkpoint.exists()
        try:
            with (
                Transaction(outputs, overwrite=args.overwrite) as written,
                # One line on a lost scheduler or worker, not distributed's tracebacks.
                distributed_logs(show=args.debug or checkpoint is None),
            ):
                if "stack" in outputs:
                    options["save_stack"] = str(written.staged("stack"))
                result = register_stack(stack, **method, **options)
                write_outputs(result, written)
                written.commit(retire=None if args.keep_checkpoint else checkpoint)
        except DaskregError:
            # Bad input is not resumable: the fix changes the input or the parameters that
            # the checkpoint is bound to, so a checkpoint this run started is only litter.
            if started_checkpoint:
                remove(checkpoint)
            raise
    print_lines(summary(result, outputs, time.perf_counter() - started, replaced))
    return EXIT_OK


def watch(args: argparse.Namespace) -> int:
    """``daskreg watch``: register a folder's frames as they arrive; the result at the end.

    Every ``--every`` frames the running average is written (with the state so far in
    its Info), with the result of the frames so far as often as that costs at most a
    tenth of the time (:class:`~daskreg.cli.outputs.LiveResultPace`), and a summary line
    printed; when the folder stays quiet for
    ``--quiet-seconds``, or at the first Ctrl-C/SIGTERM, the final result of the frames
    received is written (:meth:`~daskreg.live.LiveRegistration.finish`). A stop signal
    then exits 130/143 as for the other commands; a second one abandons the final write,
    leaving the last running average.
    """
    started = time.perf_counter()
    output = tif_output(args.output)
    outputs = {"average": output}
    if not args.no_result:
        outputs["result"] = args.save_result or output.with_name(output.stem + RESULT_SUFFIX)
    method = params(args, 0)
    stop = threading.Event()
    # Checked here, before any output is locked: a missing folder or bad timing is bad input.
    frames = follow_folder(
        args.folder,
        pattern=args.pattern,
        quiet_seconds=args.quiet_seconds,
        settle=args.settle,
        stop=stop,
    )
    replaced = check_outputs(outputs, [args.folder], args.overwrite)
    print_lines(
        [
            f"{'watching':<{W}}{args.folder}"
            + (
                " (a growing Zarr array)"
                if is_zarr_store(args.folder)
                else f" ({args.pattern})"
                if args.folder.is_dir()
                else " (appended pages)"
            ),
            f"{'until':<{W}}no frame for {args.quiet_seconds:g} s, or Ctrl-C; the average "
            f"is written every {args.every} frames",
        ]
    )
    overwrite = args.overwrite
    # The pairs of each new frame on a cluster when one is named (connected to first:
    # an unreachable scheduler fails before any output is locked).
    remote = args.scheduler is not None or args.scheduler_file is not None
    cluster = (
        open_client(None, args.scheduler, scheduler_file=args.scheduler_file, progress=False)
        if remote
        else nullcontext()
    )
    with cluster as client, hold(outputs), stopping_gently(stop) as received:
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            why = "before a frame arrived" if received else f"for {args.quiet_seconds:g} s"
            raise TooFewFramesError(
                f"no complete frame matching {args.pattern!r} appeared in {str(args.folder)!r} "
                f"{why}; check the folder and --pattern, or wait longer with --quiet-seconds"
            )
        live = LiveRegistration(first.shape, client=client, **method)
        pace = LiveResultPace()

        def snapshot(live: LiveRegistration) -> None:
            nonlocal overwrite
            # The result too when wanted and due, once the warm-up has fixed the setup
            # (finishing earlier would fix it on fewer frames, changing the result).
            due = "result" in outputs and live.n_frames >= live.warmup and pace.due()
            staged = outputs if due else {"average": output}
            with Transaction(staged, overwrite=overwrite) as written:
                write_live_state(live, written, pace)
                written.commit()
            # Later snapshots replace this run's own.
            overwrite = True
            print_lines([live_line(live.summary(), live.warmup)])

        feed(live, itertools.chain([first], frames), callback=snapshot, every=args.every)
        result = live.finish()
        with Transaction(outputs, overwrite=overwrite) as written:
            write_outputs(result, written)
            written.commit()
    print_lines(summary(result, outputs, time.perf_counter() - started, replaced))
    if received:
        signum = received[0]
        print(
            f"daskreg watch: stopped by {signal.Signals(signum).name} after "
            f"{live.n_frames} frames; their final result was written",
            file=sys.stderr,
        )
        return 128 + signum
    return EXIT_OK


def ingest(args: argparse.Namespace) -> int:
    """``daskreg ingest``: a chunked Zarr store of the input (``--signal`` narrowed)."""
    started = time.perf_counter()
    replaced = check_outputs({"store": args.store}, [args.input], args.overwrite)
    source = _open_input(args, args.input)
    with local_progress(args.progress):
        stack = ingest_stack(source, args.store, chunks=args.chunks, overwrite=args.overwrite)
    print_lines(describe(args.store, stack, label="store"))
    print_lines(
        [
            *([f"{'replaced':<{W}}{args.store}"] if replaced else []),
            f"{'time':<{W}}{time.perf_counter() - started:.1f} s",
        ]
    )
    return EXIT_OK


def apply(args: argparse.Namespace) -> int:
    """``daskreg apply``: another channel aligned with a saved result's shifts, averaged."""
    started = time.perf_counter()
    output = tif_output(args.output)
    outputs = {"average": output, **({"stack": args.save_stack} if args.save_stack else {})}
    replaced = check_outputs(outputs, [args.result, args.other], args.overwrite)
    with hold(outputs), Transaction(outputs, overwrite=args.overwrite) as written:
        result = load_result(args.result)
        other = _open_input(args, args.other)
        require_one_series(other, args.other)
        print_lines(describe(args.other, other))
        stack = written.staged("stack") if args.save_stack else None
        with local_progress(args.progress):
            average = result.apply(other, crop=args.crop, save_stack=stack)
        description = {
            **result.description(result_store=args.result),
            "applied_to": str(args.other),
        }
        pixel = average.attrs.get("pixel_size")
        write_average_tif(
            written.staged("average"),
            average.values,
            description,
            pixel_size=tuple(pixel) if pixel else None,
        )
        written.commit()
    print_lines(
        [
            f"{'frames':<{W}}{average.attrs['frames_averaged']} averaged "
            f"(shifts from {args.result})",
            *output_lines(outputs, replaced),
            f"{'time':<{W}}{time.perf_counter() - started:.1f} s",
        ]
    )
    return EXIT_OK


def info(args: argparse.Namespace) -> int:
    """``daskreg info``: the stack, the plan of its registration, and why it cannot run."""
    stack = _open_input(args, args.input, chunks=args.chunks)
    # What the file holds is shown even when it cannot be registered (the error follows).
    print_lines(describe(args.input, stack))
    p = plan(stack, chunks=args.chunks, **params(args, int(stack.sizes["frame"])))
    start, stop = p.frame_range
    chunks = p.frame_chunks
    print_lines(
        [
            f"{'register':<{W}}frames {start}:{stop} of {p.n_frames}; {p.n_pairs} pairs "
            "correlated " + ("(all pairs)" if p.band is None else f"(|i - j| <= {p.band})"),
            f"{'dask':<{W}}{len(chunks)} chunk(s) of up to {max(chunks)} frames; "
            f"{p.n_pair_blocks} pair blocks (chunk x chunk tasks)",
            f"{'memory':<{W}}~{p.in_memory_bytes / MIB:.0f} MiB in one process (--engine "
            f"numpy); the Dask engine spreads {p.spectra_bytes / MIB:.0f} MiB of spectra over "
            "its workers",
        ]
    )
    require_one_series(stack, args.input)
    scan = args.scan if args.scan is not None else stack.nbytes <= _SCAN_BYTES
    if scan:
        print_lines([f"{'frames':<{W}}{usable_frames(stack, p, args.input)}"])
    else:
        print_lines(
            [
                f"{'frames':<{W}}not read ({stack.nbytes / 2**30:.1f} GiB); --scan reads them "
                "all to find those register would leave out"
            ]
        )
    return EXIT_OK


def report(args: argparse.Namespace) -> int:
    """``daskreg report``: the PDF report of a saved result."""
    replaced = check_outputs({"report": args.output}, [args.result], args.overwrite)
    result = load_result(args.result)
    path = result.save_report(args.output)
    print_lines(output_lines({"report": path}, ["report"] if replaced else []))
    return EXIT_OK


def demo(args: argparse.Namespace) -> int:
    """``daskreg demo``: register a synthetic series and compare with its true shifts."""
    from daskreg.synthetic import lattice_series

    started = time.perf_counter()
    names = {
        "series": "demo_series.zarr",
        "average": "demo_average.tif",
        "result": f"demo_average{RESULT_SUFFIX}",
        "report": "demo_report.pdf",
    }
    folder = demo_folder(args.out, list(names.values()), args.overwrite)
    outputs = {kind: folder / name for kind, name in names.items()}
    folder.mkdir(parents=True, exist_ok=True)
    replaced = check_outputs(outputs, [], args.overwrite)
    if folder != args.out:
        print_lines(
            [f"{'folder':<{W}}{folder} ({args.out} holds an earlier demo; --overwrite replaces it)"]
        )
    series = lattice_series(args.n_frames, (args.size, args.size), seed=args.seed)
    stack = ingest_stack(series.to_xarray(), outputs["series"], overwrite=args.overwrite)
    print_lines(describe(outputs["series"], stack, label="series"))
    with distributed_logs(show=args.debug):
        result = register_stack(stack, **execution(args))
    written = {kind: path for kind, path in outputs.items() if kind != "series"}
    with Transaction(written, overwrite=args.overwrite) as staged:
        write_outputs(result, staged)
        staged.commit()
    used = ~result.bad_frames.values
    truth = series.shifts - series.shifts[used].mean(axis=0)
    error = np.hypot(*(result.shifts.values[used] - truth[used]).T)
    lines = summary(result, outputs, time.perf_counter() - started, replaced)
    lines.insert(
        -1,
        f"{'truth':<{W}}shift error vs ground truth: RMS {np.sqrt(np.mean(error**2)):.3f} px, "
        f"max {error.max():.3f} px over {int(used.sum())} frames",
    )
    lines.append(f"{'next':<{W}}daskreg register {outputs['series']} -o average.tif")
    print_lines(lines)
    return EXIT_OK


def engine_lines(stack: Any, method: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The header line saying where the registration runs.

    In memory, or the Dask chunks and pair blocks it uses and on how many workers.

    Warns
    -----
    RegistrationWarning
        Fewer pair blocks than workers: some workers would idle while pairs are measured.
    """
    if args.engine == "numpy" or _in_process(args, stack):
        return [f"{'engine':<{W}}numpy: in memory, in this process"]
    checked = RegistrationParams(**method)
    layout = dask_layout(stack, checked, args.chunks)
    chunks = layout.frame_chunks
    sizes = f"{max(chunks)}" if len(set(chunks[:-1])) <= 1 else f"up to {max(chunks)}"
    workers = _worker_count(args)
    remote = f"at {args.scheduler}" if args.scheduler else f"of {args.scheduler_file}"
    where = f"on {workers} worker(s)" if workers else f"on the cluster {remote}"
    line = (
        f"{'engine':<{W}}dask: {len(chunks)} chunk(s) of {sizes} frames, "
        f"{layout.n_pair_blocks} pair block(s) {where}"
    )
    better = layout.chunks_for(workers, checked.band) if workers else None
    if workers and layout.n_pair_blocks < workers and stack.size >= _IDLE_WARNING_PIXELS:
        advice = f"--chunks {better} gives each a block" if better else "the stack is too short"
        warnings.warn(
            f"{layout.n_pair_blocks} pair block(s) for {workers} workers: some workers idle "
            f"while the pairs are measured; {advice}",
            RegistrationWarning,
            stacklevel=2,
        )
    return [line]


def _worker_count(args: argparse.Namespace) -> int | None:
    """Workers (or threads) the Dask engine computes on; None for a remote scheduler."""
    if args.scheduler_file is not None:
        return None
    if args.scheduler is None:
        return args.n_workers or CPU_COUNT
    if LOCAL_SCHEDULER_NAMES.get(args.scheduler) == "synchronous":
        return 1
    if args.scheduler in ("threads", "processes"):
        return CPU_COUNT
    return None


def require_one_series(stack: Any, path: Path) -> None:
    """Refuse a stack with leading dims: the command line registers one series."""
    if stack.ndim > 3:
        n_series = int(np.prod(stack.shape[:-3]))
        raise ParameterError(
            f"{path} holds {n_series} series (dims {stack.dims}, shape {stack.shape}); the "
            f"command line registers one (frame, y, x) stack: pick one with --signal N (0 to "
            f"{n_series - 1}), or register all with the Python API (daskreg.register_series "
            "returns one result each)"
        )


def usable_frames(stack: Any, p: RegistrationPlan, path: Path) -> str:
    """What reading every frame finds: the frames register would leave out at once.

    Raises
    ------
    NonFiniteError
        Some frames are unusable and ``--keep-bad-frames`` was given.
    TooFewFramesError
        Fewer than 2 frames of the range registered can be used.
    """
    blocks = stack.data.to_delayed().ravel()
    quality = dask.compute(*(dask.delayed(frame_quality)(b) for b in blocks), scheduler="threads")
    finite = np.concatenate([q[0] for q in quality])
    std = np.concatenate([q[1] for q in quality])
    unusable = initial_bad_frames(unusable_frames(finite, std), p.params)
    start, stop = p.frame_range
    chosen = set(p.params.bad_frames or ())
    left_out = {k: why for k, why in unusable.items() if start <= k < stop and k not in chosen}
    n_usable = stop - start - len(left_out) - len({k for k in chosen if start <= k < stop})
    listed = [f"{k} ({why})" for k, why in sorted(left_out.items())]
    if len(listed) > _MAX_LISTED:
        listed = [*listed[:_MAX_LISTED], f"... {len(listed) - _MAX_LISTED} more"]
    if n_usable < 2:
        raise TooFewFramesError(
            f"{path} cannot be registered: {n_usable} of frames {start}:{stop} can be used "
            f"(unusable: {'; '.join(listed) or 'none'}; left out by bad_frames: "
            f"{sorted(chosen) or 'none'}); registration needs at least 2. Check that the right "
            "file and signal were read (signal=...)"
        )
    if not left_out:
        return f"all {stop - start} read and usable"
    return f"{len(left_out)} of {stop - start} unusable, left out by register: {'; '.join(listed)}"


def _in_process(args: argparse.Namespace, stack: Any) -> bool:
    """Whether ``--engine auto`` runs in this process, as :func:`daskreg.register` does.

    A stack that fits in memory, with no cluster option, no ``--resume`` and no
    ``--checkpoint``, runs in memory: it keeps no checkpoint (nothing to resume from).
    """
    if args.engine not in (None, "auto") or args.resume or args.checkpoint is not None:
        return False
    cluster = {
        key: value
        for key, value in execution(args).items()
        if key not in ("engine", "progress", "temp_dir")
    }
    return choose_engine(stack, "auto", cluster) == "numpy"


def _open_input(args: argparse.Namespace, path: Path, *, chunks: int | None = None) -> Any:
    """:func:`daskreg.open_stack` of an input with the command's input options."""
    return open_stack(
        path,
        args.frame_axis,
        chunks=chunks,
        signal=args.signal,
        allow_external=args.allow_external,
    )
