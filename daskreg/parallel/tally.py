"""Progress of the Dask engine in pairs measured and frames averaged, not in tasks.

A Dask task of the engine measures a block of pairs or averages a chunk of frames;
counting tasks (distributed's own bar) said 97 % while the pair blocks still ran. Here
each task reports what it did when it ends (:func:`report`): on a distributed worker as
an event on :data:`TOPIC`, which the client receives while it waits; in the client's
own threads (Dask's local schedulers) straight to the counter. :func:`counting` holds one
:class:`daskreg.progress.Counter` over a phase of the engine
(:func:`daskreg.parallel.cluster.compute_counted`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from daskreg import progress as display

__all__ = ["TOPIC", "counting", "report"]

#: The distributed event topic the tasks report on.
TOPIC = "daskreg-progress"

# Counters of the phases running in this process, by unit, for tasks run by Dask's local
# schedulers (threads of this process).
_LOCAL: dict[str, display.Counter] = {}
_LOCK = threading.Lock()


def report(unit: str, n: int) -> None:
    """Count ``n`` more ``unit`` (``"pairs"``, ``"frames"``) done; called inside a task.

    Costs one small message per task on a cluster and nothing when no phase counts
    ``unit``. Never raises: progress is a courtesy, not part of the result.
    """
    if n <= 0:
        return
    worker = _worker()
    if worker is not None:
        try:
            worker.log_event(TOPIC, {"unit": unit, "n": int(n)})
        except Exception:  # noqa: BLE001 - a closing worker: the count is only shown
            pass
        return
    with _LOCK:
        counter = _LOCAL.get(unit)
    if counter is not None:
        counter.advance(n)


def _worker() -> Any:
    """The distributed worker running this task, or None (no distributed, or the client)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return distributed.get_worker()
    except ValueError:
        return None


@contextmanager
def counting(
    client: Any, unit: str, total: int, *, label: str | None = None, show: bool
) -> Iterator[display.Counter]:
    """A counter of ``unit`` that the phase's tasks advance (:func:`report`).

    Parameters
    ----------
    client : distributed.Client or None
    unit : str
        What the tasks report.
    total : int
    label : str, optional
        What the bar shows (default ``unit``).
    show : bool
        Draw the bar on stderr.

    Yields
    ------
    daskreg.progress.Counter
        Set to ``total`` when the phase ends without an error: events still in flight
        (or from tasks whose results came from a checkpoint) are not waited for.
    """
    counter = display.Counter(label or unit, total, show=show)
    with counter:
        if client is not None:

            def advance(event: tuple[float, Any]) -> None:
                message = event[1]
                if isinstance(message, dict) and message.get("unit") == unit:
                    counter.advance(message.get("n", 0))

            client.subscribe_topic(TOPIC, advance)
        else:
            with _LOCK:
                _LOCAL[unit] = counter
        try:
            yield counter
            counter.advance(total)
        finally:
            if client is not None:
                client.unsubscribe_topic(TOPIC)
            else:
                with _LOCK:
                    _LOCAL.pop(unit, None)
