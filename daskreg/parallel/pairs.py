"""The pair stage as one Dask task per (frame block, frame block) pair.

The N x N pair matrix is cut along both axes at the frame chunks; task ``(a, b)``,
``a <= b``, measures the pairs ``i < j`` with ``i`` in block ``a`` and ``j`` in block
``b`` (diagonal blocks hold their upper triangle). With a band ``|i - j| <= w`` only
the block pairs that meet the band are scheduled, so 10,000 frames in blocks of 32
with ``w = 32`` make about 600 tasks, not 50,000.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np
from dask.delayed import Delayed

from daskreg.kernels.peak_result import PeakResult
from daskreg.method.measurements import PairMeasurements, assemble_pairs
from daskreg.method.pairs import PairSetup, measure_pairs, pair_indices
from daskreg.parallel import tally
from daskreg.parallel.spectra import FrameInfo, SpectraBlock

__all__ = ["PairBlock", "block_pairs", "pair_blocks", "assemble"]


@dataclass(frozen=True)
class PairBlock:
    """The pairs one task measured: indices and :class:`~daskreg.kernels.peak_result.PeakResult`."""

    i: np.ndarray
    j: np.ndarray
    found: PeakResult


def block_pairs(bounds: list[int], band: int | None = None) -> list[tuple[int, int]]:
    """Block pairs ``(a, b)``, ``a <= b``, holding at least one pair to measure.

    Parameters
    ----------
    bounds : list of int
        Frame boundaries of the blocks: block ``a`` holds frames
        ``bounds[a]:bounds[a + 1]``.
    band : int, optional
        Only pairs with ``j - i <= band``.
    """
    n_blocks = len(bounds) - 1
    out = []
    for a in range(n_blocks):
        for b in range(a, n_blocks):
            # The closest pair of the two blocks (i < j) is first of b minus last of a.
            gap = bounds[b] - (bounds[a + 1] - 1)
            if a == b and bounds[a + 1] - bounds[a] < 2:
                continue
            if band is not None and gap > band:
                break
            out.append((a, b))
    return out


def _measure_block(
    first: SpectraBlock,
    second: SpectraBlock,
    rows: tuple[int, int],
    cols: tuple[int, int],
    n_frames: int,
    band: int | None,
    setup: PairSetup,
) -> PairBlock:
    i, j = pair_indices(n_frames, band, rows=slice(*rows), cols=slice(*cols))
    found = measure_pairs(first.load(), second.load(), i - rows[0], j - cols[0], setup)
    tally.report("pairs", len(i))
    return PairBlock(i, j, found)


def pair_blocks(
    blocks: list[Delayed],
    bounds: list[int],
    setup: Delayed,
    band: int | None = None,
) -> list[Delayed]:
    """One measuring task per block pair that meets the band.

    Parameters
    ----------
    blocks : list of Delayed
        :class:`~daskreg.parallel.spectra.SpectraBlock` per frame chunk.
    bounds : list of int
        Frame boundaries of the chunks (``len(blocks) + 1`` values).
    setup : Delayed
        The :class:`~daskreg.method.pairs.PairSetup`.
    band : int, optional
        Only pairs with ``|i - j| <= band``.

    Returns
    -------
    list of Delayed
        :class:`PairBlock` per task.
    """
    n_frames = bounds[-1]
    return [
        dask.delayed(_measure_block, pure=True)(
            blocks[a],
            blocks[b],
            (bounds[a], bounds[a + 1]),
            (bounds[b], bounds[b + 1]),
            n_frames,
            band,
            setup,
        )
        for a, b in block_pairs(bounds, band)
    ]


def assemble(
    infos: list[FrameInfo], measured: list[PairBlock], band: int | None
) -> tuple[PairMeasurements, np.ndarray, np.ndarray]:
    """Gather the tasks' pairs into :class:`~daskreg.method.measurements.PairMeasurements`.

    Returns
    -------
    pairs : PairMeasurements
    finite, std : ndarray, shape (N,)
        Per-frame quality, in frame order.
    """
    infos = sorted(infos, key=lambda info: info.start)
    finite = np.concatenate([info.finite for info in infos])
    std = np.concatenate([info.std for info in infos])
    energy = np.concatenate([info.energy for info in infos])
    split = np.concatenate([info.split for info in infos])
    i = np.concatenate([m.i for m in measured])
    j = np.concatenate([m.j for m in measured])
    found = PeakResult.concatenate([m.found for m in measured])
    pairs = assemble_pairs(len(finite), i, j, found, energy, band, split)
    return pairs, finite, std
