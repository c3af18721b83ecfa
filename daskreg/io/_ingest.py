"""``ingest``: copy any stack into a chunked Zarr v3 store, out of core and all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from daskreg.errors import OutputPathError
from daskreg.io._chunks import ChunksSpec
from daskreg.io._open import open_stack
from daskreg.io._zarr import is_zarr_store, write_store
from daskreg.io.atomic import atomic_path
from daskreg.io.ome_zarr import is_ome_zarr_path

__all__ = ["ingest"]


def ingest(
    source: Any,
    store: str | Path,
    *,
    chunks: ChunksSpec = None,
    frame_axis: int | None = None,
    overwrite: bool = False,
    ome_zarr: bool | None = None,
    allow_external: bool = False,
) -> xr.DataArray:
    """Write a stack to a Zarr v3 store chunked along frames, with its calibration.

    The stack is streamed chunk by chunk into a temporary sibling ``.<name>.partial-<id>``,
    renamed to ``store`` only once complete (:func:`~daskreg.io.atomic.atomic_path`): a
    failed or interrupted ingest leaves no store under the final name and an existing store
    untouched.

    Parameters
    ----------
    source : path, array-like, xarray.DataArray or HyperSpy signal
        Anything :func:`~daskreg.io.open_stack` opens.
    store : str or pathlib.Path
        Directory of the store to create, conventionally ending in ``.zarr``.
    chunks : int, dict or None
        Chunking of the store, as in :func:`~daskreg.io.open_stack`.
    frame_axis : int or None
        As in :func:`~daskreg.io.open_stack`.
    overwrite : bool
        Replace an existing Zarr store at ``store``.
    ome_zarr : bool or None
        Also make the store an OME-Zarr (NGFF 0.5) image of the stack, with its axes,
        units, pixel size and origin (:mod:`daskreg.io.ome_zarr`), which napari-ome-zarr
        and other NGFF tools open. ``None``: when ``store`` ends in ``.ome.zarr``.
    allow_external : bool
        As in :func:`~daskreg.io.open_stack`: read data ``source`` points to outside its
        folder.

    Returns
    -------
    xarray.DataArray
        The stack opened from the written store, with the store's chunking.

    Raises
    ------
    OutputPathError
        ``store`` exists and ``overwrite`` is False, exists and is not a Zarr store, or its
        parent directory does not exist.
    StackShapeError
        An OME-Zarr store is asked for a stack with leading (series) dims.
    DaskregError
        Any error of :func:`~daskreg.io.open_stack` for ``source``.
    """
    target = Path(store).expanduser().absolute()
    _refuse_to_replace_non_store(target, overwrite)
    stack = open_stack(source, frame_axis, chunks=chunks, allow_external=allow_external)
    ome = is_ome_zarr_path(target) if ome_zarr is None else bool(ome_zarr)
    with atomic_path(target, overwrite=overwrite) as partial:
        write_store(stack, partial, ome_zarr=ome)
    return open_stack(target, chunks=dict(zip(stack.dims, stack.data.chunksize, strict=True)))


def _refuse_to_replace_non_store(target: Path, overwrite: bool) -> None:
    # overwrite=True deletes the old store; a mistyped path must not delete anything else.
    if overwrite and target.exists() and not is_zarr_store(target):
        raise OutputPathError(
            f"{str(target)!r} exists and is not a Zarr store; refusing to delete it even with "
            "overwrite=True. Choose another store path"
        )
