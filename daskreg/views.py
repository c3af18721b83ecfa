"""What a reader looks at to judge one pair: a frame, the Fourier mask, the correlation.

The figures of :mod:`daskreg.plot` draw what a result stores (its ``example_*``
variables); for any other pair or mask setting they ask :func:`pair_views`, which
measures the pair exactly as a registration does, so the figures compute nothing
themselves.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from daskreg.autoparams import resolve
from daskreg.params import RegistrationParams
from daskreg.pipeline import example_views, measure_pairs, pair_setup

__all__ = ["PairViews", "pair_views"]


class PairViews(NamedTuple):
    """One pair as the registration sees it.

    Attributes
    ----------
    fourier_mask : ndarray, shape (ny, nx)
        The mask, centred (zero frequency at ``(ny // 2, nx // 2)``).
    correlation : ndarray, shape (ny, nx)
        The pair's correlation, centred so that zero shift is at ``(ny // 2, nx // 2)``.
    shift : ndarray, shape (2,)
        ``r_ij = s_j - s_i`` as the registration measures it, ``(dy, dx)`` in pixels.
    """

    fourier_mask: np.ndarray
    correlation: np.ndarray
    shift: np.ndarray


def pair_views(
    frame_a: np.ndarray, frame_b: np.ndarray, params: RegistrationParams
) -> PairViews:
    """Mask, correlation and the shift the registration would measure for one pair.

    Parameters
    ----------
    frame_a, frame_b : ndarray, shape (ny, nx)
        Frames ``i`` and ``j`` of the pair.
    params : RegistrationParams
        Mask, correlation kind and maximum finder, as for a registration.

    Returns
    -------
    PairViews

    References
    ----------
    B. H. Savitzky, I. El Baggari, C. B. Clement, et al., "Image registration of low
    signal-to-noise cryo-STEM data", Ultramicroscopy 191, 56-65 (2018).
    DOI 10.1016/j.ultramic.2018.04.008

    Examples
    --------
    >>> from daskreg.params import RegistrationParams
    >>> from daskreg.synthetic import lattice_series
    >>> series = lattice_series(2, (64, 64), seed=3)
    >>> views = pair_views(*series.stack, RegistrationParams(mask="hann", n=4))
    >>> bool(abs(views.shift - (series.shifts[1] - series.shifts[0])).max() < 0.5)
    True
    """
    # Automatic parameters (mask="auto", the fit window) from these two frames.
    params = resolve(params, np.stack([frame_a, frame_b])).params
    views = example_views(frame_a, frame_b, params)
    setup = pair_setup(params, frame_a.shape)
    spectra = setup.spectra(np.stack([frame_a, frame_b]))
    found = measure_pairs(spectra, spectra, np.array([0]), np.array([1]), setup)
    return PairViews(views["fourier_mask"], views["example_correlation"], found.shifts[0])
