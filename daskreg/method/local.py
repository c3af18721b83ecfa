"""The numpy engine: the method's steps on one stack held in memory.

:class:`daskreg.Registration` keeps the parameters and what each step has computed, and
calls these for the steps; the Dask engine (:mod:`daskreg.parallel`) runs the same
method functions on blocks of its graph instead. In one process the work may use every
core: the FFTs run on all of them, the pairs in one thread per core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
from dask.system import CPU_COUNT

from daskreg import autoparams
from daskreg.kernels import detector, shift
from daskreg.method.measurements import PairMeasurements, assemble_pairs
from daskreg.method.pairs import half_shifts, measure_pairs, pair_indices, pair_setup
from daskreg.method.screening import initial_bad_frames, prepare_frames, survey_frames
from daskreg.params import RegistrationParams

__all__ = ["LoadedFrames", "load_frames", "measure", "registered_average"]


@dataclass(frozen=True)
class LoadedFrames:
    """The frames of a stack as they are correlated and averaged, with their screening.

    Attributes
    ----------
    frames : ndarray, shape (N, ny, nx)
        Hot pixels repaired and unusable frames zeroed
        (:func:`~daskreg.method.screening.prepare_frames`).
    initial_bad : dict
        Frame -> reason, for the frames that cannot be correlated at all.
    correction : FrameCorrection
        The series' scale and hot pixels.
    """

    frames: np.ndarray
    initial_bad: dict[int, str]
    correction: detector.FrameCorrection


def load_frames(frames: np.ndarray, params: RegistrationParams) -> LoadedFrames:
    """Screen a stack in memory (:mod:`daskreg.method.screening`) and prepare its frames.

    Parameters
    ----------
    frames : ndarray, shape (N, ny, nx)
        The stack's values (not modified).
    params : RegistrationParams

    Returns
    -------
    LoadedFrames

    Raises
    ------
    NonFiniteError
        Frames that cannot be correlated while ``params.detect_bad_frames`` is False.
    """
    frames = np.asarray(frames)
    survey = survey_frames(frames)
    # Refused before the hot pixels are looked for (and warned about).
    bad = initial_bad_frames(survey.unusable, params)
    correction = survey.correction()
    return LoadedFrames(prepare_frames(frames, bad, correction), bad, correction)


def measure(
    frames: np.ndarray,
    params: RegistrationParams,
    scale: float,
    lattice_basis: np.ndarray | None,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> PairMeasurements:
    """Correlate every pair of the stack (or a band of pairs) and split every frame.

    Parameters
    ----------
    frames : ndarray, shape (N, ny, nx)
        :attr:`LoadedFrames.frames`.
    params : RegistrationParams
        With the automatic parameters resolved (:func:`daskreg.autoparams.resolve`).
    scale : float
        The series' intensity scale (:attr:`LoadedFrames.correction`).
    lattice_basis : ndarray, shape (B, 2), optional
        The specimen's lattice translations, kept for the robust solve.

    Returns
    -------
    PairMeasurements
    """
    n_frames = len(frames)
    setup = pair_setup(params, frames.shape[1:])
    # In one process the work may use every core (Dask workers keep one each).
    with scipy.fft.set_workers(-1):
        spectra = setup.spectra(frames, scale=scale)
    i, j = pair_indices(n_frames, params.band)
    found = measure_pairs(
        spectra, spectra, i, j, setup, threads=CPU_COUNT, on_batch=on_batch
    )
    with scipy.fft.set_workers(-1):
        split = half_shifts(
            frames,
            setup,
            scale=scale,
            noise_frames=np.isin(np.arange(n_frames), autoparams.sample_indices(n_frames)),
            spectra=spectra,
        )
    pairs = assemble_pairs(n_frames, i, j, found, setup.energy(spectra), params.band, split)
    pairs.lattice_basis = lattice_basis
    return pairs


def registered_average(frames: np.ndarray, shifts: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Shift the used frames by the Fourier shift theorem and average them (uncropped).

    Parameters
    ----------
    frames : ndarray, shape (N, ny, nx)
    shifts : ndarray, shape (N, 2)
        Displacement of each frame (NaN for frames left out).
    used : ndarray of bool, shape (N,)

    Returns
    -------
    ndarray, shape (ny, nx)
    """
    # One process: the transforms may use every core.
    with scipy.fft.set_workers(-1):
        return shift.registered_sum(frames, shifts) / used.sum()
