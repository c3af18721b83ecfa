"""How and where to run: the execution options of the Dask engine, defined once.

:class:`Execution` is their definition (name, type, default); :data:`EXECUTION_PARAMETERS`
the keyword-only parameters generated from it for the signatures of
:func:`daskreg.register`, :func:`daskreg.register_series` and
:func:`daskreg.register_4dstem`; :func:`split_options` separates them from the method
parameters. :func:`daskreg.parallel.engine.register_dask` runs with them.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, get_type_hints

from daskreg.errors import ParameterError
from daskreg.signatures import check_names

__all__ = ["Execution", "EXECUTION_NAMES", "EXECUTION_PARAMETERS", "split_options"]


@dataclass(frozen=True)
class Execution:
    """How and where to run: the execution options, defined once.

    Every field but ``retries`` is a keyword-only argument of :func:`daskreg.register`,
    :func:`daskreg.register_series` and :func:`daskreg.register_4dstem`, with this
    type and default (:data:`EXECUTION_PARAMETERS`); :func:`daskreg.register` documents
    each. :meth:`from_options` builds one from those arguments and checks them.
    """

    client: Any = None
    scheduler: str | None = None
    scheduler_file: str | os.PathLike | None = None
    n_workers: int | None = None
    memory_limit: str | int | None = None
    chunks: int | None = None
    progress: bool | None = None
    save_stack: str | None = None
    temp_dir: str | None = None
    retries: int = field(default=2, metadata={"option": False})
    checkpoint: str | os.PathLike | None = None
    resume: bool = False
    keep_checkpoint: bool = False

    @classmethod
    def from_options(cls, **options: Any) -> Execution:
        """The execution of the given options (the others at their defaults), checked.

        Parameters
        ----------
        **options
            Any of :data:`EXECUTION_NAMES`.

        Returns
        -------
        Execution
            ``checkpoint`` as a ``str``.

        Raises
        ------
        ParameterError
            An unknown option (naming the closest valid one); ``resume`` without a
            ``checkpoint``; ``n_workers`` not an integer >= 1; ``memory_limit`` not a
            size (``"4GiB"``, bytes or ``"auto"``); ``scheduler`` neither a local
            scheduler's name nor an address; ``scheduler_file`` or ``temp_dir`` not an
            existing file or folder; ``scheduler_file`` with ``client`` or ``scheduler``.
            Checked before anything starts, so a typo costs no cluster, no checkpoint.
        """
        check_names(options, EXECUTION_NAMES, "the execution options")
        execution = cls(**options)
        if execution.resume and execution.checkpoint is None:
            raise ParameterError(
                "resume=True continues from a checkpoint; pass its path as checkpoint=... too"
            )
        _check_workers(execution.n_workers)
        _check_memory_limit(execution.memory_limit)
        _check_temp_dir(execution.temp_dir)
        execution = replace(execution, scheduler=_scheduler(execution.scheduler))
        if execution.scheduler_file is not None:
            execution = replace(
                execution, scheduler_file=_scheduler_file(execution, execution.scheduler_file)
            )
        if execution.checkpoint is not None:
            execution = replace(execution, checkpoint=os.fspath(execution.checkpoint))
        return execution

    def dask_only(self) -> list[str]:
        """Names of the options given that only the Dask engine serves.

        They choose it when ``engine="auto"``.
        """
        return [name for name in _DASK_ONLY if getattr(self, name) is not None]


# The options that need a cluster or a Dask graph; progress, temp_dir and the resume
# flags leave the in-memory engine usable.
_DASK_ONLY = (
    "client",
    "scheduler",
    "scheduler_file",
    "n_workers",
    "memory_limit",
    "chunks",
    "save_stack",
    "checkpoint",
)
#: Dask's names of its local schedulers (no cluster), each with the name daskreg uses.
LOCAL_SCHEDULER_NAMES = {
    "threads": "threads",
    "processes": "processes",
    "synchronous": "synchronous",
    "sync": "synchronous",
    "single-threaded": "synchronous",
}
# A scheduler address: "tcp://host:port" (any protocol distributed knows) or "host:port".
_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://\S+|[\w.\-\[\]:]+:\d+)$")


def _check_workers(n_workers: Any) -> None:
    # bool is an int: True workers is a mistake, not one worker.
    if n_workers is None:
        return
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ParameterError(
            f"n_workers={n_workers!r} is not a number of worker processes: give "
            "an integer >= 1, e.g. 4, or leave it out for one per core"
        )


def _check_memory_limit(memory_limit: Any) -> None:
    if memory_limit is None or memory_limit == "auto":
        return
    from dask.utils import parse_bytes

    try:
        size = memory_limit if isinstance(memory_limit, int) else parse_bytes(memory_limit)
    except (ValueError, TypeError):
        size = None
    if isinstance(memory_limit, bool) or not isinstance(size, int) or size < 1:
        raise ParameterError(
            f"memory_limit={memory_limit!r} is not a memory size: give one "
            "per worker like '4GiB' or '500MB', a number of bytes, or 'auto' (this "
            "machine's memory shared evenly)"
        )


def _check_temp_dir(temp_dir: Any) -> None:
    # Not created here: a typo would otherwise spill gigabytes into a folder nobody
    # looks at (and mkdtemp needs the folder anyway).
    if temp_dir is not None and not os.path.isdir(temp_dir):
        raise ParameterError(
            f"temp_dir={os.fspath(temp_dir)!r} is not an existing folder: "
            "create it first, or leave it out for the system's temporary folder"
        )


def _scheduler(scheduler: Any) -> str | None:
    """The scheduler as daskreg names it, checked: a local one's name or an address."""
    if scheduler is None:
        return None
    if isinstance(scheduler, str):
        if scheduler in LOCAL_SCHEDULER_NAMES:
            return LOCAL_SCHEDULER_NAMES[scheduler]
        if _ADDRESS.match(scheduler):
            return scheduler
    raise ParameterError(
        f"scheduler={scheduler!r} is neither a local scheduler "
        f"({', '.join(LOCAL_SCHEDULER_NAMES)}) nor a scheduler's address like "
        "tcp://10.0.0.1:8786; for a scheduler file pass scheduler_file=..."
    )


def _scheduler_file(execution: Execution, path: str | os.PathLike) -> str:
    if execution.client is not None or execution.scheduler is not None:
        raise ParameterError(
            f"scheduler_file={os.fspath(path)!r} names the scheduler to connect to, and so "
            "does the client or scheduler given too; give only one of scheduler_file, "
            "scheduler and client"
        )
    if not os.path.isfile(path):
        raise ParameterError(
            f"scheduler_file={os.fspath(path)!r} is not an existing file: "
            "start the scheduler first (dask scheduler --scheduler-file PATH) and pass the "
            "path it writes"
        )
    return os.fspath(path)


_HINTS = get_type_hints(Execution)
#: The execution options as keyword-only parameters: name, type and default from
#: :class:`Execution`, for the signatures of the functions taking them.
EXECUTION_PARAMETERS: tuple[inspect.Parameter, ...] = tuple(
    inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=_HINTS[f.name]
    )
    for f in fields(Execution)
    if f.metadata.get("option", True)
)
#: Names of the execution options, in the signatures' order.
EXECUTION_NAMES: tuple[str, ...] = tuple(p.name for p in EXECUTION_PARAMETERS)


def split_options(kwargs: dict[str, Any]) -> tuple[Execution, dict[str, Any]]:
    """The execution options among keyword arguments (checked), and the others.

    Parameters
    ----------
    kwargs : dict
        Keyword arguments of a function taking :data:`EXECUTION_PARAMETERS` and the
        method parameters.

    Returns
    -------
    Execution, dict
        The execution, and the remaining arguments (the method parameters).
    """
    options = {k: v for k, v in kwargs.items() if k in EXECUTION_NAMES}
    rest = {k: v for k, v in kwargs.items() if k not in EXECUTION_NAMES}
    return Execution.from_options(**options), rest
