"""netCDF files through xarray, opened lazily with dask chunks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import xarray as xr

from daskreg.io._objects import raw_from_dataarray
from daskreg.io._raw import RawStack, guarded, reading
from daskreg.io._select import Candidate, choose_signal

__all__ = ["NETCDF_EXTENSIONS", "read_netcdf"]

#: Extensions read by xarray.
NETCDF_EXTENSIONS = (".nc",)

_FORMAT = "netCDF"


def read_netcdf(path: Path, signal: int | str | None) -> RawStack:
    """Open the image variable of a netCDF file lazily.

    Parameters
    ----------
    path : pathlib.Path
        An existing ``.nc`` file.
    signal : int, str or None
        Name or index of the data variable; by default ``stack``, ``data`` or the largest
        variable of 2 or more dimensions.

    Returns
    -------
    RawStack
        Calibrated from the variable's coordinates and attributes, like a DataArray.
    """
    with reading(path, _FORMAT):
        dataset = xr.open_dataset(path, chunks={})
    names = list(dataset.data_vars)
    candidates = [
        Candidate(str(name), dataset[name].shape, dataset[name].ndim >= 2) for name in names
    ]
    index = choose_signal(candidates, signal, source=str(path), preferred=("stack", "data"))
    raw = raw_from_dataarray(dataset[names[index]], default_source=str(path))
    # An HDF5 variable stored in chunks is read in them (xarray's preferred chunks):
    # kept, as a Zarr store's. A contiguous one arrives whole and is chunked later.
    stored = dataset[names[index]].encoding.get("chunksizes") is not None
    return dataclasses.replace(
        raw, data=guarded(raw.data, path, _FORMAT), n_signals=len(candidates), own_chunks=stored
    )
