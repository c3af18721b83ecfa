"""The numpy engine: the method's steps on one stack held in memory.

:class:`daskreg.Registration` keeps the parameters and what each step has computed, and
calls these for the steps; the Dask engine (:mod:`daskreg.parallel`) runs the same
method functions on blocks of its graph instead. In one process the work may use every
core: the FFTs run on all of them, the pairs in one thread per core.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft
from dask.system import CPU_COUNT

from daskreg import autoparams
from daskreg.kernels import detector, shift
from daskreg.kernels._fft import rfft2_into
from daskreg.method import refinement
from daskreg.method.measurements import PairMeasurements, assemble_pairs
from daskreg.method.pairs import half_shifts, measure_pairs, pair_indices, pair_setup
from daskreg.method.screening import Survey, initial_bad_frames, prepare_frames, survey_frames
from daskreg.params import RegistrationParams

if TYPE_CHECKING:
    from daskreg.method.analyse import MatrixAnalysis

__all__ = ["LoadedFrames", "load_frames", "measure", "refined_average"]


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
    # Blocks of frames on every core (numpy's reductions release the GIL), merged as
    # the Dask engine merges its chunks' surveys.
    bounds = np.linspace(0, len(frames), min(CPU_COUNT, len(frames)) + 1).astype(int)
    blocks = [frames[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    with ThreadPoolExecutor(len(blocks)) as pool:
        survey = Survey.merge(list(pool.map(survey_frames, blocks)))
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
        spectra, parts = setup.spectra(frames, scale=scale, cuts=True)
    i, j = pair_indices(n_frames, params.band)
    found = measure_pairs(spectra, spectra, i, j, setup, threads=CPU_COUNT, on_batch=on_batch)
    with scipy.fft.set_workers(-1):
        split = half_shifts(
            frames,
            setup,
            scale=scale,
            noise_frames=np.isin(np.arange(n_frames), autoparams.sample_indices(n_frames)),
            spectra=spectra,
            parts=parts,
            threads=CPU_COUNT,
        )
    pairs = assemble_pairs(n_frames, i, j, found, setup.energy(spectra), params.band, split)
    pairs.lattice_basis = lattice_basis
    return pairs


def refined_average(
    frames: np.ndarray, analysis: MatrixAnalysis, params: RegistrationParams
) -> tuple[MatrixAnalysis, np.ndarray]:
    """The average, after refining the shifts when the parameters ask for it.

    Parameters
    ----------
    frames : ndarray, shape (N, ny, nx)
    analysis : MatrixAnalysis
        The solve's.
    params : RegistrationParams

    Returns
    -------
    analysis : MatrixAnalysis
        With the refined shifts and uncertainties (:mod:`daskreg.method.refinement`),
        or ``analysis`` itself when not refined.
    average : ndarray, shape (ny, nx)
        Uncropped.
    """
    if not refinement.wanted(analysis, params):
        with scipy.fft.set_workers(-1):
            total = shift.registered_sum(frames, analysis.shifts)
        return analysis, total / analysis.used.sum()
    # Every frame transformed once, for the template and the refinement (the registered
    # sum and the refinement each transformed every frame: a third of the step's time
    # at 40 x 512^2). Within the engine's memory: the pairs' spectra are freed by now.
    # Blocks of frames on every core, each transformed and summed in its thread (the
    # kernels' transforms are single frames).
    shape = frames.shape[1:]
    spectra = np.empty((len(frames), shape[0], shape[1] // 2 + 1), np.complex128)
    bounds = np.linspace(0, len(frames), min(CPU_COUNT, len(frames)) + 1).astype(int)
    blocks = list(zip(bounds[:-1], bounds[1:], strict=True))

    def transform(ab: tuple[int, int]) -> np.ndarray:
        total = np.zeros_like(spectra[0])
        for k in range(*ab):
            rfft2_into(np.asarray(frames[k : k + 1], dtype=np.float64), spectra[k : k + 1])
            if np.isfinite(analysis.shifts[k]).all():
                shift.add_shifted(spectra[k], -analysis.shifts[k], shape, total)
        return total

    def refine(ab: tuple[int, int]) -> refinement.Refined:
        a, b = ab
        return refinement.refine_block(
            frames[a:b], analysis.shifts[a:b], shared, spectra=spectra[a:b]
        )

    with ThreadPoolExecutor(len(blocks)) as pool:
        total = sum(pool.map(transform, blocks))
        shared = refinement.template_of_spectrum(total, shape, analysis, params)
        refined = list(pool.map(refine, blocks))
    return refinement.combine(analysis, refined, shape)
