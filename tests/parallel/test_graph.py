"""Graph construction: lazy, one task per frame chunk and per block pair, band-aware."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from dask.utils import key_split

from daskreg.method.pairs import pair_indices
from daskreg.parallel import engine
from daskreg.parallel.pairs import block_pairs
from daskreg.params import RegistrationParams


def _refuse(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


class _Counting(dask.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def _pretask(self, key, dsk, state):
        self.seen.append(key)


@pytest.mark.parametrize("band", [None, 2])
def test_building_the_graph_computes_nothing(zarr_stack, band):
    params = RegistrationParams.reference(band=band)
    with _Counting() as counting, dask.config.set(scheduler=_refuse):
        stack = engine.prepare_stack(zarr_stack, params, chunks=3)
        analysed = engine.build_graph(stack, params)
        average = engine.average_graph(stack.data, np.zeros((stack.shape[0], 2)))
    assert counting.seen == []
    # The same counter sees the tasks once the graphs are computed.
    with _Counting() as counting:
        outcome, _ = dask.compute(analysed, average, scheduler="synchronous")
    assert outcome.analysis.used.all()
    assert any("measure_block" in key_split(k) for k in counting.seen)


@pytest.mark.parametrize(("chunk", "band"), [(1, None), (3, None), (3, 2), (4, 5), (17, 3)])
def test_one_task_per_chunk_and_per_block_pair(series, chunk, band):
    params = RegistrationParams.reference(band=band)
    stack = engine.prepare_stack(series.stack, params, chunks=chunk)
    graph = engine.build_graph(stack, params)
    names = [key_split(k) for k in dict(graph.__dask_graph__())]
    bounds = [0, *np.cumsum(stack.data.chunks[0])]
    assert names.count("spectra_block") == len(bounds) - 1
    assert names.count("measure_block") == len(block_pairs(bounds, band))


@pytest.mark.parametrize("band", [None, 1, 2, 5, 40])
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_block_pairs_cover_every_pair_once(chunk, band):
    n = 17
    bounds = [*range(0, n, chunk), n]
    found = set()
    for a, b in block_pairs(bounds, band):
        i, j = pair_indices(
            n, band, rows=slice(bounds[a], bounds[a + 1]), cols=slice(bounds[b], bounds[b + 1])
        )
        pairs = set(zip(i.tolist(), j.tolist(), strict=True))
        assert pairs, f"block pair {(a, b)} scheduled with nothing to measure"
        assert not pairs & found
        found |= pairs
    i, j = pair_indices(n, band)
    assert found == set(zip(i.tolist(), j.tolist(), strict=True))


def test_band_schedules_only_blocks_near_the_diagonal():
    bounds = list(range(0, 10_001, 32)) + [10_000]
    tasks = block_pairs(sorted(set(bounds)), 32)
    # Each block meets itself and its next neighbour only: 2 per block, not 313^2 / 2.
    assert len(tasks) == 2 * 313 - 1
