"""``main``: run a subcommand, and turn what it raises into one line and an exit code."""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from collections.abc import Sequence

from daskreg.cli.parser import build_parser
from daskreg.cli.signals import Interrupted, stopping_on_signals
from daskreg.cli.text import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    one_line,
    one_line_warnings,
)
from daskreg.cli.words import cli_words
from daskreg.errors import DaskregError, WorkerMemoryError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 success, 2 bad input, 1 other failure, 130 interrupted (Ctrl-C), 143 stopped
        by SIGTERM, 129 by SIGHUP.
    """
    args = build_parser().parse_args(argv)
    prog = f"daskreg {args.command}"
    try:
        with stopping_on_signals(), one_line_warnings(args.command_parser):
            return args.handler(args)
    except DaskregError as exc:
        if args.debug:
            traceback.print_exc()
        # The fix is named in the flags of this subcommand, not as Python keywords.
        message = cli_words(one_line(exc), args.command_parser)
        # Workers short of memory stop a run midway; its saved blocks are worth resuming.
        hint = _resume_hint(args) if isinstance(exc, WorkerMemoryError) else ""
        print(f"{prog}: error: {message}{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        # SIGTERM (a batch system's end of job) and SIGHUP stop the run as Ctrl-C does;
        # the exit status is the shell's for a process killed by the signal.
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        how = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        print(
            f"{prog}: interrupted{how}; unfinished outputs were not written"
            f"{_resume_hint(args)}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signum
    except Exception as exc:  # noqa: BLE001 - the command line reports every failure
        if args.debug:
            traceback.print_exc()
            hint = "the traceback is above"
        else:
            hint = "run again with --debug to see the traceback"
        print(
            f"{prog}: failed: {type(exc).__name__}: {one_line(exc)} ({hint}); unfinished "
            f"outputs were not written{_resume_hint(args)}",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def _resume_hint(args: argparse.Namespace) -> str:
    checkpoint = getattr(args, "checkpoint", None)
    pairs = None if checkpoint is None else checkpoint / "pairs"
    # Only a checkpoint holding measured blocks is worth resuming: an empty one (a run
    # stopped by bad options or before its first block) would only repeat the failure.
    if pairs is None or not pairs.is_dir():
        return ""
    if not any(p.is_dir() and not p.name.startswith(".") for p in pairs.iterdir()):
        return ""
    return (
        f"; the pair blocks measured so far are saved in {checkpoint}: run the same command "
        "with --resume to continue"
    )
