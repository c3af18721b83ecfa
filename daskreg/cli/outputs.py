"""The command line's outputs: checked before any work, written all or none.

:func:`check_outputs` refuses, before any work, outputs that are, hold or lie inside an
input or each other, and existing ones without ``--overwrite``. A :class:`Transaction`
writes every output under a staging name and renames them into place together, so that
a run stopped at any point (an error, Ctrl-C, SIGTERM, a full disk) leaves the outputs
as they were before it: its rerun (``--resume``) neither finds nor refuses some of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from daskreg.cli.signals import deferred
from daskreg.errors import OutputPathError, RegistrationWarning
from daskreg.io.atomic import writable_folder
from daskreg.io.average_tif import write_average_tif
from daskreg.io.ome_zarr import OME_ZARR_SUFFIX, is_ome_zarr_path
from daskreg.io.paths import check_apart, source_paths
from daskreg.result import RegistrationResult, save_result

__all__ = [
    "CHECKPOINT_SUFFIX",
    "RESULT_SUFFIX",
    "Transaction",
    "check_outputs",
    "checkpoint_path",
    "demo_folder",
    "remove",
    "tif_output",
    "write_live_average",
    "write_live_state",
    "write_outputs",
]

#: Suffix of the full result written beside the average by ``daskreg register``.
RESULT_SUFFIX = ".result.zarr"
#: Suffix of the checkpoint ``daskreg register`` keeps beside the average while it runs.
CHECKPOINT_SUFFIX = ".checkpoint.zarr"
_TIF = (".tif", ".tiff")


def tif_output(path: Path) -> Path:
    """``path``, refused unless it names a TIFF."""
    if path.suffix.lower() not in _TIF:
        raise OutputPathError(
            f"-o {str(path)!r}: the average is written as TIFF, so end the name in .tif "
            f"(the full result goes to <stem>{RESULT_SUFFIX}, or --save-result)"
        )
    return path


def checkpoint_path(args: argparse.Namespace, output: Path) -> Path | None:
    """Where pair blocks are saved to resume from; none for the in-process numpy engine."""
    if args.engine == "numpy" and not args.resume:
        return None
    return args.checkpoint or output.with_name(output.stem + CHECKPOINT_SUFFIX)


def check_outputs(
    outputs: Mapping[str, Path],
    inputs: Sequence[Path],
    overwrite: bool,
    *,
    others: Mapping[str, Path | None] | None = None,
    folders: Mapping[str, str | Path | None] | None = None,
) -> list[str]:
    """Refuse, before any work, outputs that would fail or replace something.

    Parameters
    ----------
    outputs : mapping
        Kind of output (``"average"``, ...) -> path.
    inputs : sequence of pathlib.Path
        Paths read by the command (a glob pattern stands for its files); never an output.
    overwrite : bool
        ``--overwrite``: existing outputs are replaced instead of refused.
    others : mapping, optional
        Kind -> path of other paths the command writes that may exist (the checkpoint).
    folders : mapping, optional
        Kind -> folder the command creates scratch files in (``--temp-dir``).

    Returns
    -------
    list of str
        The kinds of the outputs that exist and will be replaced.

    Raises
    ------
    OutputPathError
        An output (or other path) is, holds or lies inside an input or another output
        (symlinks resolved), a folder cannot be written, or outputs exist without
        ``overwrite`` (all of them named).
    """
    sources = [found for path in inputs for found in source_paths(path.expanduser())]
    check_apart({**outputs, **(others or {})}, sources, folders=folders)
    for kind, path in outputs.items():
        writable_folder(path.expanduser(), f"the {kind} {str(path)!r}")
    existing = [kind for kind, path in outputs.items() if path.exists()]
    if existing and not overwrite:
        if len(existing) == 1:
            kind = existing[0]
            raise OutputPathError(
                f"the {kind} output {str(outputs[kind])!r} already exists; pass --overwrite "
                "to replace it or choose another name"
            )
        listing = ", ".join(f"{kind} {str(outputs[kind])!r}" for kind in existing)
        raise OutputPathError(
            f"{len(existing)} outputs already exist ({listing}); pass --overwrite to replace "
            "them or choose other names"
        )
    return existing


def demo_folder(folder: Path, names: Sequence[str], overwrite: bool) -> Path:
    """The folder the demo writes ``names`` into.

    ``folder`` itself unless it holds an earlier demo's outputs and ``overwrite`` is False:
    then the first of ``folder-2``, ``folder-3``, ... that holds none, so that rerunning the
    README's Quick start neither fails nor replaces anything unasked.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"--out {str(folder)!r} is a file; pass a folder for the demo")
    candidate, k = folder, 1
    while not overwrite and any((candidate / name).exists() for name in names):
        k += 1
        candidate = folder.with_name(f"{folder.name}-{k}")
    return candidate


def write_outputs(result: RegistrationResult, outputs: Transaction) -> None:
    """Write the outputs made after registering, staged (the engine writes the stack)."""
    final = outputs.outputs
    result.save_tif(outputs.staged("average"), result_store=final.get("result"))
    if "result" in final:
        save_result(result, outputs.staged("result"))
    if "report" in final:
        result.save_report(outputs.staged("report"))


def write_live_average(live: Any, outputs: Transaction) -> None:
    """Stage the running average of a live registration, its state so far in the Info.

    The Info's JSON (:func:`daskreg.read_average_tif`) holds ``"live": true``, the frames
    added, their shifts, uncertainties and bad frames so far, the forecast of the next
    frame and the parameters: what an acquisition can act on before the result is final.
    """
    prediction, sigma = live.forecast(1)
    description = {
        "live": True,
        "n_frames": live.n_frames,
        "params": live.params_used,
        "bad_frames": np.asarray(live.bad_frames).tolist(),
        "shifts": np.asarray(live.shifts),
        "shift_uncertainty": np.asarray(live.shift_uncertainty),
        "forecast": np.asarray(prediction[0]),
        "forecast_sigma": np.asarray(sigma[0]),
    }
    write_average_tif(outputs.staged("average"), np.asarray(live.average), description)


class LiveResultPace:
    """When a watch writes the result store beside its running average.

    The result is the batch analysis of every frame so far
    (:meth:`~daskreg.live.LiveRegistration.finish`), whose cost grows with the series:
    it is written at a snapshot only once 9 times its last cost has passed since, so it
    takes at most a tenth of the watch's time.
    """

    def __init__(self) -> None:
        self._last_end = -np.inf
        self._cost = 0.0

    def due(self) -> bool:
        return time.perf_counter() - self._last_end >= 9 * self._cost

    def spent(self, started: float) -> None:
        self._last_end = time.perf_counter()
        self._cost = self._last_end - started


def write_live_state(live: Any, outputs: Transaction, pace: LiveResultPace) -> None:
    """Stage a watch's snapshot: the running average, and the result if ``outputs`` has it.

    The average as :func:`write_live_average`; the result is ``live.finish()`` (its
    warnings left to the final one), timed for ``pace``.
    """
    write_live_average(live, outputs)
    if "result" not in outputs.outputs:
        return
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RegistrationWarning)
        result = live.finish()
    save_result(result, outputs.staged("result"))
    pace.spent(started)


def remove(path: Path) -> None:
    """Delete a file or a store, if there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _settle_zarr(timeout: float = 10.0) -> None:
    """Wait for the writes Zarr's I/O loop still runs after an interrupted ``to_zarr``.

    A KeyboardInterrupt (Ctrl-C, SIGTERM) stops the wait in this thread, not the
    writes: they go on in Zarr's own event loop and would recreate folders of a store
    deleted meanwhile, leaving a partial store behind.
    """
    try:
        from zarr.core import sync
    except ImportError:
        return
    loop = getattr(sync, "loop", [None])[0]
    if loop is None or not loop.is_running():
        return

    async def drain() -> None:
        me = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not me]
        await asyncio.gather(*pending, return_exceptions=True)

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout)


class Transaction:
    """A command's outputs, written under staging names and committed together.

    Each output is written to :meth:`staged` (a hidden sibling carrying this
    transaction's token), and :meth:`commit` renames them all into place at once: the
    outputs they replace (``--overwrite``) are first moved aside, put back if any rename
    fails, and deleted only once every output is in place; the checkpoint given to
    :meth:`commit` is removed in the same step. Leaving the block without a commit
    (an error, Ctrl-C, SIGTERM) deletes what was staged and nothing else: the files a
    run deletes all carry its token, so a concurrent run's files are never touched.

    Parameters
    ----------
    outputs : mapping
        Kind -> final path.
    overwrite : bool
        Replace outputs that exist at commit; else refuse to.
    """

    def __init__(self, outputs: Mapping[str, Path], *, overwrite: bool) -> None:
        self.outputs = {kind: Path(path).expanduser() for kind, path in outputs.items()}
        self.overwrite = overwrite
        self.token = f"daskreg-{uuid.uuid4().hex[:12]}"
        # Old outputs moved aside carry another token: never deleted by a rollback.
        self._aside_token = f"daskreg-old-{uuid.uuid4().hex[:12]}"
        self.committed = False

    def staged(self, kind: str) -> Path:
        """Where the ``kind`` output is written before the commit (same folder, suffix)."""
        final = self.outputs[kind]
        # ".ome.zarr" is kept whole: the writers make an OME-Zarr store from that ending.
        suffix = OME_ZARR_SUFFIX if is_ome_zarr_path(final) else final.suffix
        stem = final.name[: len(final.name) - len(suffix)]
        return final.with_name(f".{stem}.{self.token}{suffix}")

    def _aside(self, path: Path) -> Path:
        return path.with_name(f".{path.name}.{self._aside_token}")

    def commit(self, *, retire: Path | None = None) -> None:
        """Rename every staged output into place and remove ``retire``, all or none.

        Stop signals wait until this is done (:func:`~daskreg.cli.signals.deferred`).

        Raises
        ------
        OutputPathError
            An output appeared since the command started and ``overwrite`` is False.
        OSError
            A rename failed; every output is then as before the commit.
        """
        moves: list[tuple[Path, Path | None, bool]] = []
        with deferred():
            try:
                for kind, final in self.outputs.items():
                    aside = None
                    if final.exists() or final.is_symlink():
                        if not self.overwrite:
                            raise OutputPathError(
                                f"the {kind} output {str(final)!r} appeared while this run "
                                "was working (another program wrote it); nothing was "
                                "replaced: pass --overwrite or choose another name"
                            )
                        aside = self._aside(final)
                        os.rename(final, aside)
                    moves.append((final, aside, False))
                    os.rename(self.staged(kind), final)
                    moves[-1] = (final, aside, True)
                if retire is not None and retire.exists():
                    trash = self._aside(retire)
                    os.rename(retire, trash)
                    moves.append((retire, trash, False))
            except BaseException:
                for final, aside, placed in reversed(moves):
                    if placed:
                        remove(final)
                    if aside is not None:
                        os.rename(aside, final)
                raise
            self.committed = True
            # Deleted while the signals still wait, so that none is left behind.
            for _, aside, _ in moves:
                if aside is not None:
                    remove(aside)

    def discard(self) -> None:
        """Delete what this transaction staged (and the writers' temporaries of it)."""
        _settle_zarr()
        for folder in {final.parent for final in self.outputs.values()}:
            try:
                names = os.listdir(folder or ".")
            except OSError:
                continue
            for name in names:
                if self.token in name:
                    remove(folder / name)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        if kind is not None and not self.committed:
            self.discard()
