"""The napari reader contribution: daskreg result stores, averages and stacks.

napari asks :func:`get_reader` with each path dropped or opened; it answers with a
function that returns the layers, or None when the path is not daskreg's, so that
other readers get their turn. Deciding reads metadata only (a Zarr group's attributes
and member names, a NetCDF header, a TIFF's ImageJ ``Info``), never the data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import tifffile
import zarr

from daskreg.io._zarr import STACK_NAME, is_zarr_store
from daskreg.io.average_tif import DESCRIPTION_FORMAT
from daskreg.napari._layers import LayerData, average_tif_layers, result_layers, stack_layers
from daskreg.result import load_result

__all__ = ["get_reader", "read_result"]

ReaderFunction = Callable[[str | list[str]], list[LayerData]]
Kind = Literal["result", "average", "stack"]
# Suffixes of a result store's name (``run.result.zarr`` is the CLI's), longest first.
_RESULT_SUFFIXES = (".result.zarr", ".zarr", ".nc")


def get_reader(path: str | os.PathLike | list[str]) -> ReaderFunction | None:
    """The reader of ``path`` if it is a daskreg result, average or stack, else None.

    Parameters
    ----------
    path : str or list of str
        What napari opens; a list is taken only when it holds a single path.

    Returns
    -------
    callable or None
        ``reader(path) -> list of LayerData`` (see :mod:`daskreg.napari._layers`).
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    kind = _kind(Path(path))
    return None if kind is None else _READERS[kind]


def read_result(path: str | os.PathLike | list[str]) -> list[LayerData]:
    """The layers of a result store (:func:`daskreg.napari._layers.result_layers`)."""
    path = Path(_single(path))
    return result_layers(load_result(path), name=_stem(path))


def _read_average(path: str | os.PathLike | list[str]) -> list[LayerData]:
    return average_tif_layers(_single(path))


def _read_stack(path: str | os.PathLike | list[str]) -> list[LayerData]:
    return stack_layers(_single(path))


_READERS: dict[Kind, ReaderFunction] = {
    "result": read_result,
    "average": _read_average,
    "stack": _read_stack,
}


def _single(path: str | os.PathLike | list[str]) -> str | os.PathLike:
    return path[0] if isinstance(path, list) else path


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _RESULT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _kind(path: Path) -> Kind | None:
    """What daskreg wrote at ``path``, from its metadata alone; None if not daskreg's."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".zarr" and is_zarr_store(path):
            node = zarr.open(str(path), mode="r")
            if _is_result(node.attrs):
                return "result"
            is_group = isinstance(node, zarr.Group)
            return "stack" if is_group and STACK_NAME in node.array_keys() else None
        if suffix == ".nc" and path.is_file():
            import h5netcdf

            with h5netcdf.File(path, "r") as nc:
                return "result" if _is_result(nc.attrs) else None
        if suffix in (".tif", ".tiff") and path.is_file():
            with tifffile.TiffFile(path) as tif:
                info = (tif.imagej_metadata or {}).get("Info") or tif.pages[0].description
            return "average" if _is_average(info) else None
    except (OSError, ValueError, KeyError, tifffile.TiffFileError):
        # Unreadable or another program's file: another reader may know it.
        return None
    return None


def _is_result(attrs: object) -> bool:
    # Every result records its parameters and the version that wrote it.
    return hasattr(attrs, "keys") and {"params", "daskreg_version"} <= set(attrs.keys())


def _is_average(info: object) -> bool:
    if not isinstance(info, str) or DESCRIPTION_FORMAT not in info:
        return False
    try:
        doc = json.loads(info)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("format") == DESCRIPTION_FORMAT
