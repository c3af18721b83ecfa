"""Where a registration runs: this process, the user's client, a local cluster.

:func:`choose_engine` decides between the in-memory engine (this process) and Dask:
in memory whenever the stack fits comfortably and no cluster option is given.
For Dask, :func:`open_client` picks, in order: an explicit ``client``; a local Dask scheduler
named by ``scheduler`` (``"synchronous"``, ``"threads"``, ``"processes"``, no
distributed cluster); a ``scheduler`` address (``"tcp://host:8786"``); the running
default client (``distributed.get_client()``); otherwise a ``LocalCluster`` sized to
this machine, started here and closed on exit. :func:`compute` runs collections there
with retries and a progress display; :func:`daskreg.parallel.hpc.hpc_cluster` builds a dask-jobqueue
cluster (SLURM, PBS) from a config file.
"""

from __future__ import annotations

import ast
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import dask
import numpy as np
import psutil

from daskreg.errors import DaskregError, ParameterError
from daskreg.parallel import memory, tally
from daskreg.parallel.cluster_faults import on_cluster

__all__ = [
    "LOCAL_SCHEDULERS",
    "DASHBOARD_ADDRESS",
    "WORKER_WAIT_SECONDS",
    "WORKER_ENV",
    "IN_MEMORY_BYTES_PER_PIXEL",
    "IN_MEMORY_FRACTION",
    "in_memory_bytes",
    "choose_engine",
    "local_cluster",
    "open_client",
    "compute",
]

#: Dask's single-machine schedulers, usable without a distributed cluster.
LOCAL_SCHEDULERS = ("synchronous", "threads", "processes")

#: Where the ``LocalCluster`` daskreg starts serves its dashboard: this machine only
#: (a free port). On a shared login node, ``":0"`` would show anyone the task graph,
#: file paths and logs.
DASHBOARD_ADDRESS = "127.0.0.1:0"

#: Seconds a scheduler given by address or file may have no worker before the run
#: stops with an error (instead of waiting forever, silently with ``progress=False``).
WORKER_WAIT_SECONDS = 60.0

#: Environment for worker processes. distributed sets ``MALLOC_TRIM_THRESHOLD_=65536``,
#: which also fixes glibc's mmap threshold at 128 KiB: every temporary array of the pair
#: kernels then becomes a fresh mmap and page faults, costing 2.5x the CPU time per pair
#: (measured at 512^2); and the 64 KiB trim threshold hands the heap's top back to the
#: system after every batch, so the next one page-faults it in again (about 15 % of
#: the time, spent in the kernel). 32 MiB thresholds restore heap reuse while large arrays
#: still go back to the system. Batch jobs export the first in their prologue
#: (jobqueue.yaml); the nanny sets the second from ``distributed.nanny.pre-spawn-environ``.
WORKER_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(32 * 2**20),
}


#: Peak bytes the in-memory engine holds per pixel of the stack, besides the stack itself:
#: 13 (single precision) and 17 (double) measured with tracemalloc on 40 x 512^2 (the
#: frames as float64, their spectra, a batch of correlation maps); 24 leaves a margin.
IN_MEMORY_BYTES_PER_PIXEL = 24
#: ``engine="auto"`` stays in memory while that peak is below this fraction of the
#: memory available: the rest is the user's, and a stack that needs more runs out of
#: core on Dask workers instead.
IN_MEMORY_FRACTION = 0.25

_GUARD = '`if __name__ == "__main__":`'


def in_memory_bytes(shape: Sequence[int], itemsize: int, *, loaded: bool) -> int:
    """Peak memory of registering a stack in this process (the numpy engine).

    Parameters
    ----------
    shape : sequence of int
        The stack's shape, ``(frame, y, x)``.
    itemsize : int
        Bytes per pixel of the stack as stored.
    loaded : bool
        Whether the stack is in memory already (else it is read in: its own bytes count).
    """
    return math.prod(shape) * (IN_MEMORY_BYTES_PER_PIXEL + (0 if loaded else itemsize))


def choose_engine(
    stack: Any,
    engine: Literal["auto", "numpy", "dask"],
    options: Collection[str],
) -> Literal["numpy", "dask"]:
    """The engine a registration runs on.

    Parameters
    ----------
    stack : xarray.DataArray
        Dims ``(..., frame, y, x)``, numpy- or dask-backed.
    engine : {"auto", "numpy", "dask"}
        As asked; only ``"auto"`` is decided here.
    options : collection of str
        Names of the cluster options given (``client``, ``scheduler``, ``n_workers``,
        ``memory_limit``, ``chunks``, ``save_stack``, ``checkpoint``), or a dict of
        them with the None ones left out.

    Returns
    -------
    {"numpy", "dask"}
        ``"numpy"`` (threads in this process) for a ``(frame, y, x)`` stack, from a file
        or an array, whose registration fits in :data:`IN_MEMORY_FRACTION` of the
        available memory (:func:`in_memory_bytes`) when no option is given (the numpy
        engine has none: no checkpoint, no saved stack); else ``"dask"``. A running
        ``distributed.Client`` is not an option: pass it as ``client=`` to use it.

    Raises
    ------
    DaskregError
        Called while a worker process re-imports a script that registers at its top
        level, without the ``if __name__ == "__main__":`` guard.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A spawned process runs the script's top level again before it may start any
        # process itself: register() here is the script's own call, unguarded.
        raise DaskregError(
            "register() was called again by a Dask worker process importing your script: "
            "worker processes re-run a script's top-level code. Put the script's code "
            f"under {_GUARD} (or pass engine='numpy' or scheduler='threads': no processes)"
        )
    if engine != "auto":
        return engine
    if options or len(stack.shape) > 3:
        return "dask"
    need = in_memory_bytes(
        stack.shape, stack.dtype.itemsize, loaded=isinstance(stack.data, np.ndarray)
    )
    available = psutil.virtual_memory().available
    return "numpy" if need < IN_MEMORY_FRACTION * available else "dask"


def _is_main_guard(test: ast.expr) -> bool:
    return isinstance(test, ast.Compare) and {
        ast.unparse(test.left),
        *(ast.unparse(c) for c in test.comparators),
    } == {"__name__", "'__main__'"}


def _unguarded_script_line() -> int | None:
    """The line of the running script's top-level code that led here, if unguarded.

    That is, when it is outside an ``if __name__ == "__main__":`` block; None otherwise
    (no script, e.g. Jupyter or ``python -c``; or the call is guarded). A package's
    ``__main__.py`` (``python -m daskreg.cli``) is never re-run by spawned processes
    (multiprocessing skips it), so it needs no guard.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or not os.path.isfile(path):
        return None
    spec = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if spec == "__main__" or spec.endswith(".__main__"):
        return None
    frame = sys._getframe(1)
    while frame is not None and not (
        frame.f_code.co_name == "<module>" and frame.f_globals is vars(main)
    ):
        frame = frame.f_back
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        tree = ast.parse(Path(path).read_text(), filename=path)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            if node.lineno <= line <= (node.end_lineno or node.lineno):
                return None
    return line


def _refuse_unguarded_script() -> None:
    """Refuse to start worker processes from a script's unguarded top level.

    Spawned workers import the script again: unguarded, its top level runs in every
    worker, which cannot start processes while it starts (hundreds of lines of
    "bootstrapping phase" and "Nanny failed to start" errors, the script's top run
    three times).
    """
    line = _unguarded_script_line()
    method = dask.config.get("distributed.worker.multiprocessing-method", "spawn")
    if line is None or method == "fork":
        return
    script = os.path.basename(sys.modules["__main__"].__file__)
    raise DaskregError(
        f"this registration starts a local Dask cluster, whose worker processes re-run "
        f"{script} from the top, and line {line} of {script} (which leads here) is not "
        f"inside an {_GUARD} block. Put the script's code in one (the Python docs' "
        "'safe importing of main module'), or keep everything in this process: "
        "engine='numpy' or scheduler='threads'"
    )


@contextmanager
def _local_scheduler(name: str) -> Iterator[None]:
    """Dask's local scheduler ``name``; for ``"threads"`` on a pool owned here.

    On Ctrl-C the running tasks then finish (and save their checkpoint entries) before
    the interpreter shuts down, instead of racing Zarr's I/O threads as it does.
    """
    if name != "threads":
        with dask.config.set(scheduler=name):
            yield
        return
    pool = ThreadPoolExecutor(dask.system.CPU_COUNT)
    try:
        with dask.config.set(scheduler=name, pool=pool):
            yield
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Processes started inside inherit an ignored SIGINT.

    Ctrl-C in a terminal reaches every process of the group: each worker would print a
    KeyboardInterrupt traceback, while this process alone should stop, close the
    cluster (which ends its workers) and say how to resume.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def local_cluster(n_workers: int | None = None, memory_limit: str | int | None = None):
    """The ``LocalCluster`` daskreg starts when no cluster is given.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes, one thread each (default: one per core).
    memory_limit : str or int, optional
        Per worker (default: this machine's memory shared evenly).

    Returns
    -------
    distributed.LocalCluster
        With :data:`WORKER_ENV` in its workers' environment; close it when done.
    """
    from distributed import LocalCluster

    _refuse_unguarded_script()
    # One thread per process: the kernels' FFTs thread by themselves and numpy code
    # holds the GIL, so processes, not threads, give the parallelism. The nannies read
    # the environment now and keep it for the workers they restart.
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **WORKER_ENV}
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        _children_ignore_sigint(),
    ):
        try:
            return LocalCluster(
                n_workers=n_workers or dask.system.CPU_COUNT,
                threads_per_worker=1,
                processes=True,
                memory_limit=memory_limit if memory_limit is not None else "auto",
                dashboard_address=DASHBOARD_ADDRESS,
                silence_logs=logging.WARNING,
            )
        except RuntimeError as err:
            # "Nanny failed to start": what a worker re-running an unguarded script
            # gets, when the check above could not see it (e.g. code run by exec).
            if getattr(sys.modules.get("__main__"), "__file__", None) is None:
                raise
            raise DaskregError(
                f"the local Dask cluster did not start ({err}). Its worker processes "
                "import the running script again: if the script's code is not under "
                f"{_GUARD}, put it there; or keep everything in this process with "
                "engine='numpy' or scheduler='threads'"
            ) from err


def _announce(client: Any, progress: bool) -> None:
    if progress:
        print(f"daskreg: Dask dashboard at {client.dashboard_link}", flush=True)


@contextmanager
def _connect(scheduler: str | None, scheduler_file: str | None) -> Iterator[Any]:
    """A client of the scheduler at an address or in a file, with a worker at least."""
    from distributed import Client

    where = f"the scheduler at {scheduler}" if scheduler else f"the scheduler in {scheduler_file}"
    try:
        connected = Client(scheduler, scheduler_file=scheduler_file)
    except (OSError, TimeoutError) as err:
        raise DaskregError(
            f"could not connect to {where} ({err}); check that it runs and that this "
            "machine reaches it"
        ) from None
    with connected:
        try:
            connected.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
        except TimeoutError:
            address = connected.scheduler.address if connected.scheduler else where
            raise DaskregError(
                f"{where} has no workers after {WORKER_WAIT_SECONDS:g} s; start workers "
                f"(dask worker {address}) or check that the batch job holding them runs"
            ) from None
        yield connected


@contextmanager
def open_client(
    client: Any = None,
    scheduler: str | None = None,
    *,
    scheduler_file: str | None = None,
    n_workers: int | None = None,
    memory_limit: str | int | None = None,
    progress: bool = True,
) -> Iterator[Any]:
    """The distributed client to run on (None for a local Dask scheduler).

    Parameters
    ----------
    client : distributed.Client, optional
        Used as is, never closed.
    scheduler : str, optional
        A scheduler address (``"tcp://10.0.0.1:8786"``), connected to and closed on
        exit; or one of :data:`LOCAL_SCHEDULERS` to run without a cluster.
    scheduler_file : str, optional
        A scheduler's file (``dask scheduler --scheduler-file``), connected to likewise.
    n_workers, memory_limit : optional
        Size of the ``LocalCluster`` started when there is no client (default: one
        single-threaded worker process per core, memory shared evenly).
    progress : bool
        Print the dashboard link.

    Yields
    ------
    distributed.Client or None

    Raises
    ------
    ParameterError
        ``n_workers``/``memory_limit`` given with an existing client or scheduler.
    DaskregError
        The scheduler at ``scheduler``/``scheduler_file`` cannot be reached, or has no
        worker after :data:`WORKER_WAIT_SECONDS`.
    """
    given = client is not None or scheduler is not None or scheduler_file is not None
    if given and (n_workers is not None or memory_limit is not None):
        raise ParameterError(
            f"n_workers={n_workers!r} and memory_limit={memory_limit!r} size the local cluster "
            "daskreg starts itself; they cannot resize a given client or scheduler. Drop them, "
            "or drop client/scheduler"
        )
    if scheduler in LOCAL_SCHEDULERS:
        with _local_scheduler(scheduler):
            yield None
        return
    from distributed import Client, get_client

    if client is not None:
        _announce(client, progress)
        yield client
        return
    if scheduler is not None or scheduler_file is not None:
        with _connect(scheduler, scheduler_file) as connected:
            _announce(connected, progress)
            yield connected
        return
    try:
        existing = get_client()
    except ValueError:
        existing = None
    if existing is not None and n_workers is None and memory_limit is None:
        _announce(existing, progress)
        yield existing
        return
    with (
        _first_error_kept(local_cluster(n_workers, memory_limit)) as cluster,
        _first_error_kept(Client(cluster)) as started,
    ):
        _announce(started, progress)
        yield started


@contextmanager
def _first_error_kept(manager: Any) -> Iterator[Any]:
    """``with manager``, but an error closing it never replaces the error that ended the block.

    A cluster closed while its nanny restarts a worker (killed for memory while the run
    failed) raised ``KeyError: 'tcp://...'``, which hid the run's own error.
    """
    value = manager.__enter__()
    try:
        yield value
    except BaseException as err:
        try:
            manager.__exit__(type(err), err, err.__traceback__)
        except Exception:  # noqa: BLE001, S110 - the first error is the one to report
            pass
        raise
    manager.__exit__(None, None, None)


def compute(collections: Sequence[Any], client: Any, *, progress: bool, retries: int) -> list:
    """Compute Dask collections on ``client`` (or the local scheduler) and return the values.

    Tasks are pure, so each may be retried ``retries`` times after an error; tasks
    lost with a worker are recomputed by the scheduler from their inputs. A lost
    scheduler raises :class:`~daskreg.errors.ClusterLostError`.
    A cluster that stalls with paused workers (or none) ends the wait
    (:func:`.memory.gather`).
    """
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar() if progress else nullcontext():
            return list(dask.compute(*collections))
    from distributed import progress as show_progress

    with on_cluster(client):
        futures = client.compute(list(collections), retries=retries)
        if progress:
            # A widget in notebooks with ipywidgets (not a dependency), a text bar elsewhere.
            show_progress(futures, notebook=None if _has_widgets() else False)
        return memory.gather(client, futures)


def compute_counted(
    collections: Sequence[Any],
    client: Any,
    *,
    unit: str,
    total: int,
    show: bool,
    retries: int,
    label: str | None = None,
) -> list:
    """:func:`compute` with a bar of the ``unit`` the tasks report (:mod:`.tally`)."""
    with tally.counting(client, unit, total, label=label, show=show):
        return compute(collections, client, progress=False, retries=retries)


def _has_widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
