"""What a reader looks at to judge one pair: a frame, the Fourier mask, the correlation.

Every engine stores :func:`example_views` of two used frames in its result (the
``example_*`` variables), which the figures of :mod:`daskreg.plot` draw; for any other
pair or mask setting they ask :func:`pair_views`, which measures the pair exactly as a
registration does, so the figures compute nothing themselves.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from daskreg.autoparams import resolve
from daskreg.kernels import correlate, detector
from daskreg.method.masks import build_mask
from daskreg.method.pairs import measure_pairs, pair_setup
from daskreg.params import RegistrationParams
from daskreg.validate import frame_quality

__all__ = ["PairViews", "example_views", "pair_views"]


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


def example_views(
    frame_a: np.ndarray, frame_b: np.ndarray, params: RegistrationParams
) -> dict[str, np.ndarray]:
    """What a reader of the report looks at: one frame, the mask, one pair's correlation.

    Parameters
    ----------
    frame_a, frame_b : ndarray, shape (ny, nx)
        Two used frames (the first two, by convention).
    params : RegistrationParams

    Returns
    -------
    dict
        ``example_frame`` (ny, nx); ``fourier_mask`` (ny, nx), centred; and
        ``example_correlation`` (ny, nx), centred so that zero shift is at
        ``(ny // 2, nx // 2)``.
    """
    shape = frame_a.shape
    mask = build_mask(params, shape)
    pair = np.stack([frame_a, frame_b])
    scale = detector.series_scale(frame_quality(pair)[1])
    spectra = correlate.frame_spectra(
        pair, dtype=params.spectrum_dtype, scale=scale, window=params.window
    )
    corr = correlate.correlation_maps(
        spectra[:1], spectra[1:], correlate.half_plane_mask(mask), shape, params.correlation
    )[0]
    return {
        "example_frame": np.asarray(frame_a, dtype=np.float64),
        "fourier_mask": np.fft.fftshift(mask),
        "example_correlation": np.fft.fftshift(corr),
    }


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
    The views of one pair shown by Savitzky et al., Ultramicroscopy 191, 56-65 (2018),
    DOI 10.1016/j.ultramic.2018.04.008.

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
