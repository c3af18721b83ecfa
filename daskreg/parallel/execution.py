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
            An unknown option (naming the closest valid one), or ``resume`` without a
            ``checkpoint``.
        """
        check_names(options, EXECUTION_NAMES, "the execution options")
        execution = cls(**options)
        if execution.resume and execution.checkpoint is None:
            raise ParameterError(
                "resume=True continues from a checkpoint; pass its path as checkpoint=... too"
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
    "n_workers",
    "memory_limit",
    "chunks",
    "save_stack",
    "checkpoint",
)
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
