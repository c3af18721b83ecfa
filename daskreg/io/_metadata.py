"""Turn whatever metadata a reader returns into a JSON string that never fails to encode."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["metadata_json"]

# Larger arrays in metadata are thumbnails or lookup tables, not calibration worth keeping.
_MAX_ARRAY_ITEMS = 1024
# Deeper trees are either cycles or machine dumps no one reads.
_MAX_DEPTH = 32

_DROP = object()


def metadata_json(metadata: Any) -> str:
    """Encode the JSON-serialisable part of a metadata tree.

    Parameters
    ----------
    metadata : Any
        Usually a nested dict from a file reader, or an object with ``as_dictionary()``
        (HyperSpy's ``DictionaryTreeBrowser``).

    Returns
    -------
    str
        A JSON object. Values that JSON cannot hold (dask arrays, large arrays, objects)
        are left out, NaN and infinities become strings, bytes are decoded.
    """
    tree = _jsonable(metadata, 0)
    if tree is _DROP or tree is None:
        tree = {}
    elif not isinstance(tree, dict):
        tree = {"value": tree}
    return json.dumps(tree, allow_nan=False, ensure_ascii=False)


def _jsonable(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return _DROP
    if hasattr(value, "as_dictionary"):
        value = value.as_dictionary()
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        if value.size > _MAX_ARRAY_ITEMS or value.dtype.kind not in "biufUS":
            return _DROP
        return _jsonable(value.tolist(), depth + 1)
    if isinstance(value, Mapping):
        items = ((str(key), _jsonable(item, depth + 1)) for key, item in value.items())
        return {key: item for key, item in items if item is not _DROP}
    if isinstance(value, list | tuple):
        items = (_jsonable(item, depth + 1) for item in value)
        return [item for item in items if item is not _DROP]
    return _DROP
