"""Frame spectra as one Dask task per frame chunk, kept on the cluster or spilled to Zarr.

Each task reads its frames once and returns a :class:`SpectraBlock`: the spectra (or,
when they are spilled, a :class:`StoredSpectra` reference to where they were written)
and the small per-frame :class:`FrameInfo` that the analysis needs. Unusable frames
(NaN/inf pixels, no contrast) are zeroed and hot pixels repaired in a private copy
first (:func:`daskreg.method.screening.prepare_frames`), as the in-memory engine does, so every
engine correlates the same numbers; the quality of each frame comes from the survey
(:mod:`~daskreg.parallel.survey`), which read the frames first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import zarr
from dask.delayed import Delayed

from daskreg import autoparams
from daskreg.kernels.detector import FrameCorrection
from daskreg.method.pairs import PairSetup, half_shifts
from daskreg.method.screening import Survey, prepare_frames, unusable_frames
from daskreg.validate import frame_quality

__all__ = [
    "FrameInfo",
    "SpectraBlock",
    "StoredSpectra",
    "spectra_blocks",
    "create_store",
    "spill_store",
]


@dataclass(frozen=True)
class FrameInfo:
    """What the analysis needs of a chunk of frames (a few numbers per frame).

    Attributes
    ----------
    start : int
        Index of the chunk's first frame.
    finite, std : ndarray, shape (F,)
        :func:`daskreg.validate.frame_quality` of each frame.
    energy : ndarray, shape (F,)
        Masked energy of each frame's spectrum (:meth:`~daskreg.method.pairs.PairSetup.energy`).
    split : ndarray, shape (F, N_SPLITS, 2)
        :func:`~daskreg.method.pairs.half_shifts` of each frame.
    """

    start: int
    finite: np.ndarray
    std: np.ndarray
    energy: np.ndarray
    split: np.ndarray


@dataclass(frozen=True)
class StoredSpectra:
    """Spectra of frames ``start:stop`` written to the Zarr array at ``path``."""

    path: str
    start: int
    stop: int

    def load(self) -> np.ndarray:
        """Read the spectra back."""
        return zarr.open_array(self.path, mode="r")[self.start : self.stop]


@dataclass(frozen=True)
class SpectraBlock:
    """Spectra of one chunk of frames (in memory or stored) and their :class:`FrameInfo`."""

    info: FrameInfo
    spectra: np.ndarray | StoredSpectra

    def load(self) -> np.ndarray:
        """The spectra as an array, read from the store if they were spilled."""
        if isinstance(self.spectra, StoredSpectra):
            return self.spectra.load()
        return self.spectra


def create_store(
    path: str, n_frames: int, spectrum_shape: tuple[int, ...], dtype: np.dtype, chunk: int
) -> str:
    """Create the (empty) Zarr array the spectra tasks write into; returns its path."""
    zarr.create_array(
        path,
        shape=(n_frames, *spectrum_shape),
        chunks=(chunk, *spectrum_shape),
        dtype=dtype,
        fill_value=0,
        overwrite=True,
    )
    return path


def spill_store(path: str, frames: Any, spectrum: np.ndarray) -> str:
    """:func:`create_store` for the spectra of ``frames`` (``(frame, y, x)``, dask-backed).

    Chunked as the frames, each spectrum like ``spectrum``; returns ``path``.
    """
    chunk = frames.data.chunks[0][0]
    return create_store(path, frames.shape[0], spectrum.shape, spectrum.dtype, chunk)


def _spectra_block(
    frames: np.ndarray,
    start: int,
    setup: PairSetup,
    store: str | None,
    correction: FrameCorrection,
    quality: tuple[np.ndarray, np.ndarray] | None,
    noise_frames: np.ndarray | None = None,
) -> SpectraBlock:
    finite, std = frame_quality(frames) if quality is None else quality
    # Hot pixels repaired and unusable frames zeroed in a private copy, like the
    # in-memory engine: the source is untouched.
    frames = prepare_frames(frames, unusable_frames(finite, std), correction)
    spectra, parts = setup.spectra(frames, scale=correction.scale, cuts=True)
    split = half_shifts(
        frames,
        setup,
        scale=correction.scale,
        noise_frames=noise_frames,
        spectra=spectra,
        parts=parts,
    )
    info = FrameInfo(start, finite, std, setup.energy(spectra), split)
    if store is None:
        return SpectraBlock(info, spectra)
    stop = start + len(frames)
    # Chunks align with the store's, so concurrent tasks never write the same chunk.
    zarr.open_array(store, mode="r+")[start:stop] = spectra
    return SpectraBlock(info, StoredSpectra(store, start, stop))


def _info(block: SpectraBlock) -> FrameInfo:
    return block.info


def spectra_blocks(
    frame_chunks: list[Delayed],
    starts: list[int],
    setup: Delayed,
    store: str | None = None,
    *,
    survey: Survey | None = None,
    correction: FrameCorrection | None = None,
    n_frames: int | None = None,
) -> tuple[list[Delayed], list[Delayed]]:
    """One spectra task per chunk of frames, and one small info task per chunk.

    Parameters
    ----------
    frame_chunks : list of Delayed
        The chunks of a ``(frame, y, x)`` stack (``array.to_delayed().ravel()``).
    starts : list of int
        First frame of each chunk.
    setup : Delayed
        The :class:`~daskreg.method.pairs.PairSetup` of the registration.
    store : str, optional
        Zarr array (from :func:`create_store`) to spill the spectra to; they then
        leave memory as soon as written, and each pair task reads its two blocks back.
    survey : Survey, optional
        The series' frame quality (:func:`.survey.survey_graph`), computed; default:
        each task measures its own frames'.
    correction : FrameCorrection, optional
        Its scale and hot pixels (:meth:`~daskreg.method.screening.Survey.correction`);
        default none.
    n_frames : int, optional
        Frames in the series: the checkerboard noise is then measured on the
        sample of :func:`daskreg.autoparams.sample_indices` only (default every frame).

    Returns
    -------
    blocks : list of Delayed
        :class:`SpectraBlock` per chunk.
    infos : list of Delayed
        :class:`FrameInfo` per chunk. Depending on these rather than on ``blocks``
        lets a block's spectra be released once its pair tasks are done.
    """
    correction = FrameCorrection() if correction is None else correction
    ends = [*starts[1:], n_frames]
    sample = None if n_frames is None else autoparams.sample_indices(n_frames)
    blocks = [
        dask.delayed(_spectra_block, pure=True)(
            chunk,
            start,
            setup,
            store,
            correction,
            None if survey is None else (survey.finite[start:end], survey.std[start:end]),
            None if sample is None else np.isin(np.arange(start, end), sample),
        )
        for chunk, start, end in zip(frame_chunks, starts, ends, strict=True)
    ]
    infos = [dask.delayed(_info, pure=True)(block) for block in blocks]
    return blocks, infos
