"""The Fourier mask and the peak-fit window chosen from a series' lattice.

Rules measured on :func:`daskreg.synthetic.lattice_series` (see the constants), applied
to the :class:`~daskreg.kernels.lattice.Lattice` that
:func:`~daskreg.kernels.lattice.find_lattice` reads from the power spectrum: the mask
keeps the primary reflections and the low frequencies that tell the unit cells apart,
and the ``gf`` fit window stays inside one cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from daskreg.kernels.lattice import Lattice
from daskreg.kernels.lattice_basis import reduce_any

__all__ = ["MaskChoice", "auto_mask", "auto_peak_params"]

# auto_mask, measured on lattice_series (see the report of issue 17): the mask cut
# q_max = 1/(2n) goes at this multiple of the outermost primary reflection radius.
_HANN_CUT = 3.0
# Primary reflection radii differing by more than this make the lattice anisotropic
# (said in the reason; the measured rule is the same).
_ANISOTROPY = 1.5
# n = 1 puts the cut at the Nyquist frequency.
_MIN_N = 1.0
# auto_peak_params, measured (hann mask of auto_mask, dose 5, 256^2, 2 seeds): the RMS
# error falls as the window shrinks towards a quarter of the shortest translation
# (a = 12: 0.036 px at radius 6, 0.034 at 3; a = 30 broad peaks: 0.212 at 14, 0.185
# at 6), and larger windows never helped; sigma_guess made no difference (the fit
# converges from either start).
_WINDOW_FRACTION = 0.25
_MIN_WINDOW = 2
_MAX_WINDOW = 6
_SIGMA_FRACTION = 0.2
_MIN_SIGMA = 1.0

MaskKindChoice = Literal["hann", "bandpass", "gaussian", "elliptical"]


@dataclass(frozen=True)
class MaskChoice:
    """A Fourier mask chosen from the lattice, with the reason.

    Attributes
    ----------
    kind : {"hann", "bandpass", "gaussian", "elliptical"}
        Mask kind, as ``register(mask=...)``. The measured rule of :func:`auto_mask`
        gives ``"hann"`` (``"bandpass"`` when there is no lattice); the other kinds
        are the vocabulary a caller or a later rule may fill in.
    n : float or None
        Cutoff of the radial kinds (``register(n=...)``); None for ``"elliptical"``.
    n1, n2, theta : float or None
        Elliptical mask (``register(n1=, n2=, theta=)``), theta in radians from +x
        towards +y; None for the radial kinds.
    reason : str
        One sentence for the report: what was measured and why this mask.
    """

    kind: MaskKindChoice
    n: float | None
    n1: float | None
    n2: float | None
    theta: float | None
    reason: str

    def as_params(self) -> dict[str, float | str]:
        """The choice as ``register`` keyword arguments."""
        if self.kind == "elliptical":
            return {"mask": "elliptical", "n1": self.n1, "n2": self.n2, "theta": self.theta}
        return {"mask": self.kind, "n": self.n}


def auto_mask(lattice: Lattice | None, shape: tuple[int, int]) -> MaskChoice:
    """Choose the Fourier mask from the primary reflections.

    Parameters
    ----------
    lattice : Lattice or None
        From :func:`find_lattice`; None gives today's default with a reason saying so.
    shape : tuple of int
        Frame shape ``(ny, nx)``. The cut is in cycles per pixel, so the choice does
        not depend on it today; it is there for rules that will (a cut near the
        frame's own lowest frequencies).

    Returns
    -------
    MaskChoice
        Kind, cutoff and the reason; :meth:`MaskChoice.as_params` gives the
        ``register`` keywords.

    Notes
    -----
    The rule is a ``"hann"`` mask whose cut ``q_max = 1/(2n)`` lies at three times the
    radius of the outermost primary reflection (the longer vector of the reduced
    reciprocal basis), capped at the Nyquist frequency (``n >= 1``). It was chosen by
    measurement (``register`` on :func:`daskreg.synthetic.lattice_series`,
    perovskite / hexagonal / anisotropic, spacing 8-30 px, doses 1-20 counts per
    column with read noise 1, 256^2 and 512^2, 3 seeds; the fraction of raw pairs
    within 1 px of the truth): "cutting just beyond" the reflections, as the
    tutorial advises, makes pairs hop more with every kind tried (hann at 1.1-1.5x:
    its weight at the reflections is then 2-25 %; bandpass peaking on them), because
    the reflections are what locates a pair to a fraction of a pixel, while the low
    frequencies (vacancies, defects) tell the right cell from its neighbours; the
    Hann mask keeps both. Cuts of 2.5-5x formed a plateau, best near 3x. For
    anisotropic lattices (primary radii differing by more than 1.5x) an elliptical
    mask cut at 1.5-5x along each reciprocal axis did no better than this round
    cut beyond the outer reflection, so the rule is the same and the reason says
    so.

    References
    ----------
    .. [1] B. H. Savitzky et al., "Image registration of low signal-to-noise
       cryo-STEM data", Ultramicroscopy 191, 56-65 (2018),
       DOI 10.1016/j.ultramic.2018.04.008 (and its tutorial: at low dose, cut the
       mask just beyond the Bragg reflections).
    """
    if lattice is None:
        return MaskChoice(
            "bandpass",
            4.0,
            None,
            None,
            None,
            "no lattice reflection stands above the noise of the power spectrum, so "
            "the mask is the default (bandpass, n=4)",
        )
    lengths = np.sort(np.hypot(*reduce_any(lattice.reciprocal_basis).T))
    outer = float(lengths[-1])
    n = max(_MIN_N, 1.0 / (2.0 * _HANN_CUT * outer))
    period = 1.0 / outer
    anisotropy = float(lengths[-1] / lengths[0])
    shape_note = (
        f"; the radii differ by {anisotropy:.1f}x, yet one round cut beyond the outer "
        "reflection measured better than an elliptical one"
        if anisotropy > _ANISOTROPY
        else ""
    )
    return MaskChoice(
        "hann",
        n,
        None,
        None,
        None,
        f"outermost primary reflection at a {period:.1f} px period: hann mask cut at "
        f"{_HANN_CUT:g}x its radius (n={n:.2f}){shape_note}",
    )


def auto_peak_params(lattice: Lattice | None) -> tuple[float, int]:
    """Starting width and window of the ``gf`` peak fit from the lattice.

    Parameters
    ----------
    lattice : Lattice or None
        From :func:`find_lattice`; None gives the defaults ``(2.0, 6)``.

    Returns
    -------
    sigma_guess : float
        Starting Gaussian width, pixels.
    window_radius : int
        Half-width of the fit window, pixels; the window stays inside one lattice
        cell, since the neighbouring correlation peaks are one translation away.

    Notes
    -----
    ``window_radius = clip(floor(spacing_min / 4), 2, 6)`` and ``sigma_guess =
    clip(spacing_min / 5, 1, window_radius / 2)``, chosen by measurement: smaller
    windows were never worse and larger ones up to half a cell were worse (see the
    constants' comment); the start width did not change the result.

    References
    ----------
    .. [1] B. H. Savitzky et al., "Image registration of low signal-to-noise
       cryo-STEM data", Ultramicroscopy 191, 56-65 (2018),
       DOI 10.1016/j.ultramic.2018.04.008.
    """
    if lattice is None:
        return 2.0, 6
    spacing = lattice.spacing_min
    window_radius = int(np.clip(math.floor(_WINDOW_FRACTION * spacing), _MIN_WINDOW, _MAX_WINDOW))
    sigma_guess = float(min(max(_MIN_SIGMA, _SIGMA_FRACTION * spacing), window_radius / 2))
    return sigma_guess, window_radius
