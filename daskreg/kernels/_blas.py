"""One BLAS thread for the small products of the pair and solve kernels, cheaply.

``threadpoolctl.threadpool_limits`` finds the loaded BLAS libraries again on every
call (it reads the process's memory map): 5 ms a call on this machine, more than a
live frame's pairs cost. The controller is made once and reused.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from threadpoolctl import ThreadpoolController

__all__ = ["one_blas_thread"]


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread() -> Any:
    """A context manager limiting the BLAS libraries to one thread while it is open."""
    return _controller().limit(limits=1, user_api="blas")
