"""daskreg.plan: the pairs and pair blocks a registration would measure, counted by brute force."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import daskreg
from daskreg.errors import DaskregError


@pytest.mark.parametrize(
    ("n_frames", "chunks", "band"), [(12, 5, None), (12, 4, 3), (20, 3, 1), (9, 9, None)]
)
def test_plan_counts_pairs_and_blocks(n_frames, chunks, band):
    stack = da.zeros((n_frames, 32, 48), dtype=np.float32, chunks=(7, 32, 48))
    p = daskreg.plan(stack, chunks=chunks, band=band)
    # Brute force: every pair i < j within the band, and the chunk x chunk blocks holding one.
    pairs = [
        (i, j)
        for i in range(n_frames)
        for j in range(i + 1, n_frames)
        if band is None or j - i <= band
    ]
    blocks = {(i // chunks, j // chunks) for i, j in pairs}
    assert p.n_pairs == len(pairs)
    assert p.n_pair_blocks == len(blocks)
    assert sum(p.frame_chunks) == n_frames and max(p.frame_chunks) == chunks
    assert p.frame_range == (0, n_frames) and p.n_series == 1
    # Frames as float64 beside the spectra (the pairs' or, for the refinement, every
    # frame's whole spectrum); the spectra grow with the number of frames.
    whole = n_frames * stack.shape[1] * (stack.shape[2] // 2 + 1) * 16
    assert p.in_memory_bytes == stack.size * 8 + max(p.spectra_bytes, whole)
    unrefined = daskreg.plan(stack, chunks=chunks, band=band, refine=False)
    assert unrefined.in_memory_bytes == stack.size * 8 + p.spectra_bytes
    twice = daskreg.plan(da.concatenate([stack, stack]), chunks=chunks, band=band)
    assert 0 < p.spectra_bytes == twice.spectra_bytes / 2


def test_plan_refuses_what_register_refuses():
    with pytest.raises(DaskregError, match="band"):
        daskreg.plan(np.zeros((4, 32, 32), np.float32), band=10)
