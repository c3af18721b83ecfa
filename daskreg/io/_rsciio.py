"""Vendor formats through RosettaSciIO plugins (lazy): DigitalMicrograph, TIA, EMD, HSPY.

The plugins are called directly, not through ``hyperspy.load``, so HyperSpy stays optional.
Every plugin returns a list of signal dictionaries (``data``, ``axes``, ``metadata``,
``original_metadata``); HyperSpy signals are converted to the same form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from rsciio import digitalmicrograph, emd, hspy, tia

from daskreg.errors import FileFormatError, StackShapeError
from daskreg.io._raw import Axis, RawStack, guarded, reading
from daskreg.io._select import Candidate, choose_signal

__all__ = ["RSCIIO_EXTENSIONS", "raw_from_signal_dict", "read_rsciio"]

_PLUGINS: dict[str, tuple[ModuleType, str]] = {
    ".dm3": (digitalmicrograph, "Gatan DigitalMicrograph"),
    ".dm4": (digitalmicrograph, "Gatan DigitalMicrograph"),
    ".emd": (emd, "EMD (Berkeley or Velox)"),
    ".emi": (tia, "FEI TIA"),
    ".ser": (tia, "FEI TIA"),
    ".hspy": (hspy, "HyperSpy HSPY"),
}

#: Extensions read through RosettaSciIO.
RSCIIO_EXTENSIONS = tuple(_PLUGINS)

_IMAGE_NDIM = 2


def read_rsciio(path: Path, signal: int | str | None) -> RawStack:
    """Read a vendor file lazily and pick its image stack.

    Parameters
    ----------
    path : pathlib.Path
        An existing file with one of :data:`RSCIIO_EXTENSIONS`.
    signal : int, str or None
        Which signal to read when the file holds several; see
        :func:`~daskreg.io._select.choose_signal`.

    Returns
    -------
    RawStack
    """
    plugin, format_name = _PLUGINS[path.suffix.lower()]
    with reading(path, format_name):
        signals = plugin.file_reader(str(path), lazy=True)
    if not signals:
        raise FileFormatError(
            f"{str(path)!r} holds no data the {format_name} reader could find. A TIA .emi "
            "file needs its data files (<name>_1.ser, ...) in the same folder under their "
            "original names; otherwise the file is incomplete, re-export it"
        )
    candidates = [
        Candidate(_title(s), tuple(s["data"].shape), _signal_ndim(s["axes"]) == _IMAGE_NDIM)
        for s in signals
    ]
    index = choose_signal(candidates, signal, source=str(path))
    raw = raw_from_signal_dict(signals[index], source=str(path))
    # RosettaSciIO reads an .hspy file's dataset in its HDF5 chunks: kept, as a Zarr
    # store's. The other formats' chunks are the reader's choice, not the file's.
    return dataclasses.replace(
        raw,
        data=guarded(raw.data, path, format_name),
        n_signals=len(candidates),
        own_chunks=path.suffix.lower() == ".hspy",
    )


def raw_from_signal_dict(signal: Mapping[str, Any], source: str) -> RawStack:
    """Describe one RosettaSciIO signal dictionary.

    Parameters
    ----------
    signal : mapping
        ``data``, ``axes`` (one dict per array axis: ``scale``, ``offset``, ``units``,
        ``navigate``, optionally ``index_in_array``), ``metadata``, ``original_metadata``.
    source : str
        Path or object type, for messages and the ``source`` attribute.

    Returns
    -------
    RawStack
        Signal axes are y and x; a single navigation axis is the frame axis.

    Raises
    ------
    StackShapeError
        The signal is not an image (it has not exactly 2 signal dimensions).
    """
    axes = _axes_in_array_order(signal["axes"])
    title = _title(signal)
    signal_ndim = _signal_ndim(signal["axes"])
    if signal_ndim != _IMAGE_NDIM:
        raise StackShapeError(
            f"{source}: signal {title!r} of shape {tuple(signal['data'].shape)} has "
            f"{signal_ndim} signal dimension(s); daskreg needs images (2 signal dimensions). "
            "Pick an image (signal=<index or title> for a file), or convert a HyperSpy signal "
            "with as_signal2D(...)"
        )
    navigation = [i for i, axis in enumerate(axes) if _navigates(axis, i, len(axes))]
    image_axes = [i for i in range(len(axes)) if i not in navigation]
    names = {image_axes[0]: "y", image_axes[1]: "x"}
    if len(navigation) == 1:
        names[navigation[0]] = "frame"
    return RawStack(
        data=signal["data"],
        axes=tuple(
            Axis(
                name=names.get(i),
                scale=float(axis.get("scale", 1.0)),
                offset=float(axis.get("offset", 0.0)),
                unit=str(axis.get("units") or ""),
            )
            for i, axis in enumerate(axes)
        ),
        source=source,
        signal_title=title,
        original_metadata=signal.get("original_metadata", {}),
    )


def _axes_in_array_order(axes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # Most plugins list axes in array order; the Berkeley EMD one gives index_in_array.
    ordered = sorted(enumerate(axes), key=lambda item: item[1].get("index_in_array", item[0]))
    return [axis for _, axis in ordered]


def _navigates(axis: Mapping[str, Any], index: int, ndim: int) -> bool:
    return bool(axis.get("navigate", index < ndim - _IMAGE_NDIM))


def _signal_ndim(axes: Sequence[Mapping[str, Any]]) -> int:
    ordered = _axes_in_array_order(axes)
    return sum(not _navigates(axis, i, len(ordered)) for i, axis in enumerate(ordered))


def _title(signal: Mapping[str, Any]) -> str:
    return str(signal.get("metadata", {}).get("General", {}).get("title") or "")
