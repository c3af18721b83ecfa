"""The command line's outputs: checked before any work, written all or none.

Every output is written under a temporary name and renamed when complete (the writers
do that); :func:`all_or_none` removes the outputs a failed command did complete, so that
its rerun finds none of them.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from daskreg.errors import OutputPathError
from daskreg.io.atomic import writable_folder
from daskreg.result import RegistrationResult, save_result

__all__ = [
    "CHECKPOINT_SUFFIX",
    "RESULT_SUFFIX",
    "all_or_none",
    "check_outputs",
    "checkpoint_path",
    "demo_folder",
    "remove",
    "tif_output",
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
    outputs: Mapping[str, Path], inputs: Sequence[Path], overwrite: bool
) -> list[str]:
    """Refuse, before any work, outputs that would fail or replace something.

    Parameters
    ----------
    outputs : mapping
        Kind of output (``"average"``, ...) -> path.
    inputs : sequence of pathlib.Path
        Paths read by the command; never an output.
    overwrite : bool
        ``--overwrite``: existing outputs are replaced instead of refused.

    Returns
    -------
    list of str
        The kinds of the outputs that exist and will be replaced.

    Raises
    ------
    OutputPathError
        An output is an input, two outputs are one path, a folder cannot be written, or
        outputs exist without ``overwrite`` (all of them named).
    """
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


def write_outputs(result: RegistrationResult, outputs: Mapping[str, Path]) -> None:
    """The outputs written after registering (the engine writes the stack itself)."""
    result.save_tif(outputs["average"], result_store=outputs.get("result"))
    if "result" in outputs:
        save_result(result, outputs["result"])
    if "report" in outputs:
        result.save_report(outputs["report"])


def remove(path: Path) -> None:
    """Delete a file or a store, if there."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def all_or_none(outputs: Mapping[str, Path]) -> Iterator[None]:
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
            remove(path)
        raise
