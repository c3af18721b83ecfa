"""Faults of a distributed cluster as the user should meet them: one error, no log spam.

:func:`on_cluster` turns the many ways distributed reports a lost scheduler into one
:class:`~daskreg.errors.ClusterLostError`; :func:`distributed_logs` keeps distributed's own
log records (tracebacks of its reconnection, nanny and scheduler lines) off the terminal
for the command line, which shows them with ``--debug``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from daskreg.errors import ClusterLostError

__all__ = ["distributed_logs", "on_cluster"]

#: Loggers of distributed and the libraries it runs on (its web server, its dashboard).
_CLUSTER_LOGGERS = ("distributed", "tornado", "bokeh")


@contextmanager
def distributed_logs(*, show: bool) -> Iterator[None]:
    """Where distributed's log records go: stderr as distributed sets it, or nowhere.

    A lost scheduler makes the client log tracebacks of its reconnection and closing
    (~40 lines) before the run's own error; a killed worker, lines of the nanny and the
    scheduler. The command line prints one line instead, and all of it with ``--debug``.

    Parameters
    ----------
    show : bool
        True: leave the handlers as they are; False: every handler of distributed's (and
        tornado's and bokeh's) loggers is swapped for a ``NullHandler`` inside the block.
    """
    if show:
        yield
        return
    import distributed  # noqa: F401 - its handlers are set up on import

    def ours(name: str) -> bool:
        return any(name == base or name.startswith(f"{base}.") for base in _CLUSTER_LOGGERS)

    loggers = [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if ours(name)
    ]
    saved = {logger: logger.handlers[:] for logger in loggers if logger.handlers}
    null = logging.NullHandler()
    for logger in saved:
        logger.handlers = [null]
    try:
        yield
    finally:
        for logger, handlers in saved.items():
            logger.handlers = handlers


@contextmanager
def on_cluster(client: Any) -> Iterator[None]:
    """A lost connection to the scheduler as one :class:`ClusterLostError`.

    Distributed reports it as cancelled futures ("scheduler-connection-lost"), a closed
    comm or a closed client, depending on when it happens.
    """
    try:
        yield
    except Exception as err:
        reason = getattr(err, "reason", None)
        if reason != "scheduler-connection-lost" and client.status == "running":
            raise
        address = getattr(client.scheduler, "address", None) or "the scheduler"
        raise ClusterLostError(
            f"lost the connection to the Dask scheduler at {address} during the run "
            f"({type(err).__name__}): it stopped, or this machine no longer reaches it. "
            "Start it again (or check the batch job holding it)"
        ) from err
