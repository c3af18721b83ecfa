"""What a registration would do with a stack, before it runs: pairs, blocks, memory.

:func:`plan` answers ``daskreg info``: how many pairs are correlated, how the Dask
engine would cut the frames into chunks and the pair matrix into blocks, and how much
memory each engine needs. It reads no pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from daskreg import autoparams
from daskreg.method.pairs import pair_indices
from daskreg.parallel.engine import prepare_stack, spectra_nbytes
from daskreg.parallel.pairs import block_pairs
from daskreg.params import RegistrationParams
from daskreg.signatures import takes_params

__all__ = ["DaskLayout", "RegistrationPlan", "dask_layout", "n_pair_blocks", "plan"]


@dataclass(frozen=True)
class RegistrationPlan:
    """The work a registration of one stack would do.

    Attributes
    ----------
    n_series : int
        Series registered (the product of any leading dims; 1 for a ``(frame, y, x)``
        stack).
    n_frames : int
        Frames per series.
    frame_range : (start, stop)
        Frames used (all unless ``frames`` was given).
    n_pairs : int
        Pairs correlated per series (all pairs, or the band ``|i - j| <= band``).
    band : int or None
    frame_chunks : tuple of int
        Frames per chunk of the Dask engine.
    n_pair_blocks : int
        Tasks of chunk x chunk pairs the Dask engine measures per series.
    spectra_bytes : int
        The spectra of every frame of every series, which the Dask engine spreads over
        its workers (or spills to disk).
    in_memory_bytes : int
        Peak of the in-memory (numpy) engine: every frame as float64 beside the pairs'
        spectra, or, when the shifts are refined, beside every frame's whole spectrum
        (complex128, kept for the template and the refinement), whichever is larger.
    params : RegistrationParams
    """

    n_series: int
    n_frames: int
    frame_range: tuple[int, int]
    n_pairs: int
    band: int | None
    frame_chunks: tuple[int, ...]
    n_pair_blocks: int
    spectra_bytes: int
    in_memory_bytes: int
    params: RegistrationParams


@takes_params
def plan(stack: Any, *, chunks: int | None = None, **params: Any) -> RegistrationPlan:
    """What :func:`daskreg.register` would do with ``stack`` and these parameters.

    Parameters
    ----------
    stack : array_like, dask array, xarray.DataArray or path
        As for :func:`daskreg.register`; only its shape, dtype and chunks are read, and
        the few frames that the automatic parameters are chosen from.
    chunks : int, optional
        Frames per Dask chunk, as the ``chunks`` option of :func:`daskreg.register`.
    mask, n, ..., precision
        The method parameters, keyword-only, as for :func:`daskreg.register`.

    Returns
    -------
    RegistrationPlan

    Raises
    ------
    DaskregError
        The stack or the parameters would be refused by :func:`daskreg.register`.

    Examples
    --------
    >>> import numpy as np
    >>> p = plan(np.zeros((40, 128, 128), np.float32), band=5, chunks=10)
    >>> p.n_pairs, p.frame_chunks, p.n_pair_blocks
    (185, (10, 10, 10, 10), 7)
    """
    checked = RegistrationParams(**params)
    prepared = prepare_stack(stack, checked, chunks)
    n_frames = int(prepared.sizes["frame"])
    frame_chunks = tuple(int(c) for c in prepared.data.chunks[-3])
    first = prepared[(0,) * (prepared.ndim - 3)]
    checked = autoparams.resolve_stack(first, checked).params
    spectra = spectra_nbytes(prepared, checked)
    return RegistrationPlan(
        n_series=math.prod(prepared.shape[:-3]),
        n_frames=n_frames,
        frame_range=checked.frames or (0, n_frames),
        n_pairs=len(pair_indices(n_frames, checked.band)[0]),
        band=checked.band,
        frame_chunks=frame_chunks,
        n_pair_blocks=n_pair_blocks(frame_chunks, checked.band),
        spectra_bytes=spectra,
        in_memory_bytes=prepared.size * 8 + max(spectra, _refinement_nbytes(prepared, checked)),
        params=checked,
    )


def n_pair_blocks(frame_chunks: tuple[int, ...], band: int | None) -> int:
    """Tasks of chunk x chunk pairs the Dask engine measures for these frame chunks."""
    return len(block_pairs([0, *accumulate(frame_chunks)], band))


@dataclass(frozen=True)
class DaskLayout:
    """How the Dask engine cuts one stack: frame chunks and pair blocks.

    Attributes
    ----------
    frame_chunks : tuple of int
        Frames per chunk, as the engine uses them (:func:`prepare_stack`).
    n_pair_blocks : int
        Tasks of chunk x chunk pairs per series.
    """

    frame_chunks: tuple[int, ...]
    n_pair_blocks: int

    def chunks_for(self, n_workers: int, band: int | None) -> int | None:
        """The most frames per chunk that give every worker a pair block, if fewer do now.

        Returns None when there are already at least ``n_workers`` pair blocks.
        """
        if self.n_pair_blocks >= n_workers:
            return None
        n_frames = sum(self.frame_chunks)
        for size in range(max(self.frame_chunks) - 1, 0, -1):
            chunks = (size,) * (n_frames // size) + ((n_frames % size,) if n_frames % size else ())
            if n_pair_blocks(chunks, band) >= n_workers:
                return size
        return None


def dask_layout(stack: Any, params: RegistrationParams, chunks: int | None) -> DaskLayout:
    """The frame chunks and pair blocks :func:`daskreg.register` would use on Dask.

    Reads no pixels (unlike :func:`plan`, which samples frames for the automatic
    parameters).

    Parameters
    ----------
    stack : array_like, dask array, xarray.DataArray or path
    params : RegistrationParams
    chunks : int, optional
        The ``chunks`` option.
    """
    prepared = prepare_stack(stack, params, chunks)
    frame_chunks = tuple(int(c) for c in prepared.data.chunks[-3])
    return DaskLayout(frame_chunks, n_pair_blocks(frame_chunks, params.band))


def _refinement_nbytes(stack: Any, params: RegistrationParams) -> int:
    """Bytes of the whole spectra the numpy engine's refinement keeps (0 without it)."""
    ny, nx = stack.shape[-2:]
    return math.prod(stack.shape[:-2]) * ny * (nx // 2 + 1) * 16 if params.refine else 0
