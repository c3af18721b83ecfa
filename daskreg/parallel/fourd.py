"""Multi-frame 4D-STEM: shifts from the virtual image, applied to the full data, out of core.

A 4D-STEM series ``(frame, scan_y, scan_x, qy, qx)`` drifts along the scan axes like an
image series. :func:`register_4dstem` forms the virtual image of each frame (the sum
over the detector, or a weighted sum with a detector mask), registers that
``(frame, y, x)`` stack with the Dask engine, and averages the full data with the same
shifts applied along the scan axes, chunk by chunk: the data never has to fit in memory.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from daskreg.errors import ParameterError, StackShapeError
from daskreg.parallel.engine import register_dask
from daskreg.parallel.execution import EXECUTION_PARAMETERS, split_options
from daskreg.params import RegistrationParams
from daskreg.result import RegistrationResult
from daskreg.signatures import takes_params

__all__ = ["register_4dstem"]

_DIMS = ("frame", "y", "x", "qy", "qx")
_ALIASES = {"scan_y": "y", "scan_x": "x"}
# Target size of one chunk of the 4D data.
_CHUNK_BYTES = 64 * 2**20


def _as_data(data: Any, chunks: int | None) -> xr.DataArray:
    if isinstance(data, xr.DataArray):
        named = data.rename({k: v for k, v in _ALIASES.items() if k in data.dims})
        if set(named.dims) != set(_DIMS):
            raise StackShapeError(
                f"4D-STEM data needs dims {_DIMS} (scan_y/scan_x accepted for y/x); got "
                f"{data.dims}. Rename them, e.g. data.rename(...)"
            )
        named = named.transpose(*_DIMS)
    else:
        if np.ndim(data) != 5:
            raise StackShapeError(
                f"4D-STEM data needs 5 axes (frame, scan_y, scan_x, qy, qx); got shape "
                f"{np.shape(data)}. For one frame there is nothing to register; for a 2-D "
                "image series use daskreg.register"
            )
        named = xr.DataArray(data, dims=_DIMS)
    named = named.assign_coords(
        {dim: np.arange(size) for dim, size in named.sizes.items() if dim not in named.coords}
    )
    frame_bytes = int(np.prod(named.shape[1:])) * named.dtype.itemsize
    size = chunks or max(1, _CHUNK_BYTES // frame_bytes)
    # A frame larger than a chunk is split along qy: the shifts act along y and x only.
    qy = (
        named.sizes["qy"]
        if frame_bytes <= _CHUNK_BYTES
        else max(1, named.sizes["qy"] * _CHUNK_BYTES // frame_bytes)
    )
    return named.chunk({"frame": size, "y": -1, "x": -1, "qy": qy, "qx": -1})


@takes_params(options=EXECUTION_PARAMETERS)
def register_4dstem(
    data: Any, detector: np.ndarray | None = None, **params: Any
) -> RegistrationResult:
    """Register a multi-frame 4D-STEM series and average it, out of core.

    Parameters
    ----------
    data : array_like, dask array or xarray.DataArray, shape (F, Ny, Nx, Qy, Qx)
        Frames of a 4D-STEM scan; a DataArray with dims ``(frame, y, x, qy, qx)``
        (``scan_y``/``scan_x`` also accepted), any order.
    detector : ndarray, shape (Qy, Qx), optional
        Weights of the virtual detector (e.g. an annular mask); default: the sum over
        the whole detector.
    client, scheduler, ..., keep_checkpoint
        Where and how to run, as for :func:`daskreg.register` (the same options,
        :class:`~daskreg.parallel.execution.Execution`); ``save_stack`` writes the aligned
        virtual images, the checkpoint holds the virtual images' pair blocks.
    chunks : int, optional
        Frames per chunk of the 4D data (default: up to 64 MiB per chunk), and so of
        the virtual images.
    mask, n, ..., precision
        The method parameters, keyword-only, as for :func:`daskreg.register`.

    Returns
    -------
    RegistrationResult
        The registration of the virtual image (shifts, matrices, ``average_full``) and
        ``dataset["average_4d"]``, the uncropped registered average of the full data,
        dims ``(y, x, qy, qx)``; crop it with ``result.crop`` like the average.

    Raises
    ------
    StackShapeError
        ``data`` is not 5-D.
    ParameterError
        ``detector`` does not match the detector shape.

    Notes
    -----
    Each frame is shifted by the Fourier shift theorem along the scan axes, for every
    detector pixel at once: a rigid drift of the probe positions moves every
    diffraction pattern by the same scan offset and leaves the patterns themselves
    unchanged.

    Examples
    --------
    >>> from daskreg.synthetic import lattice_series
    >>> series = lattice_series(6, (48, 48), seed=4)
    >>> pattern = np.outer(np.hanning(8), np.hanning(8))
    >>> data = series.stack[..., None, None] * pattern
    >>> result = register_4dstem(data, scheduler="synchronous", progress=False)
    >>> result.dataset["average_4d"].dims
    ('y', 'x', 'qy', 'qx')
    """
    execution, params = split_options(params)
    params_ = RegistrationParams(**params)
    full = _as_data(data, execution.chunks)
    weights = np.ones(full.shape[-2:]) if detector is None else np.asarray(detector, float)
    if weights.shape != full.shape[-2:]:
        raise ParameterError(
            f"detector has shape {weights.shape} but the detector axes (qy, qx) are "
            f"{full.shape[-2:]}; pass a mask of that shape"
        )
    virtual = xr.DataArray(
        da.tensordot(full.data, weights, axes=((3, 4), (0, 1))),
        dims=_DIMS[:3],
        coords={dim: full[dim].values for dim in _DIMS[:3]},
        attrs=dict(full.attrs),
        name="virtual_image",
    )
    execution = replace(execution, chunks=full.data.chunks[0][0])
    return register_dask(virtual, params_, execution, extras={"average_4d": full})
