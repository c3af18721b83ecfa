"""The aligned stack the Dask engine writes beside the average (``save_stack``).

Written under a hidden ``.NAME.partial`` name and renamed when complete, so that a store
under the asked name is always whole.
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
from daskreg.parallel import reduce

__all__ = ["check_target", "partial", "removed_on_failure", "save_stack_graph"]


def check_target(path: str | None) -> Path | None:
    """The store to write (None for none), refused if it exists or has no folder."""
    if path is None:
        return None
    target = Path(path)
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
    stack: xr.DataArray, series: list[da.Array], shifts: list[np.ndarray], path: Path
) -> Delayed:
    """Lazy write of the aligned stack (dims as the input; NaN frames where unused).

    ``series`` holds the frames of each entry of the leading dims, as averaged.
    """
    aligned = da.concatenate(
        [
            reduce.aligned_stack(frames, s, dtype=np.float32)
            for frames, s in zip(series, shifts, strict=True)
        ]
    ).reshape(stack.shape)
    out = xr.DataArray(aligned, dims=stack.dims, coords=stack.coords, attrs=stack.attrs)
    out.attrs["registered_by"] = "daskreg"
    return out.to_dataset(name="stack").to_zarr(
        path, mode="w", compute=False, zarr_format=3, consolidated=False
    )
