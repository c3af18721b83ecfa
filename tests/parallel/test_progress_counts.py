"""The Dask engine's progress counts pairs measured and frames averaged, not tasks."""

from __future__ import annotations

import re
import time

import dask
import pytest

import daskreg
from daskreg.parallel import tally

from .conftest import N_FRAMES


def _reporting(n: int) -> int:
    tally.report("pairs", n)
    return n


def _wait_for(counter, done: int, seconds: float = 10.0) -> None:
    """Events from workers arrive after the results: wait for them (bounded)."""
    deadline = time.monotonic() + seconds
    while counter.done < done and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize("where", ["distributed", "threads"])
def test_tasks_advance_the_counter_by_what_they_did(where, request):
    """Six tasks reporting 3 pairs each: the counter reaches 18 of a total of 1000 while
    the phase is still open (not set to the total at its end)."""
    client = request.getfixturevalue("client") if where == "distributed" else None
    tasks = [dask.delayed(_reporting, pure=False)(3) for _ in range(6)]
    with tally.counting(client, "pairs", 1000, show=False) as counter:
        if client is None:
            dask.compute(*tasks, scheduler="threads")
        else:
            client.gather(client.compute(tasks))
        _wait_for(counter, 18)
        assert counter.done == 18
    assert counter.done == 1000  # a phase that ended without an error is complete


def test_other_units_do_not_count(client):
    tasks = [dask.delayed(tally.report, pure=False)("frames", 5) for _ in range(3)]
    with tally.counting(client, "pairs", 1000, show=False) as counter:
        client.gather(client.compute(tasks))
        time.sleep(0.5)
        assert counter.done == 0


def test_a_registration_on_a_cluster_shows_pairs_and_frames(series, client, capfd):
    """The bars a user sees: all pairs of the series (136), then the frames refined; no
    task-counting bar of distributed's."""
    daskreg.register(series.stack, client=client, chunks=7, progress=True)
    err = capfd.readouterr().err
    pairs = N_FRAMES * (N_FRAMES - 1) // 2
    assert re.search(rf"daskreg: pairs\s+\[#+\] {pairs}/{pairs}", err), err
    assert re.search(rf"daskreg: refine\s+\[#+\] {N_FRAMES}/{N_FRAMES}", err), err
    assert "Completed" not in err  # distributed's bar: "[####] | 100% Completed"
