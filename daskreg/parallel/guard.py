"""The paths a Dask registration writes, checked and locked before it starts.

:func:`guarded` wraps :func:`daskreg.parallel.engine.register_dask`: its checkpoint,
``save_stack`` and ``temp_dir`` may not be, hold or lie inside the stack's source or
each other (:func:`daskreg.io.paths.check_apart`), and the checkpoint and ``save_stack``
are locked for the run (:func:`daskreg.io.lock.hold`), so that a second run on them
refuses instead of deleting the first one's unfinished entries; a run that fails or is
interrupted removes its partial ``save_stack``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from daskreg.io.lock import hold
from daskreg.io.paths import check_apart, input_paths
from daskreg.parallel.saved_stack import removed_on_failure
from daskreg.stack import as_stack

__all__ = ["guarded"]

_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(register: _F) -> _F:
    """``register(stack, params, execution, **kwargs)``, its output paths checked and locked.

    The stack is opened once (:func:`daskreg.stack.as_stack`) and passed on opened.

    Raises
    ------
    OutputPathError
        ``checkpoint``, ``save_stack`` or ``temp_dir`` is, holds or lies inside the
        source or another of them.
    OutputInUseError
        Another run holds the checkpoint or ``save_stack``.
    """

    @functools.wraps(register)
    def run(stack: Any, params: Any, execution: Any, **kwargs: Any) -> Any:
        source = as_stack(stack)
        written = {"checkpoint": execution.checkpoint, "save_stack": execution.save_stack}
        check_apart(
            written,
            input_paths(source.attrs),
            folders={"temp_dir": execution.temp_dir},
        )
        # An interrupted or failed run leaves no partial aligned stack behind.
        with hold(written), removed_on_failure(execution.save_stack):
            return register(source, params, execution, **kwargs)

    return run  # type: ignore[return-value]
