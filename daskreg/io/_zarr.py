"""Zarr stores: read any store holding an image array, and write the daskreg store layout.

Store layout written by :func:`write_store` (via ``xarray.Dataset.to_zarr``, Zarr format 3):
a group with the array ``stack`` (dimension names ``(…, frame, y, x)``, chunked along frames
only), 1-D coordinate arrays ``frame``, ``y``, ``x``, and on ``stack`` the attributes
``pixel_size``, ``unit``, ``source``, ``signal_title``, ``original_metadata``. Later steps
may add arrays (e.g. ``result``) beside ``stack``. With ``ome_zarr=True`` the group is
also an OME-Zarr (NGFF 0.5) image of ``stack`` (:mod:`daskreg.io.ome_zarr`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import xarray as xr
import zarr

from daskreg.io._objects import raw_from_dataarray
from daskreg.io._raw import RawStack, guarded, reading
from daskreg.io._select import Candidate, choose_signal
from daskreg.io.ome_zarr import ngff_multiscales, read_ngff, stack_attributes

__all__ = ["STACK_NAME", "is_zarr_store", "read_zarr", "write_store"]

#: Name of the image stack array in a daskreg store.
STACK_NAME = "stack"

_FORMAT = "Zarr"
# Files that mark a directory as a Zarr v3 node, or a v2 array/group.
_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def is_zarr_store(path: Path) -> bool:
    """True if ``path`` is a directory holding a Zarr array or group."""
    return path.is_dir() and any((path / marker).is_file() for marker in _MARKERS)


def read_zarr(path: Path, signal: int | str | None) -> RawStack:
    """Open the image array of a Zarr store lazily.

    Parameters
    ----------
    path : pathlib.Path
        A Zarr store directory: an OME-Zarr (NGFF) image group, whose first multiscale
        image's level 0 is read (:func:`~daskreg.io.ome_zarr.read_ngff`); an array; or a
        group whose array ``stack`` or ``data``, or else its largest array of 2 or more
        dimensions, is read.
    signal : int, str or None
        Name or index (among the group's arrays of 2 or more dimensions) of the array;
        given for an OME-Zarr image, the group is read as a plain Zarr group.

    Returns
    -------
    RawStack
        Dimension names from the array's Zarr v3 ``dimension_names`` (or xarray's v2
        ``_ARRAY_DIMENSIONS``), coordinates from same-named 1-D arrays of the group,
        calibration from the attributes daskreg writes; an OME-Zarr image's from its
        NGFF axes and transformations.
    """
    with reading(path, _FORMAT):
        node = zarr.open(str(path), mode="r")
        multiscales = ngff_multiscales(node.attrs) if isinstance(node, zarr.Group) else None
        if multiscales is not None and signal is None:
            return read_ngff(node, multiscales, path)
        if isinstance(node, zarr.Array):
            members: list[tuple[str, Any]] = [(path.name, node)]
        else:
            # 1-D arrays are coordinates (xarray writes frame, y, x beside the stack).
            # Sorted, so that signal=<index> does not depend on the store's listing order.
            members = sorted(
                ((name, array) for name, array in node.arrays() if array.ndim >= 2),
                key=lambda member: member[0],
            )
        candidates = [Candidate(name, array.shape, array.ndim >= 2) for name, array in members]
        index = choose_signal(candidates, signal, source=str(path), preferred=(STACK_NAME, "data"))
        array = members[index][1]
        dims = _dimension_names(array)
        in_group = isinstance(node, zarr.Group) and dims is not None
        coords = _coordinates(node, array, dims) if in_group else {}
        stack = xr.DataArray(
            guarded(array, path, _FORMAT), dims=dims, coords=coords, attrs=dict(array.attrs)
        )
    raw = raw_from_dataarray(stack, default_source=str(path))
    # A store's chunks were chosen for the data (daskreg ingest --chunks): kept.
    return dataclasses.replace(raw, n_signals=len(candidates), own_chunks=True)


def write_store(
    stack: xr.DataArray, path: Path, *, compute: bool = True, ome_zarr: bool = False
) -> Any:
    """Write a stack in the daskreg store layout, chunk by chunk.

    Parameters
    ----------
    stack : xarray.DataArray
        As returned by :func:`~daskreg.io.open_stack`; its dask chunks become the Zarr
        chunks.
    path : pathlib.Path
        A path that does not exist yet.
    compute : bool, default True
        False: write the metadata now and return a ``dask.delayed`` object that writes
        the chunks, to compute together with other results of the same data.
    ome_zarr : bool, default False
        Also make the group an OME-Zarr (NGFF 0.5) image of the stack, which must then
        be ``(frame, y, x)`` (:func:`~daskreg.io.ome_zarr.stack_attributes`).

    Returns
    -------
    dask.delayed.Delayed or None

    Raises
    ------
    StackShapeError
        ``ome_zarr`` and the stack has leading dims.
    """
    # Checked before anything is written.
    ngff = stack_attributes(stack, STACK_NAME) if ome_zarr else None
    dataset = stack.to_dataset(name=STACK_NAME)
    written = dataset.to_zarr(path, mode="w-", zarr_format=3, consolidated=False, compute=compute)
    if ngff is not None:
        # The metadata exists once to_zarr returns, even with compute=False.
        zarr.open_group(str(path), mode="r+").attrs.update(ngff)
    return written


def _dimension_names(array: Any) -> tuple[str, ...] | None:
    names = getattr(array.metadata, "dimension_names", None) or array.attrs.get("_ARRAY_DIMENSIONS")
    if names is None or None in names:
        return None
    return tuple(str(name) for name in names)


def _coordinates(group: Any, array: Any, dims: tuple[str, ...]) -> dict[str, Any]:
    coords = {}
    for dim, size in zip(dims, array.shape, strict=True):
        member = group.get(dim)
        if isinstance(member, zarr.Array) and member.shape == (size,):
            coords[dim] = (dim, member[...], dict(member.attrs))
    return coords
