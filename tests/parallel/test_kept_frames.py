"""Frames that fit in the workers' memory are read once per registration, not once per pass."""

from __future__ import annotations

import threading
from collections import Counter

import dask.array as da
import numpy as np
import pytest

import daskreg
from daskreg.parallel import kept
from daskreg.params import RegistrationParams
from daskreg.stack import as_stack

from .conftest import assert_same_result

CHUNK = 4
_reads: Counter = Counter()
_lock = threading.Lock()


def _read(block: np.ndarray, block_info=None) -> np.ndarray:
    """A chunk as a store would give it, counted (the test cluster's workers are threads)."""
    with _lock:
        _reads[block_info[None]["chunk-location"][0]] += 1
    return block.copy()


def _counted_stack(frames: np.ndarray):
    """``frames`` as a lazy stack whose every chunk read is counted in ``_reads``."""
    source = da.from_array(frames, chunks=(CHUNK, -1, -1))
    return source.map_blocks(_read, dtype=frames.dtype)


def test_a_lazy_stack_is_read_once(series, client):
    """On a cluster with room for them, every chunk is read once: the survey, the
    spectra, the refinement's two passes and the examples all read the kept frames."""
    expected = daskreg.register(series.stack, engine="numpy", progress=False)
    _reads.clear()
    got = daskreg.register(_counted_stack(series.stack), client=client, progress=False)
    assert_same_result(got, expected)
    n_chunks = -(-len(series.stack) // CHUNK)
    assert dict(_reads) == dict.fromkeys(range(n_chunks), 1)


def test_frames_not_kept_without_room(series):
    """No room beside the spectra: the stack is left as it is (read once per pass)."""
    stack = as_stack(_counted_stack(series.stack))

    class NoClient:
        def persist(self, _):
            raise AssertionError("persisted without room")

    params = RegistrationParams()
    room = stack.nbytes + kept.spectra_bound(stack, params) - 1
    same, left = kept.keep_frames(stack, NoClient(), room, params, in_memory=False)
    assert same is stack and left == room


@pytest.mark.parametrize("in_memory", [False, True])
def test_kept_frames_take_their_bytes_from_the_spectra_room(series, client, in_memory):
    """Kept (whatever their size when they are in this process's memory already), the
    frames' bytes are no longer room for the spectra."""
    stack = as_stack(_counted_stack(series.stack))
    room = 10 * stack.nbytes if not in_memory else 0.0
    persisted, left = kept.keep_frames(
        stack, client, room, RegistrationParams(), in_memory=in_memory
    )
    assert persisted is not stack
    assert left == room - stack.nbytes
    np.testing.assert_array_equal(persisted.values, series.stack)
