"""Pair blocks saved as they finish, so that an interrupted run resumes where it stopped.

A checkpoint is a Zarr v3 folder::

    checkpoint.zarr/            attrs: fingerprint + the description it hashes
        pairs/<s>-<a>-<b>/      PairBlock of series s, block pair (a, b): i, j, shifts, ok, peak
        frames/<s>-<a>/         FrameInfo of series s, frame chunk a: finite, std, energy, split

Each entry is written under a hidden temporary name and renamed when complete, so an
entry that exists is whole: a task killed mid-write leaves only a temporary folder,
removed when the run resumes. Storing is a separate task after each measuring task,
so the measuring stays pure and a retried task rewrites nothing.

The fingerprint covers everything that determines the entries: the input's identity
(the Dask token of its array, which the readers derive from the file they read, and
which hashes the data of arrays in memory), shape, dtype, frame chunks, the measuring
parameters and the daskreg version. Outlier and averaging parameters are not part of it: a kept
checkpoint can be analysed again, e.g. with another ``threshold``, without measuring.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import dask
import numpy as np
import xarray as xr
import zarr
from dask.delayed import Delayed

from daskreg._version import __version__
from daskreg.errors import CheckpointError
from daskreg.io.atomic import atomic_path
from daskreg.kernels.peaks import PeakResult
from daskreg.parallel.pairs import PairBlock
from daskreg.parallel.spectra import FrameInfo
from daskreg.params import MEASURE_PARAMS, RegistrationParams

__all__ = ["Checkpoint", "describe"]

# Bumped when the layout of the entries changes; older checkpoints are then refused.
_FORMAT = 1
_KINDS = ("pairs", "frames")

_Entry = tuple[dict[str, Any], dict[str, np.ndarray]]


def describe(token: str, stack: xr.DataArray, params: RegistrationParams) -> dict[str, Any]:
    """What determines the checkpoint's entries, as JSON-ready values.

    Parameters
    ----------
    token : str
        Identity of the input data: ``dask.base.tokenize`` of the array before it is
        rechunked for the engine.
    stack : xarray.DataArray
        The stack as chunked for the engine (:func:`~daskreg.parallel.engine.prepare_stack`).
    params : RegistrationParams

    Returns
    -------
    dict
        Format, daskreg version, input token, shape, dtype, frame chunks and the
        measuring parameters (a user mask array by its token).
    """
    measuring = {name: value for name, value in params.to_dict().items() if name in MEASURE_PARAMS}
    if isinstance(params.mask, np.ndarray):
        measuring["mask"] = dask.base.tokenize(params.mask)
    description = {
        "format": _FORMAT,
        "daskreg_version": __version__,
        "input": token,
        "shape": list(stack.shape),
        "dtype": str(stack.dtype),
        "frame_chunks": list(stack.data.chunks[-3]),
        "params": measuring,
    }
    # Through JSON once, so that it compares equal with the stored copy (tuples -> lists).
    return json.loads(json.dumps(description))


def _fingerprint(description: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def _differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    then = {**stored, **{f"params.{k}": v for k, v in stored.get("params", {}).items()}}
    now = {**current, **{f"params.{k}": v for k, v in current["params"].items()}}
    return [
        f"{key}: {then.get(key)!r} then, {now.get(key)!r} now"
        for key in sorted(set(then) | set(now))
        if key != "params" and then.get(key) != now.get(key)
    ]


def _pair_entry(block: PairBlock) -> _Entry:
    found = block.found
    return {}, {
        "i": block.i,
        "j": block.j,
        "shifts": found.shifts,
        "ok": found.ok,
        "peak": found.peak,
    }


def _pair_block(attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> PairBlock:
    return PairBlock(
        arrays["i"], arrays["j"], PeakResult(arrays["shifts"], arrays["ok"], arrays["peak"])
    )


def _frames_entry(info: FrameInfo) -> _Entry:
    return {"start": int(info.start)}, {
        "finite": info.finite,
        "std": info.std,
        "energy": info.energy,
        "split": info.split,
    }


def _frame_info(attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> FrameInfo:
    return FrameInfo(
        int(attrs["start"]), arrays["finite"], arrays["std"], arrays["energy"], arrays["split"]
    )


_ENCODE = {"pairs": _pair_entry, "frames": _frames_entry}
_DECODE = {"pairs": _pair_block, "frames": _frame_info}


def _store(value: Any, folder: str, key: str, kind: str) -> Any:
    """Save ``value`` as entry ``key`` and pass it on (a task after the measuring task)."""
    target = Path(folder) / key
    # A retried or recomputed task finds its own values there already.
    if not target.is_dir():
        attrs, arrays = _ENCODE[kind](value)
        with atomic_path(target) as temp:
            group = zarr.open_group(str(temp), mode="w", attributes=attrs)
            for name, values in arrays.items():
                group.create_array(name, data=np.asarray(values))
    return value


def _load(folder: str, key: str, kind: str) -> Any:
    group = zarr.open_group(str(Path(folder) / key), mode="r")
    return _DECODE[kind](dict(group.attrs), {name: a[...] for name, a in group.arrays()})


class Checkpoint:
    """An open checkpoint: which entries exist, and the tasks that reuse or store them.

    Open it with :meth:`open`; :meth:`reuse` then swaps, in a lazy graph, each task
    whose entry exists for a task that loads it, and wraps the others with a task that
    stores their value. Counts of reused and scheduled entries are kept per kind.

    Attributes
    ----------
    path : Path
    reused, total : dict of str to int
        Per kind (``"pairs"``, ``"frames"``): entries loaded, entries in the graphs.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Entries are folders; hidden ones are temporaries of unfinished writes.
        self._done = {
            kind: {
                p.name for p in (path / kind).iterdir() if p.is_dir() and not p.name.startswith(".")
            }
            for kind in _KINDS
        }
        self.reused = dict.fromkeys(_KINDS, 0)
        self.total = dict.fromkeys(_KINDS, 0)

    @classmethod
    def open(
        cls, path: str | os.PathLike, description: dict[str, Any], *, resume: bool
    ) -> Checkpoint:
        """Create the checkpoint at ``path``, or open the one there to resume it.

        Parameters
        ----------
        path : str or path
            A Zarr folder; its parent folder must exist.
        description : dict
            From :func:`describe`, for the current input and parameters.
        resume : bool
            Reuse the entries of an existing checkpoint (none yet: create one).

        Returns
        -------
        Checkpoint

        Raises
        ------
        CheckpointError
            ``path`` is not a checkpoint; or it is one and ``resume`` is False; or it was
            written for another input, chunking or measuring parameters.
        OutputPathError
            The parent folder does not exist or cannot be written.
        """
        root = Path(path)
        fingerprint = _fingerprint(description)
        if not root.exists():
            with atomic_path(root, overwrite=False) as temp:
                group = zarr.open_group(
                    str(temp),
                    mode="w",
                    attributes={"fingerprint": fingerprint, "description": description},
                )
                for kind in _KINDS:
                    group.create_group(kind)
            return cls(root)
        try:
            attrs = dict(zarr.open_group(str(root), mode="r").attrs)
            stored = attrs["fingerprint"], attrs["description"]
        except (OSError, KeyError, ValueError, zarr.errors.BaseZarrError):
            raise CheckpointError(
                f"{str(root)!r} exists and is not a daskreg checkpoint; choose another "
                "checkpoint path"
            ) from None
        if not resume:
            raise CheckpointError(
                f"the checkpoint {str(root)!r} exists, left by an earlier run; pass "
                "resume=True (daskreg register --resume) to reuse its pair blocks, or delete "
                "it to start over"
            )
        if stored[0] != fingerprint:
            changed = "; ".join(_differences(stored[1], description)) or "fingerprint"
            raise CheckpointError(
                f"the checkpoint {str(root)!r} was written for another input or other "
                f"measuring parameters ({changed}), so its pair blocks cannot be reused. "
                "Delete it to start over, or resume with the input, chunks and parameters "
                "it was written for"
            )
        for kind in _KINDS:
            # Temporaries of entries killed mid-write: never complete, never read.
            for stale in (root / kind).glob(".*"):
                shutil.rmtree(stale, ignore_errors=True)
        return cls(root)

    def reuse(
        self, kind: Literal["pairs", "frames"], keys: list[str], tasks: list[Delayed]
    ) -> list[Delayed]:
        """Tasks giving the same values as ``tasks``: loaded where stored, else stored.

        Parameters
        ----------
        kind : {"pairs", "frames"}
        keys : list of str
            Entry name of each task, unique within the checkpoint.
        tasks : list of Delayed
            :class:`~daskreg.parallel.pairs.PairBlock` (``"pairs"``) or
            :class:`~daskreg.parallel.spectra.FrameInfo` (``"frames"``) per key.

        Returns
        -------
        list of Delayed
            The loaded tasks no longer depend on the originals, so those (and the
            spectra they need) are not computed.
        """
        # Absolute: workers may run in another folder.
        folder = str((self.path / kind).absolute())
        done = self._done[kind]
        self.reused[kind] += sum(key in done for key in keys)
        self.total[kind] += len(keys)
        return [
            dask.delayed(_load, pure=True)(folder, key, kind)
            if key in done
            else dask.delayed(_store, pure=True)(task, folder, key, kind)
            for key, task in zip(keys, tasks, strict=True)
        ]

    def remove(self) -> None:
        """Delete the checkpoint (after a successful run)."""
        shutil.rmtree(self.path, ignore_errors=True)
