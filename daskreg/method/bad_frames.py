"""Statistics that find bad frames from the pair stage: contrast, correlation, tears.

Each takes per-frame or per-pair numbers the pair stage measured and returns the frames
far from the series' own typical value; :func:`daskreg.method.analyse.analyse_shift_matrix`
leaves them out with their reason.
"""

from __future__ import annotations

import numpy as np

from daskreg.kernels.lattice import nearest_translation
from daskreg.kernels.layout import PairLayout, pair_layout
from daskreg.kernels.robust import RAYLEIGH_MEDIAN
from daskreg.method.pairs import TEAR_ROWS

__all__ = ["contrast_outliers", "weak_frames", "torn_frames", "frames_mostly_outliers"]

# A frame whose pairs are mostly outliers is itself bad (blank, torn, out of focus).
BAD_FRAME_OUTLIER_FRACTION = 0.5
# A frame correlating this much worse than the series (relative to its median) is bad.
WEAK_FRAME_DROP = 0.1
# A frame whose contrast in the mask's band (masked energy) differs from the series median
# by more than this factor is bad: 4 in energy is 2 in amplitude, far beyond the few per
# cent that shot noise and slow beam-current drift change it by.
CONTRAST_FACTOR = 4.0
# Torn frames: a frame's halves must be displaced by this many robust standard deviations
# of the series' and by this fraction of the shortest lattice translation
# to be called torn.
TEAR_SIGMAS = 8.0
TEAR_FRACTION = 0.25
# Most frames (as a share of those used) an off-centre cut may call torn (see torn_frames).
OFF_CENTRE_SHARE = 0.1


def weak_frames(
    quality: np.ndarray,
    measured: np.ndarray,
    used: np.ndarray,
    layout: PairLayout | None = None,
) -> np.ndarray:
    """Frames whose correlation with the others is far weaker than the series'.

    A torn frame (a jump mid-scan) correlates consistently with every other frame, so
    transitivity cannot catch it, but only part of it matches: its correlation
    coefficients drop (to about the fraction of rows on the larger side of the tear).
    Blank and defocused frames drop too. A frame is weak when the median coefficient
    of its pairs is below the series median by more than six robust standard
    deviations and by more than ``WEAK_FRAME_DROP`` of the median.

    Parameters
    ----------
    quality : ndarray, shape (N, N)
        Correlation coefficient of each measured pair (peak / sqrt(E_i E_j)).
    measured : ndarray of bool, shape (N, N)
    used : ndarray of bool, shape (N,)
    layout : PairLayout, optional
        Storage of ``quality`` and ``measured`` (default dense).

    Returns
    -------
    ndarray of int
        Indices of weak frames.
    """
    layout = pair_layout(len(used)) if layout is None else layout
    pairs = measured & layout.outer(used, used) & ~layout.diagonal()
    per_frame = np.full(len(used), np.nan)
    for k in np.flatnonzero(used & pairs.any(axis=1)):
        per_frame[k] = np.median(quality[k, pairs[k]])
    values = per_frame[np.isfinite(per_frame)]
    if len(values) < 3:
        return np.zeros(0, dtype=int)
    centre = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - centre))
    limit = centre - max(6.0 * spread, WEAK_FRAME_DROP * abs(centre))
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(per_frame < limit)


def contrast_outliers(energy: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Frames whose contrast is far from the series': saturated, blanked or over-bright.

    The masked energy is the variance of a frame in the mask's band, so it measures the
    lattice contrast the correlation works with. A frame clipped at the detector's
    maximum over most of its area loses that contrast; a frame recorded at a different
    gain or beam current scales it by the square of the factor. Both still correlate
    with the series, at the right shift or not, and would bias the average. A frame is
    an outlier when the log of its energy is more than six robust standard deviations
    (median absolute deviation) from the median of the used frames *and* more than a
    factor ``CONTRAST_FACTOR`` away from it.

    Parameters
    ----------
    energy : ndarray, shape (N,)
        :func:`daskreg.kernels.correlate.masked_energy` of every frame.
    used : ndarray of bool, shape (N,)
        Frames still in use (unusable frames have energy 0 and are left out of the
        statistics).

    Returns
    -------
    ndarray of int
        Indices of outlying frames.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.log(np.asarray(energy, dtype=np.float64))
    usable = used & np.isfinite(level)
    if usable.sum() < 3:
        return np.zeros(0, dtype=int)
    centre = np.median(level[usable])
    spread = 1.4826 * np.median(np.abs(level[usable] - centre))
    limit = max(6.0 * spread, np.log(CONTRAST_FACTOR))
    # Zero energy (no contrast in the band at all) is -inf, always beyond the limit.
    with np.errstate(invalid="ignore"):
        far = ~(np.abs(level - centre) <= limit)
    return np.flatnonzero(used & far)


def torn_frames(
    split: np.ndarray, used: np.ndarray, basis: np.ndarray | None
) -> dict[int, tuple[float, np.ndarray]]:
    """Frames whose rows above and below some cut are displaced against each other: torn.

    Each cut (:data:`~.pairs.TEAR_ROWS`) is judged on its own, against the series'
    consensus at that cut, and a frame is torn when any cut says so. Two safeguards
    keep noise from being called a tear:

    - A top/bottom shift within ``TEAR_FRACTION`` of a cell of zero is no measurement:
      the two parts share the pixels of the smooth step, noise included, and at very
      low dose that shared noise is the highest peak (anisotropic a10 at dose 0.5: 95 %
      of the cuts).
    - An off-centre cut that calls more than ``OFF_CENTRE_SHARE`` of the frames torn
      measures an alias of its own and is not used.

    At very low dose parts of a frame land on any peak (the perovskite's B-sublattice
    one at (a/2, a/2) among them) and good frames are called torn:
    :func:`daskreg.method.analyse.analyse_shift_matrix` gives them back when the solve
    says the data cannot support a registration.

    Parameters
    ----------
    split : ndarray, shape (N, S, 2)
        :func:`~.pairs.half_shifts` of every frame: the checkerboard, then the cuts.
    used : ndarray of bool, shape (N,)
    basis : ndarray, shape (B, 2), optional
        Lattice translations: shifts are compared modulo the lattice (without one,
        nothing is called torn).

    Returns
    -------
    dict
        Frame -> (the cut's row as a fraction of the height, the displacement there from
        the series' consensus in pixels), for frames displaced by more than
        ``TEAR_SIGMAS`` robust standard deviations of the series and more than
        ``TEAR_FRACTION`` of the shortest lattice translation at some cut.
    """
    split = np.asarray(split, dtype=np.float64)
    # Without a known lattice two parts of a periodic specimen can be a translation
    # apart that nothing here can tell from a tear.
    if basis is None:
        return {}
    cell = float(np.linalg.norm(basis, axis=1).min())
    torn: dict[int, tuple[float, np.ndarray]] = {}
    worst = np.zeros(len(used))
    for row, strips in zip(TEAR_ROWS, split[:, 1:].transpose(1, 0, 2), strict=True):
        excess, offset = _cut_excess(strips, used, basis, cell)
        # A tear is rare: an off-centre cut calling many frames torn measures an alias of
        # its own (on 96^2-128^2 frames the unequal parts, weighted by the window, land on
        # different peaks from frame to frame: 7 of 21 frames), not tears.
        if row != 0.5 and (excess > 1.0).sum() > OFF_CENTRE_SHARE * used.sum():
            continue
        for k in np.flatnonzero(excess > np.maximum(worst, 1.0)):
            worst[k] = excess[k]
            torn[int(k)] = (row, offset[k])
    return dict(sorted(torn.items()))


def _cut_excess(
    strips: np.ndarray, used: np.ndarray, basis: np.ndarray, cell: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's offset at one cut from the consensus, over the tear limit; and the offset."""
    # Shared pixels of the smooth step correlate with themselves at zero shift.
    strips = np.where(
        np.linalg.norm(strips, axis=1, keepdims=True) < TEAR_FRACTION * cell, np.nan, strips
    )
    ok = used & np.isfinite(strips).all(axis=1)
    excess = np.zeros(len(strips))
    if ok.sum() < 5:
        return excess, np.zeros_like(strips)
    values = strips - nearest_translation(np.nan_to_num(strips), basis)[0]
    centre = np.median(values[ok], axis=0)
    offset = values - centre
    offset = offset - nearest_translation(np.nan_to_num(offset), basis)[0]
    distance = np.linalg.norm(offset, axis=1)
    spread = np.median(distance[ok]) / RAYLEIGH_MEDIAN
    limit = max(TEAR_SIGMAS * spread, TEAR_FRACTION * cell)
    excess[ok] = distance[ok] / limit
    return excess, offset


def frames_mostly_outliers(
    outliers: np.ndarray, measured: np.ndarray, used: np.ndarray, layout: PairLayout
) -> list[int]:
    """Frames most of whose pairs (more than ``BAD_FRAME_OUTLIER_FRACTION``) are outliers.

    None when that is most of the used frames: the fault is then in the parameters.
    """
    pairs = measured & layout.outer(used, used) & ~layout.diagonal()
    n_pairs = pairs.sum(axis=1)
    n_out = (outliers & pairs).sum(axis=1)
    frac = np.where(n_pairs > 0, n_out / np.maximum(n_pairs, 1), 0.0)
    candidates = np.flatnonzero(used & (frac > BAD_FRAME_OUTLIER_FRACTION))
    # With most frames failing, the fault is in the parameters, not the frames.
    if len(candidates) > used.sum() // 2:
        return []
    return candidates.tolist()
