"""Pair blocks saved as they finish, so that an interrupted run resumes where it stopped.

A checkpoint is a Zarr v3 folder::

    checkpoint.zarr/            attrs: fingerprint + the description it hashes
        pairs/<s>-<a>-<b>/      PairBlock of series s, block pair (a, b): i, j, shifts, ok, peak
        frames/<s>-<a>/         FrameInfo of series s, frame chunk a: finite, std, energy, split
        survey/<s>/             quality of every frame of series s: finite, std

Each entry is one checksummed Zarr array of bytes, written durably and renamed when
complete (:mod:`~daskreg.parallel.entries`): an entry that exists is whole, and a task
killed mid-write leaves only a hidden temporary, removed when the run resumes. Storing
is a separate task after each measuring task, so the measuring stays pure and a
retried task rewrites nothing.

On resume every entry is read in full before it is reused and checked: checksum, a
chunk present (a missing chunk would read as the fill value), the fields and their
shapes, the frame indices of its pairs, finite values, and the frames' quality equal to
the input's now. A damaged entry is recomputed, with a warning naming it.

The fingerprint covers everything that determines the entries: the input's content
(:func:`identity`: shape, dtype and the hash of frames spread over the stack; the survey
entry then checks the quality of every frame), the frame chunks, the measuring
parameters and the daskreg version. Outlier and averaging parameters are not part of
it: a kept checkpoint can be analysed again, e.g. with another ``threshold``, without
measuring.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Literal

import dask
import numpy as np
import xarray as xr
import zarr
from dask.delayed import Delayed

from daskreg._version import __version__
from daskreg.errors import CheckpointError, RegistrationWarning
from daskreg.io.atomic import atomic_path
from daskreg.method.pairs import pair_indices
from daskreg.method.screening import Survey
from daskreg.parallel.entries import (
    DECODE,
    ENCODE,
    DamagedEntry,
    check_entry,
    fsync,
    read_entry,
    write_entry,
)
from daskreg.parallel.pairs import block_pairs
from daskreg.params import MEASURE_PARAMS, RegistrationParams

__all__ = ["Checkpoint", "describe", "identity"]

# Bumped when the layout of the entries changes; older checkpoints are then refused.
_FORMAT = 2
_KINDS = ("pairs", "frames", "survey")


def identity(stack: xr.DataArray) -> str:
    """The input's identity: its shape, dtype and the hash of frames spread over it.

    Its content, not its file's name or time: a file rewritten in place, or replaced by
    a copy that kept the old time (``cp -p``, ``rsync -a``), is another input; a copy
    chunked otherwise is the same. Only two frames at the start, the middle and the end
    are hashed: side by side, they are read with at most about three chunks (whole
    chunks are read: 8 frames spread over 400 x 512^2 in 64-frame chunks took 3.5 s). A
    change confined to other frames is found later, by the survey entry, which holds
    the quality of every frame.

    Parameters
    ----------
    stack : xarray.DataArray
        The input as read, dims ``(..., frame, y, x)``.

    Returns
    -------
    str
        A SHA-256 hex digest.
    """
    n_frames = stack.shape[-3]
    middle = n_frames // 2
    picked = np.unique(np.clip([0, 1, middle, middle + 1, n_frames - 2, n_frames - 1], 0, None))
    sample = stack.data[..., picked, :, :]
    # Read in this process with dask's synchronous scheduler: no cluster is up yet.
    (values,) = dask.compute(sample, scheduler="synchronous")
    digest = hashlib.sha256(json.dumps([list(stack.shape), str(stack.dtype)]).encode())
    digest.update(picked.tobytes())
    digest.update(np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


def describe(token: str, stack: xr.DataArray, params: RegistrationParams) -> dict[str, Any]:
    """What determines the checkpoint's entries, as JSON-ready values.

    Parameters
    ----------
    token : str
        Identity of the input data: :func:`identity` of the stack before it is
        rechunked for the engine.
    stack : xarray.DataArray
        The stack as chunked for the engine (:func:`~daskreg.parallel.engine.prepare_stack`).
    params : RegistrationParams

    Returns
    -------
    dict
        Format, daskreg version, input identity, shape, dtype, frame chunks and the
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


class Checkpoint:
    """An open checkpoint: which entries exist, and the tasks that reuse or store them.

    Open it with :meth:`open`; :meth:`reuse_series` then swaps, in a lazy graph, each
    task whose entry exists and is whole for a task that loads it, and wraps the
    others with a task that stores their value. Counts of reused and scheduled entries
    are kept per kind.

    Attributes
    ----------
    path : Path
    reused, total : dict of str to int
        Per kind (``"pairs"``, ``"frames"``): entries loaded, entries in the graphs.
    damaged : list of str
        Entries found damaged and recomputed (``"pairs/0-1-2"``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        for kind in _KINDS:
            # A kind's folder deleted: its entries are recomputed.
            (path / kind).mkdir(exist_ok=True)
        # Entries are folders; hidden ones are temporaries of unfinished writes.
        self._done = {
            kind: {
                p.name for p in (path / kind).iterdir() if p.is_dir() and not p.name.startswith(".")
            }
            for kind in _KINDS
        }
        self.reused = dict.fromkeys(_KINDS, 0)
        self.total = dict.fromkeys(_KINDS, 0)
        self.damaged: list[str] = []

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
            ``path`` is not a checkpoint or its own metadata is damaged; or it is one
            and ``resume`` is False; or it was written for another input, chunking or
            measuring parameters.
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
                fsync(temp / "zarr.json")
            return cls(root)
        try:
            attrs = dict(zarr.open_group(str(root), mode="r").attrs)
            stored = attrs["fingerprint"], attrs["description"]
            if stored[0] != _fingerprint(stored[1]):
                raise ValueError("its fingerprint does not match its description")
        except Exception:  # noqa: BLE001 - any failure to read it: not a checkpoint we can use
            if any((root / kind).is_dir() for kind in _KINDS):
                raise CheckpointError(
                    f"the checkpoint {str(root)!r} has damaged metadata ({root / 'zarr.json'}), "
                    "so what it was written for cannot be checked; delete it to start over"
                ) from None
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

    def _verified(self, kind: str, key: str, expect: Any) -> dict[str, np.ndarray] | None:
        """Entry ``key``'s fields if it exists and is whole.

        A damaged one is removed, with a warning naming it.
        """
        if key not in self._done[kind]:
            return None
        path = self.path / kind / key
        try:
            attrs, arrays = read_entry(path)
            check_entry(kind, attrs, arrays, expect)
        except CheckpointError as exc:
            raise CheckpointError(
                f"the checkpoint {str(self.path)!r} was written for another input: {exc} "
                f"(entry {kind}/{key}). Delete it to start over"
            ) from None
        except DamagedEntry as reason:
            warnings.warn(
                f"the checkpoint entry {kind}/{key} in {str(self.path)!r} is damaged "
                f"({reason}); it is computed again",
                RegistrationWarning,
                stacklevel=4,
            )
            shutil.rmtree(path, ignore_errors=True)
            self._done[kind].discard(key)
            self.damaged.append(f"{kind}/{key}")
            return None
        return arrays

    def check_survey(self, series: int, survey: Survey) -> None:
        """Compare the quality of every frame of a series with the checkpoint's, or save it.

        Raises
        ------
        CheckpointError
            A frame's quality differs: the input changed since the checkpoint was written.
        """
        key = str(series)
        stored = self._verified("survey", key, (0, None, None))
        if stored is None:
            write_entry(self.path / "survey" / key, *ENCODE["survey"](survey))
            return
        same = np.zeros(len(survey.std), dtype=bool)
        if len(stored["std"]) == len(survey.std):
            same = (stored["finite"] == survey.finite) & (
                (stored["std"] == survey.std) | (np.isnan(stored["std"]) & np.isnan(survey.std))
            )
        if not same.all():
            changed = np.flatnonzero(~same)
            raise CheckpointError(
                f"the checkpoint {str(self.path)!r} was written for another input: frames "
                f"{changed[:8].tolist()}{' ...' if len(changed) > 8 else ''} of series "
                f"{series} differ from the frames it measured. Delete it to start over"
            )

    def reuse_series(
        self,
        series: int,
        bounds: list[int],
        band: int | None,
        measured: list[Delayed],
        infos: list[Delayed],
        survey: Survey | None = None,
    ) -> tuple[list[Delayed], list[Delayed]]:
        """:meth:`reuse` for the pair blocks and frame infos of one series.

        Parameters
        ----------
        series : int
            Index of the series among the leading dims, naming its entries.
        bounds : list of int
            Frame boundaries of its chunks.
        band : int, optional
            The band the pairs were measured in.
        measured, infos : list of Delayed
            :class:`~daskreg.parallel.pairs.PairBlock` per block pair of
            :func:`~daskreg.parallel.pairs.block_pairs`, and
            :class:`~daskreg.parallel.spectra.FrameInfo` per chunk.
        survey : Survey, optional
            The series' survey: stored frame qualities must equal it.

        Returns
        -------
        measured, infos : list of Delayed
        """
        n_frames = bounds[-1]
        pairs = block_pairs(bounds, band)
        measured = self.reuse(
            "pairs",
            [f"{series}-{a}-{b}" for a, b in pairs],
            measured,
            [
                pair_indices(
                    n_frames, band, rows=slice(*bounds[a : a + 2]), cols=slice(*bounds[b : b + 2])
                )
                for a, b in pairs
            ],
        )
        chunks = [slice(*bounds[a : a + 2]) for a in range(len(infos))]
        infos = self.reuse(
            "frames",
            [f"{series}-{a}" for a in range(len(infos))],
            infos,
            [
                (s.start, *((None, None) if survey is None else (survey.finite[s], survey.std[s])))
                for s in chunks
            ],
        )
        return measured, infos

    def reuse(
        self,
        kind: Literal["pairs", "frames"],
        keys: list[str],
        tasks: list[Delayed],
        expected: list[Any],
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
        expected : list
            Per key, what its entry must hold: ``(i, j)`` (pairs), or ``(start, finite,
            std)`` with ``finite, std`` None when unknown (frames).

        Returns
        -------
        list of Delayed
            The loaded tasks no longer depend on the originals, so those (and the
            spectra they need) are not computed.
        """
        # Absolute: workers may run in another folder.
        folder = str((self.path / kind).absolute())
        done = [
            self._verified(kind, key, e) is not None for key, e in zip(keys, expected, strict=True)
        ]
        self.reused[kind] += sum(done)
        self.total[kind] += len(keys)
        return [
            dask.delayed(_load, pure=True)(folder, key, kind)
            if whole
            else dask.delayed(_store, pure=True)(task, folder, key, kind)
            for key, task, whole in zip(keys, tasks, done, strict=True)
        ]

    def note(self, resume: bool) -> str:
        """One line on what the run reuses from, or saves to, the checkpoint."""
        reused, total = self.reused["pairs"], self.total["pairs"]
        if resume:
            damaged = f" ({len(self.damaged)} damaged entries recomputed)" if self.damaged else ""
            return (
                f"resumed: {reused} of {total} pair blocks reused from {self.path}, "
                f"{total - reused} to compute{damaged}"
            )
        return f"saving the {total} pair blocks to {self.path} as they finish, to resume from"

    def remove(self) -> None:
        """Delete the checkpoint (after a successful run)."""
        shutil.rmtree(self.path, ignore_errors=True)


def _store(value: Any, folder: str, key: str, kind: str) -> Any:
    """Save ``value`` as entry ``key`` and pass it on (a task after the measuring task)."""
    write_entry(Path(folder) / key, *ENCODE[kind](value))
    return value


def _load(folder: str, key: str, kind: str) -> Any:
    # Checked in full when the run started; read again here, the checksum still guards
    # against damage since then: an error naming the entry, never other values.
    try:
        return DECODE[kind](*read_entry(Path(folder) / key))
    except DamagedEntry as exc:
        raise CheckpointError(
            f"the checkpoint entry {key} in {folder!r} was damaged during the run ({exc}); "
            "run again with resume=True (daskreg register --resume) to compute it again"
        ) from None
