"""Chunking of a stack: whole frames per chunk, so per-frame work never crosses chunks."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

from daskreg.errors import ParameterError

__all__ = ["CHUNK_BYTES", "ChunksSpec", "frame_chunks"]

#: Target upper size of one chunk; keeps a few chunks per worker within memory.
CHUNK_BYTES = 64 * 2**20

ChunksSpec = int | Mapping[str, int] | None

_IMAGE_DIMS = ("y", "x")


def frame_chunks(
    dims: tuple[str, ...], shape: tuple[int, ...], itemsize: int, chunks: ChunksSpec
) -> tuple[int, ...]:
    """Chunk sizes for a (leading..., frame, y, x) stack.

    Parameters
    ----------
    dims, shape : tuple
        Dimension names and sizes, ending in ``("frame", "y", "x")``.
    itemsize : int
        Bytes per pixel.
    chunks : int, mapping or None
        ``None``: as many frames per chunk as fit in :data:`CHUNK_BYTES` (at least one);
        int: frames per chunk; mapping: chunk size per dimension name, ``-1`` for the whole
        dimension. y and x are never split.

    Returns
    -------
    tuple of int
        One chunk size per dimension; leading dimensions get 1 unless the mapping says.

    Raises
    ------
    ParameterError
        ``chunks`` is of the wrong type, not positive, names an unknown dimension or
        splits y or x.
    """
    frame_bytes = shape[-1] * shape[-2] * itemsize
    sizes = dict.fromkeys(dims, 1)
    sizes.update(frame=max(1, CHUNK_BYTES // frame_bytes), y=shape[-2], x=shape[-1])
    if isinstance(chunks, Mapping):
        sizes.update(_checked_mapping(chunks, dims, shape))
    elif chunks is not None:
        sizes["frame"] = _checked_size(chunks, "chunks (frames per chunk, or a dict per dimension)")
    return tuple(
        size if size != -1 else extent for size, extent in zip(sizes.values(), shape, strict=True)
    )


def _checked_mapping(
    chunks: Mapping[str, int], dims: tuple[str, ...], shape: tuple[int, ...]
) -> dict[str, int]:
    checked = {}
    for dim, size in chunks.items():
        if dim not in dims:
            raise ParameterError(
                f"chunks names dimension {dim!r}, which the stack does not have; its "
                f"dimensions are {dims}"
            )
        checked[dim] = _checked_size(size, f"chunks[{dim!r}]")
        extent = shape[dims.index(dim)]
        if dim in _IMAGE_DIMS and checked[dim] not in (-1, extent):
            raise ParameterError(
                f"chunks[{dim!r}]={size} would split frames of {extent} pixels along {dim}; "
                "registration works on whole frames. Chunk along 'frame' only, e.g. "
                "chunks={'frame': 8}"
            )
    return checked


def _checked_size(size: object, label: str) -> int:
    if (
        isinstance(size, bool)
        or not isinstance(size, numbers.Integral)
        or not (size > 0 or size == -1)
    ):
        raise ParameterError(
            f"{label} must be a positive int (or -1 for the whole dimension), got {size!r}"
        )
    return int(size)
