"""Which frames of a growing Zarr array are written: for :func:`~daskreg.io.follow.follow_folder`.

An acquisition that appends to a Zarr v3 array resizes it (``zarr.json``) before it
writes the new frames' chunks: a frame inside the shape may not be written yet, and
reads as the fill value. The writer writes chunks (or shards) along the frame axis in
order, so a chunk is complete once a later one exists; the last one, once the writer
has stopped (the folder quiet). Frames are taken chunk by chunk on that rule.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["is_zarr_store", "ready_frames", "store_stamp"]


def is_zarr_store(path: Path) -> bool:
    """A Zarr v3 store (a folder with ``zarr.json``)."""
    return path.is_dir() and (path / "zarr.json").is_file()


def store_stamp(path: Path) -> tuple[int, int] | None:
    """(total bytes, newest modification in ns) of every file of the store."""
    size, newest, seen = 0, 0, False
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                st = os.stat(os.path.join(folder, name))
            except OSError:
                continue
            size, newest, seen = size + st.st_size, max(newest, st.st_mtime_ns), True
    return (size, newest) if seen else None


def _frame_array(store: Path) -> tuple[Path, dict] | None:
    """The store's one array of 3 or more dimensions, and its metadata."""
    found = []
    for meta_path in store.rglob("zarr.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("node_type") == "array" and len(meta.get("shape", ())) >= 3:
            found.append((meta_path.parent, meta))
    return found[0] if len(found) == 1 else None


def ready_frames(store: Path, *, final: bool) -> int | None:
    """How many leading frames (axis 0) of the store's array are written.

    The frames of every chunk followed by a later chunk; with ``final`` (the writer has
    stopped), of every chunk written from the first on. None when the layout is not the
    default one this reads (``c/<i>/...`` chunk keys, one array): then every frame of
    the shape counts.
    """
    array = _frame_array(store)
    if array is None:
        return None
    path, meta = array
    encoding = meta.get("chunk_key_encoding", {})
    separator = encoding.get("configuration", {}).get("separator", "/")
    if encoding.get("name") != "default" or separator != "/":
        return None
    per_chunk = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
    chunks = path / "c"
    written = (
        {int(p.name) for p in chunks.iterdir() if p.name.isdigit()} if chunks.is_dir() else set()
    )
    count = 0
    while count in written:
        count += 1
    complete = count if final else max(count - 1, 0)
    return min(int(meta["shape"][0]), complete * per_chunk)
