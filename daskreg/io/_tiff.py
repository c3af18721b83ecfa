"""TIFF stacks (ImageJ, OME or plain) through tifffile, read lazily as a Zarr view of the file.

Axes come from tifffile's series axes: T is the frame axis, Y and X the image; any other
axis (Z, Q, I, C, S ...) is placed by position, the one next to Y becomes the frames.
Calibration comes from the ImageJ ``unit`` + X/YResolution + ``finterval``, the OME
``PhysicalSizeX/Y`` + ``TimeIncrement``, or a metric TIFF ResolutionUnit.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import tifffile
import zarr

from daskreg.errors import FileFormatError, StackShapeError
from daskreg.io._raw import READER_ERRORS, Axis, RawStack, guarded, reading
from daskreg.io._select import Candidate, choose_signal

__all__ = ["TIFF_EXTENSIONS", "read_tiff"]

#: Extensions read by tifffile.
TIFF_EXTENSIONS = (".tif", ".tiff")

_FORMAT = "TIFF"
_AXIS_NAMES = {"T": "frame", "Y": "y", "X": "x"}
# Inch resolutions are display DPI (72, 96, 300), not a sample's pixel size.
_METRIC_RESOLUTION_UNITS = {3: "cm", 4: "mm", 5: "µm"}
# Series tifffile makes of bare pages (no format of its own names them): it groups pages by
# shape, so a page of another size splits the file, and the frames are no longer in order.
_PAGE_SERIES_KINDS = frozenset({"generic", "shaped", "uniform"})


def read_tiff(path: Path, signal: int | str | None) -> RawStack:
    """Open a TIFF series lazily.

    Parameters
    ----------
    path : pathlib.Path
        An existing ``.tif``/``.tiff`` file.
    signal : int, str or None
        Which series to read when the file holds several (index or series name).

    Returns
    -------
    RawStack

    Raises
    ------
    FileFormatError
        tifffile cannot parse the file, reports it corrupt, or image data lie beyond the
        end of the file.
    """
    with reading(path, _FORMAT), tifffile_errors(path), tifffile.TiffFile(path) as tif:
        candidates = [
            Candidate(series.name or f"series {i}", tuple(series.shape), len(series.shape) >= 2)
            for i, series in enumerate(tif.series)
        ]
        if signal is None:
            _check_page_shapes(tif, path)
        index = choose_signal(candidates, signal, source=str(path))
        series = tif.series[index]
        _check_data_in_file(series, tif.filehandle.size, path)
        calibration = _calibration(tif, series, index)
        axes = tuple(_axis(letter, calibration) for letter in series.axes)
        metadata = _file_metadata(tif)
    with reading(path, _FORMAT):
        series_array = _TiffSeriesArray(path, index)
    return RawStack(
        data=guarded(series_array, path, _FORMAT),
        axes=axes,
        source=str(path),
        signal_title=series.name,
        original_metadata=metadata,
        n_signals=len(candidates),
    )


def _axis(letter: str, calibration: dict[str, tuple[float, str]]) -> Axis:
    scale, unit = calibration.get(letter, (1.0, ""))
    return Axis(name=_AXIS_NAMES.get(letter), scale=scale, unit=unit)


def _file_metadata(tif: tifffile.TiffFile) -> dict[str, Any]:
    """The format-specific metadata tifffile parses (ImageJ, OME, FEI, ...), by format."""
    metadata = {}
    for flag in sorted(tif.flags):
        # Vendor tags are parsed on access and may be malformed; that must not fail the read.
        with suppress(*READER_ERRORS):
            value = getattr(tif, f"{flag}_metadata", None)
            if value is not None:
                metadata[flag] = value
    return metadata


class _TiffSeriesArray:
    """One TIFF series as a read-only array-like that survives pickling.

    tifffile's Zarr view holds an open file and a lock, which cannot be sent to dask worker
    processes; this wrapper sends only the path and reopens the view where it is used.
    """

    def __init__(self, path: Path, series: int) -> None:
        self._path = path
        self._series = series
        self._array: zarr.Array | None = None
        array = self._opened()
        self.shape: tuple[int, ...] = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim
        self.chunks: tuple[int, ...] = array.chunks

    def __getitem__(self, key: Any) -> Any:
        return self._opened()[key]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    def __dask_tokenize__(self) -> tuple[str, int, int]:
        return (str(self._path), self._series, self._path.stat().st_mtime_ns)

    def _opened(self) -> zarr.Array:
        if self._array is None:
            store = tifffile.imread(self._path, aszarr=True, series=self._series, level=0)
            # The store owns the file handle; close it with this wrapper, not at exit.
            weakref.finalize(self, store.close)
            self._array = zarr.open(store, mode="r")
        return self._array


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def tifffile_errors(path: Path) -> Iterator[None]:
    # tifffile logs corruption (bad page offsets, truncated ImageJ data) at ERROR level and
    # returns fewer frames instead of raising, so the log is the only sign of it.
    handler = _ErrorRecords()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.messages:
        raise FileFormatError(
            f"{str(path)!r} is a damaged TIFF: {'; '.join(handler.messages)}. The file is "
            "probably truncated; copy it again from the acquisition computer or re-export it"
        )


def _check_page_shapes(tif: tifffile.TiffFile, path: Path) -> None:
    """Refuse a stack of pages of different sizes, naming the first odd page."""
    series = tif.series
    if len(series) < 2 or any(s.kind not in _PAGE_SERIES_KINDS for s in series):
        return
    # Reduced-resolution pages are thumbnails or pyramid levels, not frames.
    pages = [page for page in tif.pages if not getattr(page, "is_reduced", False)]
    first = pages[0].shape
    for page in pages[1:]:
        if page.shape != first:
            raise StackShapeError(
                f"{str(path)!r}: page {page.index} holds an image of shape {page.shape}, "
                f"but page 0 holds {first}; the pages of a TIFF stack must be of one size "
                f"(tifffile splits this file into {len(series)} series). Re-export the "
                "stack with every frame of one size, or read one series with "
                "signal=<index> (--signal on the command line)"
            )


def _check_data_in_file(series: Any, file_size: int, path: Path) -> None:
    for page in series.pages:
        if page is None:
            continue
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)]
        if ends and max(ends) > file_size:
            raise FileFormatError(
                f"{str(path)!r} is truncated: page {page.index} needs bytes up to {max(ends)} "
                f"but the file has {file_size}; copy it again or re-export it"
            )


def _calibration(tif: tifffile.TiffFile, series: Any, index: int) -> dict[str, tuple[float, str]]:
    """Per axis letter, (scale, unit) for the axes the file calibrates."""
    page = series.keyframe
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        unit = str(meta.get("unit", ""))
        calibration = _from_resolution(page.resolution, unit)
        if meta.get("finterval"):
            calibration["T"] = (float(meta["finterval"]), str(meta.get("tunit", "s")))
        return calibration
    if tif.is_ome:
        return _from_ome(tif.ome_metadata, index)
    unit = _METRIC_RESOLUTION_UNITS.get(int(page.resolutionunit), "")
    return _from_resolution(page.resolution, unit) if unit else {}


def _from_resolution(resolution: tuple[float, float], unit: str) -> dict[str, tuple[float, str]]:
    # TIFF stores pixels per unit; a zero resolution means "not set".
    x_res, y_res = resolution
    if not (x_res > 0 and y_res > 0):
        return {}
    return {"X": (1.0 / x_res, unit), "Y": (1.0 / y_res, unit)}


def _from_ome(xml: str, image_index: int) -> dict[str, tuple[float, str]]:
    images = tifffile.xml2dict(xml).get("OME", {}).get("Image", {})
    image = images[image_index] if isinstance(images, list) else images
    pixels = image.get("Pixels", {})
    calibration = {}
    for letter, key, default_unit in (
        ("X", "PhysicalSizeX", "µm"),
        ("Y", "PhysicalSizeY", "µm"),
        ("T", "TimeIncrement", "s"),
    ):
        if key in pixels:
            calibration[letter] = (float(pixels[key]), str(pixels.get(f"{key}Unit", default_unit)))
    return calibration
