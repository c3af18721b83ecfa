"""What a live registration keeps of past frames: the frames on disk, the pairs in memory.

:class:`FrameStore` appends each prepared frame to a temporary file (read back through
a memory map, so the process holds only what it reads); :class:`PairTable` keeps the
few numbers each frame and each of its pairs gave, and assembles them into the
:class:`~daskreg.method.measurements.PairMeasurements` of any run of frames.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path

import numpy as np

from daskreg.errors import OutputPathError
from daskreg.kernels.peak_result import PeakResult
from daskreg.method.measurements import PairMeasurements, assemble_pairs
from daskreg.method.pairs import N_SPLITS

__all__ = ["FrameStore", "PairTable"]


def _remove(handle, path: str) -> None:
    handle.close()
    Path(path).unlink(missing_ok=True)


class FrameStore:
    """Frames of one shape and dtype appended to a temporary file, read by memory map.

    Parameters
    ----------
    shape : (ny, nx)
    dtype : numpy dtype
    directory : str or path, optional
        Folder of the file (default: the system temporary folder). The file is removed
        when the store is closed or garbage-collected.
    """

    def __init__(self, shape: tuple[int, int], dtype: np.dtype, directory=None) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        fd, self.path = tempfile.mkstemp(prefix="daskreg-live-", suffix=".frames", dir=directory)
        self._file = os.fdopen(fd, "w+b")
        self._closer = weakref.finalize(self, _remove, self._file, self.path)
        self.n_frames = 0

    def append(self, frame: np.ndarray) -> None:
        """Add one frame ``(ny, nx)`` (converted to the store's dtype)."""
        if not self._closer.alive:
            raise OutputPathError(
                "this live registration was closed (its kept frames are gone); start a new "
                "LiveRegistration to register more frames"
            )
        self._file.write(np.ascontiguousarray(frame, dtype=self.dtype).tobytes())
        self.n_frames += 1

    def frames(self) -> np.ndarray:
        """Every frame so far, ``(N, ny, nx)``, as a read-only memory map."""
        self._file.flush()
        if not self.n_frames:
            return np.zeros((0, *self.shape), self.dtype)
        return np.memmap(self.path, self.dtype, "r", shape=(self.n_frames, *self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes on disk."""
        return self.n_frames * int(np.prod(self.shape)) * self.dtype.itemsize

    def close(self) -> None:
        """Remove the file."""
        self._closer()


class PairTable:
    """Per-frame and per-pair measurements of a growing series, pairs ``j - i <= band``.

    Row ``j`` holds the pairs ``(j - d, j)`` for ``d = 1 .. band`` (the pairs the frame
    made when it arrived); arrays grow by doubling.
    """

    def __init__(self, band: int, capacity: int = 256) -> None:
        self.band = band
        self.n_frames = 0
        self.shift = np.full((capacity, band, 2), np.nan)
        self.ok = np.zeros((capacity, band), bool)
        self.peak = np.full((capacity, band), np.nan)
        self.measured = np.zeros((capacity, band), bool)
        self.energy = np.full(capacity, np.nan)
        self.split = np.full((capacity, N_SPLITS, 2), np.nan)

    def _grow(self) -> None:
        for name in ("shift", "ok", "peak", "measured", "energy", "split"):
            old = getattr(self, name)
            new = np.empty((2 * len(old), *old.shape[1:]), old.dtype)
            new[: len(old)] = old
            new[len(old) :] = False if old.dtype == bool else np.nan
            setattr(self, name, new)

    def append(self, found: PeakResult, energy: float, split: np.ndarray) -> None:
        """The next frame's pairs with the ``len(found)`` frames before it (nearest last)."""
        if self.n_frames == len(self.energy):
            self._grow()
        row, count = self.n_frames, len(found.shifts)
        # found[k] pairs frame row - count + k with this one: offset d = count - k.
        cols = np.arange(count)[::-1]
        self.shift[row, cols] = found.shifts
        self.ok[row, cols] = found.ok
        self.peak[row, cols] = found.peak
        self.measured[row, cols] = True
        self.energy[row] = energy
        self.split[row] = split
        self.n_frames += 1

    def pairs(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, PeakResult]:
        """Pairs with both frames in ``[start, stop)``, sorted by ``i`` then ``j``."""
        rows = np.arange(start, stop)
        offsets = np.arange(1, self.band + 1)
        i = rows[:, None] - offsets[None, :]
        keep = (i >= start) & self.measured[rows]
        jj, dd = np.nonzero(keep)
        order = np.lexsort((rows[jj], i[jj, dd]))
        jj, dd = jj[order], dd[order]
        r = rows[jj]
        found = PeakResult(self.shift[r, dd], self.ok[r, dd], self.peak[r, dd])
        return i[jj, dd], r, found

    def measurements(
        self,
        start: int,
        stop: int,
        lattice_basis: np.ndarray | None,
        split: np.ndarray | None = None,
    ) -> PairMeasurements:
        """The :class:`PairMeasurements` of frames ``[start, stop)``, indexed from 0.

        ``split`` replaces the stored half-frame shifts of those frames.
        """
        i, j, found = self.pairs(start, stop)
        pairs = assemble_pairs(
            stop - start,
            i - start,
            j - start,
            found,
            self.energy[start:stop],
            self.band,
            self.split[start:stop] if split is None else split,
        )
        pairs.lattice_basis = lattice_basis
        return pairs
