"""The entries of a checkpoint: one checksummed Zarr array of bytes each, written durably.

An entry is one Zarr v3 array of bytes: its fields packed one after the other (their
names, dtypes and shapes in its attributes) in one chunk, zstd-compressed and ended by
a CRC-32C checksum. Two files per entry (``zarr.json`` and the chunk ``0``), where a Zarr
group of one array per field took eleven. Entries are written by independent tasks as
they finish, so each is its own file: a shard shared by several entries would need a
single writer. :func:`write_entry` writes under a hidden temporary name, fsyncs the
files and the folder, then renames: an entry that exists is whole. :func:`read_entry`
reads one back, checksum included, and :func:`check_entry` checks its values against
what its key implies.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from daskreg.errors import CheckpointError
from daskreg.kernels.peaks import PeakResult
from daskreg.method.pairs import N_SPLITS
from daskreg.method.screening import Survey
from daskreg.parallel.pairs import PairBlock
from daskreg.parallel.spectra import FrameInfo

__all__ = [
    "ENCODE",
    "DECODE",
    "DamagedEntry",
    "fsync",
    "write_entry",
    "read_entry",
    "check_entry",
]

# The one chunk of an entry's array: "0" in the entry's folder, not "c/0".
_CHUNK = "0"

_Entry = tuple[dict[str, Any], dict[str, np.ndarray]]

# Fields of each kind, with their trailing shape (after the entry's length) and the
# dtype kinds they may have.
_FIELDS = {
    "pairs": {"i": ((), "iu"), "j": ((), "iu"), "shifts": ((2,), "f"), "ok": ((), "b"),
              "peak": ((), "f")},
    "frames": {"finite": ((), "b"), "std": ((), "f"), "energy": ((), "f"),
               "split": ((N_SPLITS, 2), "f")},
    "survey": {"finite": ((), "b"), "std": ((), "f")},
}  # fmt: skip


class DamagedEntry(Exception):
    """An entry cannot be read whole, or holds values its key rules out.

    The message says what is wrong.
    """


def _attributes(source: Any, names: Iterable[str]) -> dict[str, np.ndarray]:
    # The fields are stored under the names of the attributes that hold them.
    return {name: getattr(source, name) for name in names}


def _pair_entry(block: PairBlock) -> _Entry:
    return {}, _attributes(block, ("i", "j")) | _attributes(block.found, ("shifts", "ok", "peak"))


def _pair_block(attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> PairBlock:
    return PairBlock(
        arrays["i"], arrays["j"], PeakResult(arrays["shifts"], arrays["ok"], arrays["peak"])
    )


def _frames_entry(info: FrameInfo) -> _Entry:
    return {"start": int(info.start)}, _attributes(info, _FIELDS["frames"])


def _frame_info(attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> FrameInfo:
    return FrameInfo(
        int(attrs["start"]), arrays["finite"], arrays["std"], arrays["energy"], arrays["split"]
    )


def _survey_entry(survey: Survey) -> _Entry:
    return {}, _attributes(survey, _FIELDS["survey"])


ENCODE = {"pairs": _pair_entry, "frames": _frames_entry, "survey": _survey_entry}
DECODE = {"pairs": _pair_block, "frames": _frame_info, "survey": lambda attrs, arrays: arrays}


def fsync(path: Path) -> None:
    """Flush a file's or folder's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_entry(target: Path, attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write one entry at ``target`` (a folder), durably, unless it exists already."""
    if target.is_dir():
        # A retried or recomputed task finds its own values there already.
        return
    layout = [[name, np.asarray(a).dtype.str, list(np.shape(a))] for name, a in arrays.items()]
    payload = np.frombuffer(
        b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values()), dtype=np.uint8
    )
    temp = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        array = zarr.create_array(
            str(temp),
            shape=payload.shape,
            chunks=(max(1, payload.size),),
            dtype=np.uint8,
            compressors=[ZstdCodec(level=3), Crc32cCodec()],
            chunk_key_encoding={"name": "v2", "separator": "."},
            fill_value=0,
            attributes={"daskreg_entry": {"attrs": attrs, "layout": layout}},
        )
        array[...] = payload
        # On disk before the entry is declared done by its name: a crash after the
        # rename must not leave an entry whose blocks were never written.
        for name in os.listdir(temp):
            fsync(temp / name)
        fsync(temp)
        try:
            os.rename(temp, target)
        except OSError:
            # Another task stored the same entry first; its copy is as good.
            if not target.is_dir():
                raise
        fsync(target.parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def read_entry(path: Path) -> _Entry:
    """An entry's attrs and fields, checked against its checksum and layout.

    Raises
    ------
    DamagedEntry
        The entry cannot be read whole: its chunk is missing, its checksum or
        compression fails, or its fields do not fill its bytes.
    """
    try:
        if not (path / _CHUNK).is_file():
            # Zarr would read a missing chunk as the fill value: zeros, not an error.
            raise FileNotFoundError(f"no data file {_CHUNK!r}")
        array = zarr.open_array(str(path), mode="r")
        entry = dict(array.attrs)["daskreg_entry"]
        payload = array[...]
        if payload.dtype != np.uint8 or payload.ndim != 1:
            raise TypeError(f"it holds {payload.dtype} of shape {payload.shape}, not bytes")
        arrays, offset = {}, 0
        for name, dtype, shape in entry["layout"]:
            size = int(np.prod(shape)) * np.dtype(dtype).itemsize
            arrays[name] = payload[offset : offset + size].view(dtype).reshape(shape).copy()
            offset += size
        if offset != payload.size:
            raise ValueError(f"its fields take {offset} of its {payload.size} bytes")
        return dict(entry["attrs"]), arrays
    except Exception as exc:  # noqa: BLE001 - whatever fails to decode, the entry is damaged
        raise DamagedEntry(f"{type(exc).__name__}: {exc}") from None


def check_entry(
    kind: str, attrs: dict[str, Any], arrays: dict[str, np.ndarray], expect: Any
) -> None:
    """Check an entry's fields against what its key implies.

    ``expect`` as :meth:`~daskreg.parallel.checkpoint.Checkpoint.reuse` describes it.

    Raises
    ------
    DamagedEntry
        Fields, shapes or dtypes not those of its kind, pairs not those of its block,
        measured values not finite.
    CheckpointError
        Its frames' quality differs from the input's now: the input changed.
    """
    fields = _FIELDS[kind]
    if set(arrays) != set(fields):
        raise DamagedEntry(f"fields {sorted(arrays)}, expected {sorted(fields)}")
    lengths = {len(a) if np.ndim(a) else -1 for a in arrays.values()}
    if len(lengths) != 1:
        raise DamagedEntry(f"fields of different lengths {sorted(lengths)}")
    for name, (trailing, kinds) in fields.items():
        value = arrays[name]
        if value.shape[1:] != trailing or value.dtype.kind not in kinds:
            raise DamagedEntry(f"{name} is {value.dtype} of shape {value.shape}")
    if kind == "pairs":
        i, j = expect
        if not (np.array_equal(arrays["i"], i) and np.array_equal(arrays["j"], j)):
            raise DamagedEntry("its pairs are not the pairs of its block")
        ok = arrays["ok"]
        if not (np.isfinite(arrays["shifts"][ok]).all() and np.isfinite(arrays["peak"][ok]).all()):
            raise DamagedEntry("a measured shift or peak is not finite")
        return
    start, finite, std = expect
    if kind == "frames" and attrs.get("start") != start:
        raise DamagedEntry(f"it starts at frame {attrs.get('start')}, its chunk at {start}")
    if kind == "frames" and not np.isfinite(arrays["energy"]).all():
        raise DamagedEntry("a spectrum energy is not finite")
    if finite is not None and not (
        np.array_equal(arrays["finite"], finite) and np.array_equal(arrays["std"], std, True)
    ):
        # Not damage (its checksum held): the frames it was measured on are not these.
        raise CheckpointError(
            f"frames {start} to {start + len(finite) - 1} differ from the frames it measured"
        )
