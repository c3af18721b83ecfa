"""Per-thread scratch arrays, reused from one block of pairs to the next.

The band-limited pair kernel needs a few arrays of a few MiB per block of pairs. Made
fresh each time they cost a memset and, at these sizes, page faults (the allocator
hands them back to the system between blocks): a fifth of the kernel's time in all.
Each thread keeps its own, so the threads of the numpy engine never share one.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

import numpy as np

__all__ = ["scratch"]

_local = threading.local()


def scratch(name: Hashable, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """The calling thread's array ``name`` of ``shape``, reused between calls.

    Zero when first made, afterwards whatever its last user left in it.

    A zero-padded transform input stays padded as long as its users write only the
    part they pad (the transforms here never overwrite their input), so such a name
    must say what is padded (e.g. include the band geometry). Blocks of fewer items get
    the first rows of the array kept for the largest block so far.
    """
    arrays = _local.__dict__.setdefault("arrays", {})
    key = (name, tuple(shape[1:]), np.dtype(dtype))
    array = arrays.get(key)
    if array is None or len(array) < shape[0]:
        array = arrays[key] = np.zeros(shape, dtype)
    return array[: shape[0]]
