"""The method's last step: every frame's shift refined against the average of the others.

Both engines run it the same way: the registered sum with the solve's shifts (the
template; the numpy engine sums the frames' spectra, which it keeps for the next step),
then :func:`daskreg.kernels.refine.refine_shifts` on blocks of frames, then
:func:`combine`, which re-centres the shifts on the used frames' mean position and
gives the final average from the blocks' spectra (no further pass over the frames).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from daskreg.kernels._fft import irfft2_into, rfft2_into
from daskreg.kernels.correlate import half_plane_mask
from daskreg.kernels.refine import Refined, refine_shifts
from daskreg.kernels.shift import CropBounds, crop_bounds, phase_ramp
from daskreg.method.masks import build_mask
from daskreg.params import RegistrationParams

if TYPE_CHECKING:
    from daskreg.method.analyse import MatrixAnalysis

__all__ = ["Template", "combine", "refine_block", "template", "template_of_spectrum", "wanted"]

#: Fewest used frames for a refinement: the leave-one-out template of two frames is the
#: other frame, as noisy as the frame itself.
MIN_FRAMES = 3


@dataclass(frozen=True)
class Template:
    """What every block's refinement shares.

    Attributes
    ----------
    spectrum : ndarray of complex128, shape (ny, nx // 2 + 1)
        Real FFT of the registered sum of the used frames with the solve's shifts.
    n_used : int
    mask_half : ndarray, shape (ny, nx // 2 + 1)
        The registration's mask in the real FFT's layout.
    common : CropBounds
        The region every used frame covers.
    """

    spectrum: np.ndarray
    n_used: int
    mask_half: np.ndarray
    common: CropBounds


def wanted(analysis: MatrixAnalysis, params: RegistrationParams) -> bool:
    """Whether to refine: asked for, the solve reliable, and enough frames used."""
    return bool(params.refine and analysis.reliable and analysis.used.sum() >= MIN_FRAMES)


def template(
    registered_sum: np.ndarray, analysis: MatrixAnalysis, params: RegistrationParams
) -> Template:
    """The shared inputs of the blocks, from the registered sum with the solve's shifts."""
    shape = registered_sum.shape
    spectrum = np.empty((shape[0], shape[1] // 2 + 1), np.complex128)
    rfft2_into(np.asarray(registered_sum, dtype=np.float64)[None], spectrum[None])
    return template_of_spectrum(spectrum, shape, analysis, params)


def template_of_spectrum(
    spectrum: np.ndarray,
    shape: tuple[int, int],
    analysis: MatrixAnalysis,
    params: RegistrationParams,
) -> Template:
    """As :func:`template`, from the registered sum's spectrum.

    Parameters
    ----------
    spectrum : ndarray of complex128, shape (ny, nx // 2 + 1)
        ``rfft2`` of the registered sum, or the same sum of the used frames' spectra,
        each times :func:`~daskreg.kernels.shift.phase_ramp` of minus its shift (the
        numpy engine sums them as it transforms the frames, and keeps the frames'
        spectra for the refinement). Only the mask's columns are used.
    shape : tuple of int
        The frames' ``(ny, nx)``.
    analysis : MatrixAnalysis
    params : RegistrationParams

    Returns
    -------
    Template
    """
    return Template(
        spectrum,
        int(analysis.used.sum()),
        np.real(half_plane_mask(build_mask(params, shape))),
        crop_bounds(analysis.shifts, shape),
    )


def refine_block(
    frames: np.ndarray,
    shifts: np.ndarray,
    shared: Template,
    *,
    spectra: np.ndarray | None = None,
) -> Refined:
    """:func:`~daskreg.kernels.refine.refine_shifts` of one block of frames.

    ``spectra``: the block's frames' ``rfft2`` when already computed.
    """
    return refine_shifts(
        frames,
        shifts,
        shared.spectrum,
        shared.n_used,
        shared.mask_half,
        shared.common,
        spectra=spectra,
    )


def combine(
    analysis: MatrixAnalysis, blocks: list[Refined], shape: tuple[int, int]
) -> tuple[MatrixAnalysis, np.ndarray]:
    """The refined analysis and the uncropped average, from the blocks in frame order.

    The shifts are re-centred on the used frames' mean position (the solve's
    convention); a frame not refined keeps the solve's shift and uncertainty.
    """
    shifts = np.concatenate([b.shifts for b in blocks])
    sigma = np.concatenate([b.sigma for b in blocks])
    refined = np.concatenate([b.refined for b in blocks])
    mean = shifts[analysis.used].mean(axis=0)
    shifts = np.where(analysis.used[:, None], shifts - mean, np.nan)
    uncertainty = np.where(refined[:, None], sigma, analysis.uncertainty)
    spectrum = sum(b.spectrum for b in blocks) * phase_ramp(mean, shape)
    average = np.empty(shape)
    irfft2_into(spectrum[None], shape[1], average[None])
    refined_analysis = replace(
        analysis, shifts=shifts, uncertainty=uncertainty, refined=refined & analysis.used
    )
    return refined_analysis, average / analysis.used.sum()
