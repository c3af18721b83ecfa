"""The frames held on the workers for the whole run when they fit: read once, not per pass.

A registration passes over the frames up to five times: the survey, the spectra, the
refinement's registered sum and its blocks, and the two example frames (besides the
sample the automatic parameters are chosen from). Read from a store, every pass reads
and decompresses every chunk again: Zstandard took 17 ms of CPU per 8 MiB chunk, about
1.1 CPU-seconds per pass of 2,000 x 256^2 float32, while the in-process engine reads the
stack once. :func:`keep_frames` persists the frames on the cluster before the first
pass when they fit in the workers' memory beside the spectra (the share
:func:`daskreg.parallel.memory.fit_stack` leaves them), so the store is read once; a
stack too large for that is read once per pass, as before. A stack already in this
process's memory is always sent to the workers once (embedded in each phase's graph it
would travel through the scheduler twice).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from daskreg.params import RegistrationParams

__all__ = ["keep_frames", "spectra_bound"]


def spectra_bound(stack: xr.DataArray, params: RegistrationParams) -> int:
    """Bytes of the spectra of every frame, at most: uncropped half-plane spectra.

    The automatic parameters (which may crop the spectra to a band) are chosen after
    the survey, which is the pass that must already read into memory; their whole
    half-plane bounds them.
    """
    ny, nx = stack.shape[-2:]
    per_frame = ny * (nx // 2 + 1) * np.dtype(params.spectrum_dtype).itemsize
    return int(per_frame * np.prod(stack.shape[:-2]))


def keep_frames(
    stack: xr.DataArray,
    client: Any,
    spectra_room: float,
    params: RegistrationParams,
    *,
    in_memory: bool,
) -> tuple[xr.DataArray, float]:
    """The stack persisted on the workers when it fits, and the spectra's room left.

    Parameters
    ----------
    stack : xarray.DataArray
        Dask-backed, chunked for the run (:func:`daskreg.parallel.memory.fit_stack`).
    client : distributed.Client or None
        None (a local Dask scheduler): nothing is persisted.
    spectra_room : float
        Bytes the workers may hold together beyond their tasks (``fit_stack``'s).
    params : RegistrationParams
    in_memory : bool
        The stack's values are in this process: sent once whatever their size.

    Returns
    -------
    stack : xarray.DataArray
        Backed by the persisted chunks, or ``stack`` itself.
    spectra_room : float
        Less the persisted frames' bytes.
    """
    if client is None:
        return stack, spectra_room
    frames = int(stack.nbytes)
    if not in_memory and frames + spectra_bound(stack, params) > spectra_room:
        return stack, spectra_room
    with warnings.catch_warnings():
        # An in-memory stack is the graph's data: sent once, on purpose.
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
        # A chunk lost with its worker is read again from the graph, which the
        # scheduler keeps; the chunks are released with the returned array.
        kept = stack.copy(data=client.persist(stack.data))
    return kept, spectra_room - frames
