"""Worker memory: frame chunks sized to the workers' limits, the minimum named, no pause forever.

distributed pauses a worker whose process passes a fraction of its memory limit
(``distributed.worker.memory.pause``, 80 % by default) and resumes it below that. Most
of a daskreg worker's memory is not task results it could spill but the modules it
imports (about 220 MiB), the compiled kernels it loads (60 MiB from numba's cache, 115
MiB compiled in the worker) and the temporaries of the task it runs: a worker paused by
them stays paused, and a run waiting on it hangs silently.
So :func:`fit_stack` measures each worker once daskreg is imported and its kernels are
loaded, cuts the frames into chunks whose tasks fit beside that with a margin, and
refuses at once a cluster whose workers cannot hold tasks of :data:`MIN_FRAMES` frames,
naming the memory limit that would; and :func:`gather` ends a run whose workers make no
progress while paused (or that has no worker left) for :func:`stall_seconds` with
:class:`WorkerMemoryError`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import dask
import psutil
import xarray as xr

from daskreg.errors import WorkerMemoryError

__all__ = [
    "TASK_BYTES_PER_PIXEL",
    "WORKER_MARGIN_BYTES",
    "KERNEL_BYTES",
    "KERNEL_COMPILE_BYTES",
    "MIN_FRAMES",
    "SPECTRA_FRACTION",
    "STALL_SECONDS",
    "WorkerMemory",
    "worker_memory",
    "fit_stack",
    "stall_seconds",
    "gather",
]

#: Peak bytes a task holds per pixel of its chunk of frames. The spectra task peaks
#: highest: 12-16 bytes per pixel measured with tracemalloc (4-32 frames of 256^2 and
#: 512^2: the frames as float32, zeroed/repaired copy, transforms); the survey and the
#: average pieces less, a pair task under 1 MiB. Workers' peaks grew by about 1.6 MiB
#: per frame of 256^2 from 8- to 16-frame chunks (bench_memory.py).
TASK_BYTES_PER_PIXEL = 16
#: Memory a worker needs beyond what it holds with daskreg imported and its kernels
#: loaded, and beyond its tasks: the heap glibc keeps for reuse (trim threshold 32 MiB,
#: :data:`.cluster.WORKER_ENV`), transfers and small results. Measured on 500 x 256^2,
#: band 16, 2 workers: peaks of 140-155 MiB above the imports with 8- and 16-frame
#: chunks (benchmarks/README.md), of which 60 MiB are the kernels; 96 MiB let 512 MiB
#: workers be fitted with 11-frame chunks of that stack, which paused one at 418 MiB.
WORKER_MARGIN_BYTES = 84 * 2**20
#: What loading the compiled kernels adds to a worker, counted before they are loaded:
#: 60 MiB measured from numba's cache (:mod:`daskreg.warm`). Compiling them in the
#: worker, where its cache is not shared with this process, adds
#: :data:`KERNEL_COMPILE_BYTES` (115 MiB measured).
KERNEL_BYTES = 64 * 2**20
KERNEL_COMPILE_BYTES = 120 * 2**20
#: Fewest frames per chunk the workers are fitted with. Smaller chunks make so many
#: tasks, and results held until the analysis, that a worker's memory grows with their
#: number instead: 1-frame chunks of 500 x 256^2, band 16, paused 423 MiB workers at
#: 340 MiB, 20 MiB above 16-frame chunks.
MIN_FRAMES = 8
#: Share of the workers' room (beyond :data:`WORKER_MARGIN_BYTES`) left to the frame
#: spectra kept in memory; larger spectra are spilled to Zarr, and the tasks get the rest.
SPECTRA_FRACTION = 0.25
#: Seconds a run may make no progress while a worker is paused or no worker is left,
#: before it stops (:func:`gather`); the environment variable ``DASKREG_STALL_SECONDS``
#: overrides it.
STALL_SECONDS = 120.0
# How often the cluster's state is read while waiting, and the futures looked at.
_POLL_SECONDS = 1.0
_DONE_POLL_SECONDS = 0.02
# How long a worker killed while importing daskreg may take to be restarted and asked.
_RESTART_SECONDS = 30.0
_MIB = 2**20


@dataclass(frozen=True)
class WorkerMemory:
    """One worker's memory, as :func:`worker_memory` measures it.

    Attributes
    ----------
    address : str
    limit : int
        Its memory limit in bytes (0: none).
    pause : float
        Fraction of ``limit`` at which distributed pauses it (1.0 if it never does).
    held : int
        Resident bytes of its process once daskreg's task modules are imported and its
        kernels loaded (before they are: as measured plus :data:`KERNEL_BYTES`).
    nthreads : int
        Tasks it runs at once.
    """

    address: str
    limit: int
    pause: float
    held: int
    nthreads: int

    def room(self) -> float:
        """Bytes its tasks and spectra may use: up to the pause, beyond the held and margin."""
        if not self.limit:
            return math.inf
        return self.limit * self.pause - self.held - WORKER_MARGIN_BYTES

    def minimum_limit(self, task: int) -> int:
        """The memory limit at which this worker could run tasks of ``task`` bytes.

        Rounded up to 16 MiB: what a worker holds varies by a few MiB between runs.
        """
        per_worker = (self.nthreads + 1) * task / (1 - SPECTRA_FRACTION)
        need = (self.held + WORKER_MARGIN_BYTES + per_worker) / self.pause
        return math.ceil(need / (16 * _MIB)) * 16 * _MIB


def _probe(dask_worker: Any, load_kernels: bool) -> dict[str, Any]:
    # The modules every task of a registration unpickles, imported now so that their
    # memory counts in what the worker holds; the kernels, compiled or loaded from
    # numba's cache, likewise (their first call in a task would grow the worker).
    import daskreg.parallel.pairs  # noqa: F401
    import daskreg.parallel.reduce  # noqa: F401
    import daskreg.parallel.spectra  # noqa: F401
    import daskreg.parallel.survey  # noqa: F401

    if load_kernels:
        from daskreg.warm import warm_kernels

        warm_kernels()
    manager = dask_worker.memory_manager
    return {
        "limit": int(manager.memory_limit or 0),
        "pause": manager.memory_pause_fraction,
        "held": psutil.Process().memory_info().rss + (0 if load_kernels else KERNEL_BYTES),
        "nthreads": int(dask_worker.state.nthreads),
    }


def worker_memory(client: Any, *, load_kernels: bool = True) -> list[WorkerMemory]:
    """Each worker's limit, pause fraction and memory held with daskreg loaded.

    Runs a function on every worker (``client.run``), which works on paused workers too.
    With ``load_kernels`` the workers load daskreg's compiled kernels first (compiling
    them where numba's cache lacks them), otherwise :data:`KERNEL_BYTES` is counted for
    them.
    """
    probes = client.run(_probe, load_kernels=load_kernels)
    return [
        WorkerMemory(
            address,
            p["limit"],
            float(p["pause"]) if p["pause"] else 1.0,
            int(p["held"]),
            max(p["nthreads"], 1),
        )
        for address, p in sorted(probes.items())
    ]


def _probe_imports(client: Any, pixels: int) -> list[WorkerMemory]:
    """:func:`worker_memory` without loading the kernels; a worker lost meanwhile is named.

    A worker can die importing daskreg: its modules are 220-300 MiB resident (the
    file-backed pages of llvmlite's library count, more of them when the file is fresh
    in the page cache, as after an install), and the nanny kills a worker past 95 % of
    its limit.
    """
    try:
        return worker_memory(client, load_kernels=False)
    except Exception as err:  # noqa: BLE001 - a worker killed mid-probe: comm errors vary
        limits = _worker_limits(client)
        if not limits:
            raise
        limit, nthreads = min(limits)
        terminate = float(dask.config.get("distributed.worker.memory.terminate") or 0.95)
        pause = float(dask.config.get("distributed.worker.memory.pause") or 1.0)
        # It held more than the nanny's terminate fraction: a lower bound.
        held = int(terminate * limit)
        worker = WorkerMemory("", limit, pause, held + KERNEL_BYTES, nthreads)
        raise WorkerMemoryError(
            f"a Dask worker stopped while importing daskreg ({type(err).__name__}): "
            f"with a memory limit of {_mib(limit)} the nanny stops it past "
            f"{_mib(held)}, and daskreg's modules and kernels need more. Give each worker "
            f"at least {_mib(worker.minimum_limit(_task_bytes(MIN_FRAMES, pixels)))} "
            f"(memory_limit=...)"
        ) from err


def _worker_limits(client: Any) -> list[tuple[int, int]]:
    """``(memory limit, threads)`` of the workers with a limit, once one is there.

    The nanny restarts a worker it killed: waited for up to :data:`_RESTART_SECONDS`;
    empty if none comes.
    """
    deadline = time.monotonic() + _RESTART_SECONDS
    while True:
        try:
            info = client.scheduler_info(n_workers=-1)["workers"].values()
        except Exception:  # noqa: BLE001 - no scheduler to ask
            return []
        limits = [(int(w.get("memory_limit") or 0), int(w.get("nthreads") or 1)) for w in info]
        if limits or time.monotonic() > deadline:
            return [limit for limit in limits if limit[0]]
        time.sleep(_POLL_SECONDS / 5)


def _loaded_workers(client: Any, before: list[WorkerMemory], pixels: int) -> list[WorkerMemory]:
    """:func:`worker_memory` with the kernels loaded; a worker lost meanwhile is named.

    The kernels go into numba's cache in this process first (when it lacks them), so
    that workers sharing its file system load them rather than compile them.
    """
    from daskreg import progress
    from daskreg.warm import warm_kernels

    if progress.kernels_cold():
        warm_kernels()
    try:
        return worker_memory(client)
    except Exception as err:  # noqa: BLE001 - a worker killed mid-probe: comm errors vary
        tight = min(before, key=lambda w: w.room())
        compiling = WorkerMemory(
            tight.address,
            tight.limit,
            tight.pause,
            tight.held - KERNEL_BYTES + KERNEL_COMPILE_BYTES,
            tight.nthreads,
        )
        raise WorkerMemoryError(
            f"a Dask worker stopped while loading daskreg's compiled kernels "
            f"({type(err).__name__}): with a memory limit of {_mib(tight.limit)} it "
            f"held {_mib(tight.held - KERNEL_BYTES)} before them, and compiling them "
            f"takes about {_mib(KERNEL_COMPILE_BYTES)} more. Give each worker at least "
            f"{_mib(compiling.minimum_limit(_task_bytes(MIN_FRAMES, pixels)))} "
            f"(memory_limit=...)"
        ) from err


def _task_bytes(n_frames: int, frame_pixels: int) -> int:
    return n_frames * frame_pixels * TASK_BYTES_PER_PIXEL


def _fits(worker: WorkerMemory, task: int) -> bool:
    return (worker.nthreads + 1) * task <= (1 - SPECTRA_FRACTION) * worker.room()


def _mib(n: float) -> str:
    return f"{n / _MIB:.0f} MiB"


def _check_fewest(
    workers: list[WorkerMemory], fewest: int, pixels: int, shape: tuple[int, ...]
) -> None:
    """Refuse workers that cannot run tasks of ``fewest`` frames, naming the limit needed."""
    tight = min(workers, key=lambda w: w.room() / (w.nthreads + 1))
    if _fits(tight, _task_bytes(fewest, pixels)):
        return
    raise WorkerMemoryError(
        f"the Dask workers have too little memory for the registration: worker {tight.address} "
        f"has a memory limit of {_mib(tight.limit)} and is paused by distributed at "
        f"{tight.pause:.0%} of it ({_mib(tight.limit * tight.pause)}); it holds "
        f"{_mib(tight.held)} with daskreg loaded, and tasks of {fewest} "
        f"{shape[-2]}x{shape[-1]} frames need "
        f"{_mib(WORKER_MARGIN_BYTES + (tight.nthreads + 1) * _task_bytes(fewest, pixels))}"
        f" more with their margin. Give each worker at least "
        f"{_mib(tight.minimum_limit(_task_bytes(fewest, pixels)))} (memory_limit=...)"
    )


def fit_stack(
    stack: xr.DataArray, client: Any, *, explicit: bool = False
) -> tuple[xr.DataArray, float]:
    """The stack in frame chunks whose tasks fit in every worker, and the spectra's room.

    Parameters
    ----------
    stack : xarray.DataArray
        From :func:`~daskreg.parallel.engine.prepare_stack`: dask-backed, whole frames.
    client : distributed.Client or None
        None (a local Dask scheduler): the stack as it is, this machine's available memory.
    explicit : bool
        The frames per chunk were asked for (``chunks=``): refused if too large, rather
        than made smaller.

    Returns
    -------
    stack : xarray.DataArray
        Rechunked along frames only if its chunks' tasks would not fit, to the largest
        number of frames that fits (a divisor of the chunk when one is close), never
        below :data:`MIN_FRAMES` (nor below its own chunks).
    spectra_room : float
        Bytes of spectra the workers may keep in memory together; more are spilled.

    Raises
    ------
    WorkerMemoryError
        A worker cannot run tasks of :data:`MIN_FRAMES` frames (naming the memory limit
        that would do), or ``explicit`` chunks do not fit (naming the largest that do).
    """
    if client is None:
        return stack, SPECTRA_FRACTION * psutil.virtual_memory().available
    pixels = int(stack.shape[-1] * stack.shape[-2])
    chunk = int(max(stack.data.chunks[-3]))
    fewest = min(MIN_FRAMES, chunk)
    # First with the kernels counted, not loaded: workers too small to load them are
    # refused without being pushed past their limit (the nanny would kill them).
    workers = _probe_imports(client, pixels)
    if not workers:
        return stack, 0.0
    _check_fewest(workers, fewest, pixels, stack.shape)
    workers = _loaded_workers(client, workers, pixels)
    _check_fewest(workers, fewest, pixels, stack.shape)
    spectra_room = SPECTRA_FRACTION * sum(w.room() for w in workers)
    tight = min(workers, key=lambda w: w.room() / (w.nthreads + 1))
    if _fits(tight, _task_bytes(chunk, pixels)):
        return stack, spectra_room
    largest = max(f for f in range(fewest, chunk) if _fits(tight, _task_bytes(f, pixels)))
    if explicit:
        raise WorkerMemoryError(
            f"chunks={chunk} frames per chunk is too large for the Dask workers: worker "
            f"{tight.address} (memory limit {_mib(tight.limit)}, paused at "
            f"{_mib(tight.limit * tight.pause)}, holding {_mib(tight.held)}) runs "
            f"{tight.nthreads + 1} tasks of {_mib(_task_bytes(chunk, pixels))} at once. "
            f"Give chunks={largest} or fewer, or at least "
            f"{_mib(tight.minimum_limit(_task_bytes(chunk, pixels)))} per worker"
        )
    # A divisor of the chunk within 3/4 of the largest keeps every new chunk inside one
    # chunk of the source (each read once).
    divisors = [
        f for f in range(largest, fewest - 1, -1) if chunk % f == 0 and 4 * f >= 3 * largest
    ]
    size = divisors[0] if divisors else largest
    return stack.chunk({"frame": size}), spectra_room


def stall_seconds() -> float:
    """:data:`STALL_SECONDS`, or the environment's ``DASKREG_STALL_SECONDS``."""
    value = os.environ.get("DASKREG_STALL_SECONDS")
    return STALL_SECONDS if value is None else float(value)


def _transitions(dask_scheduler: Any) -> int:
    return int(dask_scheduler.transition_counter)


def _stalled(client: Any) -> tuple[bool, str]:
    """Whether nothing can progress: no worker, or a paused one and none executing."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if not workers:
        return True, "the cluster has no workers"
    paused = {a: w for a, w in workers.items() if w.get("status") == "paused"}
    executing = sum(
        w.get("metrics", {}).get("task_counts", {}).get("executing", 0) for w in workers.values()
    )
    if not paused or executing:
        return False, ""
    described = ", ".join(
        f"{address} at {_mib(w.get('metrics', {}).get('memory', 0))} of its "
        f"{_mib(w.get('memory_limit') or 0)} limit"
        for address, w in sorted(paused.items())
    )
    return True, f"{len(paused)} of {len(workers)} workers paused for memory ({described})"


def gather(client: Any, futures: list[Any]) -> list[Any]:
    """``client.gather(futures)``, ended if the cluster stalls for :func:`stall_seconds`.

    Raises
    ------
    WorkerMemoryError
        For :func:`stall_seconds` no task changed state while a worker was paused for
        memory and none executed, or while there was no worker. The futures are
        cancelled; a checkpoint keeps the pair blocks saved so far.
    """
    limit = stall_seconds()
    since: float | None = None
    last = None
    check = time.monotonic() + _POLL_SECONDS
    # Polled, not distributed.wait(timeout=): with waits that time out, the next
    # phase's graph of a rechunked stack met keys the scheduler still knew ("Detected
    # different run_spec" warnings, 500 frames in chunks of 14); polling gives none.
    while not all(future.done() for future in futures):
        time.sleep(_DONE_POLL_SECONDS)
        if time.monotonic() < check:
            continue
        check = time.monotonic() + _POLL_SECONDS
        try:
            count = client.run_on_scheduler(_transitions)
        except Exception:  # noqa: BLE001 - a scheduler that refuses it: state only
            count = None
        stalled, why = _stalled(client)
        if not stalled or (count is not None and count != last):
            since, last = None, count
            continue
        since = time.monotonic() if since is None else since
        if time.monotonic() - since >= limit:
            client.cancel(futures)
            raise WorkerMemoryError(
                f"the registration made no progress for {limit:g} s: {why}. Give each "
                "worker more memory (memory_limit=...), use fewer frames per chunk "
                "(chunks=...), or set DASKREG_STALL_SECONDS to wait longer"
            )
    return client.gather(futures)
