"""The aligned stack the Dask engine writes beside the average (``save_stack``).

Written under a hidden ``.NAME.partial`` name and renamed when complete, so that a store
under the asked name is always whole. A name ending in ``.ome.zarr`` makes the store an
OME-Zarr (NGFF 0.5) image too (:mod:`daskreg.io.ome_zarr`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import Delayed

from daskreg.errors import OutputPathError
from daskreg.io._zarr import STACK_NAME, write_store
from daskreg.io.ome_zarr import is_ome_zarr_path, stack_attributes
from daskreg.parallel import reduce

__all__ = ["check_target", "partial", "removed_on_failure", "save_stack_graph"]


def check_target(path: str | None, stack: xr.DataArray) -> Path | None:
    """The store to write (None for none), refused if it exists or has no folder.

    An OME-Zarr store (``.ome.zarr``) of a stack with leading dims is refused here, before
    any work, with :class:`~daskreg.errors.StackShapeError`.
    """
    if path is None:
        return None
    target = Path(path)
    if is_ome_zarr_path(target):
        stack_attributes(stack, STACK_NAME)
    if target.exists():
        raise OutputPathError(
            f"save_stack={str(path)!r} exists already; daskreg never overwrites (it could be "
            "the input). Pass a new path, or remove the old store first"
        )
    if not target.parent.is_dir():
        raise OutputPathError(
            f"save_stack={str(path)!r}: the folder {str(target.parent)!r} does not exist; "
            "create it first"
        )
    shutil.rmtree(partial(target), ignore_errors=True)
    return target


def partial(target: Path) -> Path:
    """Where a store is written before it is renamed to ``target``."""
    return target.with_name(f".{target.name}.partial")


@contextmanager
def removed_on_failure(path: str | None) -> Iterator[None]:
    """The partial store of ``path`` (None: none) removed if the block fails or is stopped.

    Around the whole run, cluster included: tasks still writing when Ctrl-C arrives have
    finished (the threads pool is joined, a local cluster closed) before it is removed.
    """
    try:
        yield
    except BaseException:
        if path is not None:
            shutil.rmtree(partial(Path(path)), ignore_errors=True)
        raise


def save_stack_graph(
    stack: xr.DataArray,
    series: list[da.Array],
    shifts: list[np.ndarray],
    path: Path,
    *,
    ome_zarr: bool = False,
) -> Delayed:
    """Lazy write of the aligned stack (dims as the input; NaN frames where unused).

    ``series`` holds the frames of each entry of the leading dims, as averaged;
    ``ome_zarr`` makes the store an OME-Zarr image too.
    """
    aligned = da.concatenate(
        [
            reduce.aligned_stack(frames, s, dtype=np.float32)
            for frames, s in zip(series, shifts, strict=True)
        ]
    ).reshape(stack.shape)
    out = xr.DataArray(aligned, dims=stack.dims, coords=stack.coords, attrs=stack.attrs)
    out.attrs["registered_by"] = "daskreg"
    # check_target removed any partial store left by an earlier run.
    return write_store(out, path, compute=False, ome_zarr=ome_zarr)
