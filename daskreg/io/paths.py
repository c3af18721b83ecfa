"""Outputs kept apart from the input and from each other, on the resolved paths.

An output that is the input, or lies inside it (``-o in.zarr/avg.tif``), would replace
or modify the data it was computed from; one that contains the input (``--save-result``
naming the folder that holds it) would delete it when replaced; and two outputs that
are one path, or one inside the other (``--checkpoint avg.result.zarr``), destroy each
other when one is written or removed. :func:`check_apart` refuses all of these before
any work, after resolving symlinks, so that two spellings of one path are one path.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from daskreg.errors import OutputPathError

__all__ = ["check_apart", "input_paths", "refuse_source", "source_paths"]

_GLOB = frozenset("*?[")


def _resolved(path: str | os.PathLike) -> Path:
    # resolve() follows every symlink of the part that exists; the rest stays as given.
    return Path(path).expanduser().resolve()


def source_paths(source: Any) -> list[Path]:
    """The files or folders a stack was read from, from its ``source`` attribute.

    Parameters
    ----------
    source : str, os.PathLike or None
        A path, a glob pattern, or the list label of :func:`daskreg.io.open_stack`
        (``"a.tif, b.tif"``); anything else (``"ndarray"``, None) names no path.

    Returns
    -------
    list of pathlib.Path
        The paths that exist (for a pattern, the files it matches).
    """
    if not isinstance(source, str | os.PathLike):
        return []
    text = os.fspath(source)
    if Path(text).expanduser().exists():
        return [Path(text).expanduser()]
    if _GLOB & set(text):
        return [Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)]
    # "a.tif, b.tif" or "a.tif, ..., z.tif (40 files)": the files named.
    parts = [part.split(" (")[0] for part in text.split(", ")]
    return [Path(p) for p in parts if p != "..." and Path(p).exists()]


def _relation(a: Path, b: Path) -> str | None:
    if a == b:
        return "is"
    if b in a.parents:
        return "lies inside"
    if a in b.parents:
        return "contains"
    return None


def _shown(path: Path) -> str:
    resolved = _resolved(path)
    if resolved == path.expanduser().absolute():
        return repr(str(path))
    return f"{str(path)!r} (= {str(resolved)!r})"


def check_apart(
    outputs: Mapping[str, str | os.PathLike | None],
    inputs: Sequence[str | os.PathLike],
    *,
    folders: Mapping[str, str | os.PathLike | None] | None = None,
) -> None:
    """Refuse outputs that equal, contain or lie inside an input or another output.

    Parameters
    ----------
    outputs : mapping
        Kind (``"average"``, ``"checkpoint"``, ...) -> path; None entries are skipped.
    inputs : sequence of path
        Paths read (files or folders).
    folders : mapping, optional
        Kind -> folder in which fresh files are created (``temp_dir``): refused only if
        it is, or lies inside, an input or an output (containing them is harmless).

    Raises
    ------
    OutputPathError
        Naming both paths (and what they resolve to, if it differs) and the fix.
    """
    named = {kind: Path(p) for kind, p in outputs.items() if p is not None}
    resolved = {kind: _resolved(p) for kind, p in named.items()}
    sources = [(Path(p), _resolved(p)) for p in inputs]
    for kind, target in resolved.items():
        for given, source in sources:
            how = _relation(target, source)
            if how is not None:
                raise OutputPathError(
                    f"the {kind} {_shown(named[kind])} {how} the input {_shown(given)}; "
                    "daskreg never writes over or into what it reads: choose a "
                    f"{kind} path outside the input"
                )
    kinds = list(resolved)
    for k, first in enumerate(kinds):
        for second in kinds[k + 1 :]:
            how = _relation(resolved[first], resolved[second])
            if how is not None:
                raise OutputPathError(
                    f"the {first} {_shown(named[first])} {how} the {second} "
                    f"{_shown(named[second])}; writing or removing one would destroy the "
                    "other: give them separate paths"
                )
    for kind, folder in (folders or {}).items():
        if folder is None:
            continue
        inside = _resolved(folder)
        others = [(f"input {_shown(g)}", r) for g, r in sources] + [
            (f"{k} {_shown(named[k])}", r) for k, r in resolved.items()
        ]
        for label, other in others:
            if inside == other or other in inside.parents:
                raise OutputPathError(
                    f"the {kind} {_shown(Path(folder))} is or lies inside the {label}; "
                    f"scratch files would be written into it: choose a {kind} outside it"
                )


def refuse_source(path: str | os.PathLike, attrs: Mapping[str, Any], what: str) -> None:
    """Refuse to write ``what`` at ``path`` if that is, holds or is inside its input.

    Parameters
    ----------
    path : path-like
        Where a result is to be saved.
    attrs : mapping
        The result's attributes: ``input_path`` (the path read) and ``source`` (where
        the data came from first) name its inputs.
    what : str
        How the message names the call, e.g. ``"save('in.tif')"``.

    Raises
    ------
    OutputPathError
        ``path`` and an input are one, or one holds the other.
    """
    target = _resolved(path)
    for given in input_paths(attrs):
        how = _relation(target, _resolved(given))
        if how is not None:
            raise OutputPathError(
                f"{what}: {_shown(Path(path))} {how} the stack this result was registered "
                f"from, {_shown(given)}; a result never replaces or writes into its source: "
                "save it to another path"
            )


def input_paths(attrs: Mapping[str, Any]) -> list[Path]:
    """The paths a stack or result was read from: its ``input_path`` and ``source``."""
    return [p for key in ("input_path", "source") for p in source_paths(attrs.get(key))]
