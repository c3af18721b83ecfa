"""Parameters chosen from the data: the mask, its cutoff and the fit window.

``mask="auto"`` (the default), ``sigma_guess=None`` and ``window_radius=None`` are
resolved here, before any pair is measured, from the mean power spectrum of a sample of
frames (:mod:`daskreg.kernels.lattice`): the lattice's primary reflections set the mask's
cutoff and the fit window (:mod:`daskreg.kernels.lattice_rules`), and its translations
are the hops the robust solve corrects.
Both engines call :func:`resolve` on the same sample, so they measure with the same
parameters; the result records what was chosen and why.

References
----------
Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI 10.1016/j.ultramic.2018.04.008:
the mask and threshold choices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import scipy.fft
import xarray as xr

from daskreg.kernels import lattice as lattice_kernels
from daskreg.kernels.detector import FrameCorrection
from daskreg.kernels.lattice_rules import auto_mask, auto_peak_params
from daskreg.params import RegistrationParams

__all__ = ["Resolved", "resolve", "resolve_stack", "sample_indices", "SAMPLE_FRAMES"]

#: Frames whose mean power spectrum finds the lattice: enough to average the noise of
#: a low-dose series down, few enough to read in a moment from any store.
SAMPLE_FRAMES = 16


@dataclass(frozen=True)
class Resolved:
    """Concrete parameters for one series, and what they were chosen from.

    Attributes
    ----------
    params : RegistrationParams
        The parameters with every automatic value filled in.
    changes : dict
        Just the values filled in (to apply to other parameters of the same data).
    lattice : Lattice or None
        The specimen's lattice, when the sample shows one.
    notes : dict of str to str
        For each parameter chosen here, why.
    """

    params: RegistrationParams
    changes: dict[str, object]
    lattice: lattice_kernels.Lattice | None
    notes: dict[str, str]

    @property
    def lattice_basis(self) -> np.ndarray | None:
        """Lattice translations as rows ``(y, x)`` in pixels, or None."""
        return None if self.lattice is None else self.lattice.basis

    def attrs(self) -> dict[str, str]:
        """What a result records of the choice: the notes and the lattice, as JSON."""
        basis = self.lattice_basis
        return {
            "auto_choices": json.dumps(self.notes),
            "lattice_basis": json.dumps(None if basis is None else basis.round(4).tolist()),
        }


def sample_indices(n_frames: int, frames: tuple[int, int] | None = None) -> np.ndarray:
    """Up to :data:`SAMPLE_FRAMES` frame indices spread evenly over the frames in use."""
    start, stop = (0, n_frames) if frames is None else frames
    stop = min(stop, n_frames)
    count = min(SAMPLE_FRAMES, stop - start)
    return np.unique(np.linspace(start, stop - 1, count).round().astype(int))


def resolve(
    params: RegistrationParams,
    sample: np.ndarray,
    *,
    scale: float = 1.0,
    index: np.ndarray | None = None,
) -> Resolved:
    """Fill in the automatic parameters from a sample of frames.

    Parameters
    ----------
    params : RegistrationParams
    sample : ndarray, shape (F, ny, nx)
        Frames spread over the series (:func:`sample_indices`); frames with NaN/inf
        pixels or no contrast add nothing to the spectrum.
    scale : float, default 1
        The series' scale (:class:`~daskreg.kernels.detector.FrameCorrection`).
    index : sequence of int, optional
        With a whole stack as ``sample``: the sampled frames' indices in it (read
        where they are; a copy of 16 frames of 512^2 cost as much as their spectrum).

    Returns
    -------
    Resolved
    """
    sample = np.asarray(sample)
    shape = sample.shape[-2:]
    # Called once per series in the calling process: the transforms use every core.
    with scipy.fft.set_workers(-1):
        power = lattice_kernels.power_spectrum(sample, scale=scale, index=index)
    lattice = lattice_kernels.find_lattice(power, shape)
    changes: dict[str, object] = {}
    notes: dict[str, str] = {}
    if isinstance(params.mask, str) and params.mask == "auto":
        choice = auto_mask(lattice, shape)
        changes.update(choice.as_params())
        notes["mask"] = choice.reason
        if params.n is not None and "n" in changes:
            # A cutoff given with mask="auto" is the user's: only the kind is chosen.
            changes["n"] = params.n
            notes["mask"] = f"{choice.kind} (chosen), cutoff n={params.n:g} as given"
    if params.sigma_guess is None or params.window_radius is None:
        sigma_guess, window_radius = auto_peak_params(lattice)
        # The window must fit the correlation map of small frames.
        window_radius = int(min(window_radius, max(1, (min(shape) - 1) // 2)))
        reason = (
            f"fit window inside one lattice cell (shortest translation "
            f"{lattice.spacing_min:.3g} px)"
            if lattice is not None
            else "no lattice found: the defaults"
        )
        for name, value in (("sigma_guess", sigma_guess), ("window_radius", window_radius)):
            if getattr(params, name) is None:
                changes[name] = value
                notes[name] = reason
    return Resolved(params.replace(**changes) if changes else params, changes, lattice, notes)


def resolve_stack(
    stack: xr.DataArray,
    params: RegistrationParams,
    correction: FrameCorrection | None = None,
) -> Resolved:
    """:func:`resolve` on a sample of one ``(frame, y, x)`` stack, in memory or lazy.

    Only the sampled frames are read (a dask-backed stack computes just those), then
    repaired and scaled by ``correction`` as the engines do before measuring.
    """
    index = sample_indices(int(stack.sizes["frame"]), params.frames)
    sample = np.asarray(stack.data[index])
    if correction is None:
        return resolve(params, sample)
    return resolve(params, correction.repair(sample), scale=correction.scale)
