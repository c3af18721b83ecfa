"""A whole registration result, as an :class:`xarray.Dataset`, to Zarr v3 or NetCDF and back.

:func:`save_dataset` writes a result's dataset (shifts, raw and corrected shift
matrices, outlier mask, bad frames, uncropped average and its coverage map, example
views, and every attribute: parameters, crop bounds, calibration, timings) so that
``xarray.open_zarr(path)`` or ``xarray.open_dataset(path)`` read it as any other
dataset, and :func:`load_dataset` reads back the identical dataset. The result class
(:class:`daskreg.RegistrationResult`, :func:`daskreg.load_result`) wraps it; this
module knows datasets only.

Attribute encoding: strings, numbers and sequences of numbers (``pixel_size``) are
stored as they are; any other attribute (booleans, ``None``, dicts) as a JSON string.
The attribute ``daskreg_attr_kinds`` records which were tuples, lists or JSON, so that
NetCDF, which stores neither booleans nor nested values, round-trips them too.

Integrity: the attribute ``daskreg_digest`` holds a SHA-256 of every variable and of the
attributes as saved, checked by :func:`load_dataset`, and Zarr chunks end in a CRC-32C
checksum. A damaged file (a chunk missing, cut short, zeroed or with a bit flipped)
gives a :class:`~daskreg.errors.FileFormatError` naming the store and what is wrong,
never other values; a missing Zarr chunk would otherwise read as the fill value.
Results saved before the digest existed are read as they are.

OME-Zarr: a ``.zarr`` result's group is also an OME-NGFF 0.5 image of the uncropped
average, and records each frame's shift as NGFF transformations
(:func:`daskreg.io.ome_zarr.result_attributes`); these group attributes are derived
from the variables, so :func:`load_dataset` leaves them out of the dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from daskreg.errors import FileFormatError, OutputPathError, StackFileNotFoundError
from daskreg.io._zarr import is_zarr_store
from daskreg.io.atomic import atomic_path
from daskreg.io.ome_zarr import FRAME_TRANSFORMATIONS, result_attributes
from daskreg.summary import RESULT_VARIABLES

__all__ = ["RESULT_EXTENSIONS", "decode_dataset", "is_encoded", "load_dataset", "save_dataset"]

#: Extensions of the result formats: a Zarr v3 store (directory) or a NetCDF-4 file.
RESULT_EXTENSIONS: tuple[str, ...] = (".zarr", ".nc")

# Attribute holding, per attribute that is not a plain string or number, how it was
# stored: "tuple"/"list" (a list of numbers, which both formats hold) or "json".
_ATTR_KINDS = "daskreg_attr_kinds"
# Tuples nested in JSON attributes must come back as tuples for an exact round trip.
_TUPLE_TAG = "__tuple__"
# Attribute holding the SHA-256 of each variable and of the attributes, as saved.
_DIGEST = "daskreg_digest"
# Group attributes of a Zarr result written for OME-Zarr readers, not part of the dataset.
_NGFF_ATTRS = ("ome", FRAME_TRANSFORMATIONS)
# Every Zarr chunk compressed as xarray does by default, then checksummed.
_ZARR_CODECS = {"compressors": (ZstdCodec(level=3), Crc32cCodec())}


def save_dataset(
    dataset: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = True
) -> Path:
    """Write a result's dataset to a Zarr v3 store or a NetCDF file, atomically.

    The storage half of :func:`daskreg.save_result`: same ``path`` and ``overwrite``,
    same return value and errors. Attributes are encoded as the module explains; the
    data go to a temporary sibling renamed at the end, so a failed write leaves
    neither a partial store nor a damaged previous one.
    """
    path = Path(path)
    writer = _writer(path)
    if path.is_dir() and not is_zarr_store(path):
        raise OutputPathError(
            f"{str(path)!r} is a directory but not a Zarr store; refusing to replace it. "
            "Choose another output path"
        )
    encoded = _encoded(dataset)
    encoded.attrs[_DIGEST] = json.dumps(_digests(dataset))
    with atomic_path(path, overwrite=overwrite) as temp:
        writer(encoded, temp)
    return path


def load_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Read a result's dataset written by :func:`save_dataset`, identical and in memory.

    The storage half of :func:`daskreg.load_result`: same ``path`` and errors; the
    file is closed on return.
    """
    path = Path(path)
    if not path.exists():
        raise StackFileNotFoundError(
            f"no such result: {str(path)!r}; pass the .result.zarr or .nc file written by "
            "daskreg register (--save-result) or RegistrationResult.save"
        )
    if path.suffix.lower() not in RESULT_EXTENSIONS:
        raise FileFormatError(
            f"cannot load a result from {str(path)!r}: results are .zarr stores or .nc files "
            "(a .tif holds only the average); pass the <name>.result.zarr written beside it"
        )
    try:
        with warnings.catch_warnings():
            # A store without consolidated metadata (not written here) is read all the same.
            warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated")
            if path.suffix.lower() == ".zarr":
                opened = xr.open_zarr(path, chunks=None)
            else:
                opened = xr.open_dataset(path)
        with opened:
            dataset = opened.load()
    except Exception as exc:  # noqa: BLE001 - a decoder's own errors (zstd, crc32c) too
        reason = " ".join(str(exc).split())
        raise FileFormatError(
            f"cannot read {str(path)!r} as a result ({type(exc).__name__}: {reason}); "
            "the file is damaged or not a daskreg result, write it again with daskreg register"
        ) from exc
    missing = [name for name in RESULT_VARIABLES if name not in dataset] + (
        [] if "params" in dataset.attrs else ["attribute 'params'"]
    )
    if missing:
        raise FileFormatError(
            f"{str(path)!r} is a dataset but not a daskreg result (missing {missing}); pass "
            "a result written by daskreg register or RegistrationResult.save"
        )
    stored = dataset.attrs.get(_DIGEST)
    decoded = decode_dataset(dataset)
    if stored is not None:
        _check_digests(path, stored, decoded)
    return decoded


def is_encoded(dataset: xr.Dataset) -> bool:
    """True for a result's dataset as a file stores it (opened by xarray, not daskreg)."""
    return _ATTR_KINDS in dataset.attrs


def decode_dataset(dataset: xr.Dataset) -> xr.Dataset:
    """A result's dataset as :func:`save_dataset` wrote it, back to the dataset saved.

    For a result opened with ``xarray.open_zarr`` or ``xarray.open_dataset``: the
    attributes are decoded (JSON, tuples, booleans), text variables turned back into
    fixed-width strings, and the checksums and OME-Zarr attributes, derived from the
    rest, dropped. The checksums are not checked here: :func:`load_dataset` does.
    """
    derived = (*_NGFF_ATTRS, _DIGEST)
    dataset = dataset.drop_encoding()
    dataset.attrs = {k: v for k, v in dataset.attrs.items() if k not in derived}
    return _decoded(dataset)


def _digests(dataset: xr.Dataset) -> dict[str, str]:
    """SHA-256 of each variable (dtype, shape and values) and of the attributes."""
    out = {}
    for name, variable in dataset.variables.items():
        values = np.asarray(variable.values)
        digest = hashlib.sha256(json.dumps([variable.dims, values.shape]).encode())
        if values.dtype.kind in "OUST":
            # Text: its characters, whatever width or string type the format returns.
            digest.update(json.dumps(values.tolist()).encode())
        else:
            digest.update(values.dtype.str.encode() + np.ascontiguousarray(values).tobytes())
        out[str(name)] = digest.hexdigest()
    attrs = {k: v for k, v in dataset.attrs.items() if k != _DIGEST}
    text = json.dumps(_numbers_as_floats(_tag_tuples(attrs)), sort_keys=True, default=repr)
    out[f"{_DIGEST}:attrs"] = hashlib.sha256(text.encode()).hexdigest()
    return out


def _check_digests(path: Path, stored: Any, dataset: xr.Dataset) -> None:
    try:
        expected = json.loads(stored)
        if not isinstance(expected, dict):
            raise ValueError("not a mapping")
    except ValueError:
        raise FileFormatError(
            f"{str(path)!r}: its checksums (attribute {_DIGEST!r}) are damaged, so its values "
            "cannot be trusted; write the result again with daskreg register"
        ) from None
    now = _digests(dataset)
    wrong = sorted(
        name.replace(f"{_DIGEST}:", "")
        for name in set(expected) | set(now)
        if expected.get(name) != now.get(name)
    )
    if wrong:
        raise FileFormatError(
            f"{str(path)!r} is damaged: {', '.join(wrong[:6])}{' ...' if len(wrong) > 6 else ''} "
            "differ from what was saved (checksum); write the result again with daskreg "
            "register"
        )


def _writer(path: Path) -> Callable[[xr.Dataset, Path], None]:
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        return _write_zarr
    if suffix == ".nc":
        return _write_netcdf
    raise FileFormatError(
        f"a result is saved as .zarr or .nc, got {str(path)!r} (extension "
        f"{suffix or '(none)'!r}); end the path in .zarr or .nc (the average alone: .tif)"
    )


def _write_zarr(dataset: xr.Dataset, path: Path) -> None:
    # Consolidated metadata lets xarray.open_zarr(path) open it without a fallback
    # warning; the per-array metadata is written too, so other readers lose nothing.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        encoding = {name: dict(_ZARR_CODECS) for name in dataset.variables}
        dataset.to_zarr(path, mode="w-", zarr_format=3, consolidated=True, encoding=encoding)
    # Written after xarray's attributes, as JSON objects (xarray would store strings);
    # updating the root keeps its consolidated metadata.
    zarr.open_group(str(path), mode="r+").attrs.update(result_attributes(dataset))


def _write_netcdf(dataset: xr.Dataset, path: Path) -> None:
    dataset.to_netcdf(path, format="NETCDF4")


def _encoded(dataset: xr.Dataset) -> xr.Dataset:
    """A shallow copy both formats store: attrs as native values or JSON, text as objects."""
    out = dataset.copy()
    out.attrs = {}
    kinds = {}
    for key, value in dataset.attrs.items():
        value = value.item() if isinstance(value, np.generic) else value
        # HDF5 (NetCDF) text cannot hold NUL characters; JSON escapes them.
        if _is_number(value) or (isinstance(value, str) and "\x00" not in value):
            out.attrs[key] = value
        elif isinstance(value, tuple | list) and value and all(map(_is_number, value)):
            out.attrs[key] = list(value)
            kinds[key] = type(value).__name__
        else:
            out.attrs[key] = json.dumps(_tag_tuples(value))
            kinds[key] = "json"
    out.attrs[_ATTR_KINDS] = json.dumps(kinds)
    for name, variable in dataset.variables.items():
        # Fixed-width text has no Zarr v3 specification (zarr warns); variable-length
        # text has one, and NetCDF stores both.
        if variable.dtype.kind == "U":
            out[name] = variable.astype(object)
    return out


def _decoded(dataset: xr.Dataset) -> xr.Dataset:
    # NetCDF returns numbers as numpy scalars; the saved attrs were Python numbers.
    attrs = {k: v.item() if isinstance(v, np.generic) else v for k, v in dataset.attrs.items()}
    for key, kind in json.loads(attrs.pop(_ATTR_KINDS, "{}")).items():
        if kind == "json":
            attrs[key] = json.loads(attrs[key], object_hook=_untag_tuples)
        else:
            # NetCDF returns number lists as arrays (a scalar for one element).
            values = np.atleast_1d(attrs[key]).tolist()
            attrs[key] = tuple(values) if kind == "tuple" else values
    out = dataset.copy()
    out.attrs = attrs
    for name, variable in dataset.variables.items():
        if variable.dtype.kind in "OT":
            # Back to fixed-width text (numpy cannot cast its StringDType to str directly).
            out[name] = variable.copy(data=np.array(variable.values.tolist(), dtype=str))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers_as_floats(value: Any) -> Any:
    # A format may store a mixed sequence such as (0, 0.5) as one float array: the
    # checksum compares values, not whether a number was written as int or float.
    if isinstance(value, bool) or not isinstance(value, int | float | list | dict):
        return value
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    return float(value)


def _tag_tuples(value: Any) -> Any:
    if isinstance(value, tuple):
        return {_TUPLE_TAG: [_tag_tuples(v) for v in value]}
    if isinstance(value, list):
        return [_tag_tuples(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _tag_tuples(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | np.generic):
        return _tag_tuples(value.tolist())
    return value


def _untag_tuples(obj: dict[str, Any]) -> Any:
    if set(obj) == {_TUPLE_TAG}:
        return tuple(obj[_TUPLE_TAG])
    return obj
