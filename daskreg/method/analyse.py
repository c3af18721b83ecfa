"""From the assembled shift matrix to the final shifts: outliers, bad frames, solve.

:func:`analyse_shift_matrix` is the one analysis both engines run on their
:class:`~daskreg.method.measurements.PairMeasurements`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from daskreg.errors import (
    ConstantFrameError,
    NonFiniteError,
    RegistrationWarning,
    TooFewFramesError,
)
from daskreg.kernels import robust as robust_kernels
from daskreg.kernels import shiftmatrix as sm
from daskreg.kernels.frame_shifts import shifts_from_rows, solve_shifts
from daskreg.kernels.layout import PairLayout, pair_layout
from daskreg.method.bad_frames import (
    contrast_outliers,
    frames_mostly_outliers,
    torn_frames,
    weak_frames,
)
from daskreg.method.measurements import PairMeasurements
from daskreg.method.reliability import doubt, jumps_a_cell, reliable_solve
from daskreg.method.screening import CONSTANT_REASON, NONFINITE_REASON
from daskreg.params import RegistrationParams

__all__ = ["MatrixAnalysis", "analyse_shift_matrix", "auto_threshold"]

# Robust solve: largest cut-off as a fraction of the shortest lattice translation (a
# hop's residual is at least one translation minus the cut-off away from zero).
HOP_CAP = 0.3
# Robust solve without a lattice: the cut-off's cap in units of the mask's feature size,
# which stands at DEFAULT_FEATURE_SIZE pixels for masks without a cutoff.
NO_LATTICE_CAP = 2.0
DEFAULT_FEATURE_SIZE = 4.0


@dataclass
class MatrixAnalysis:
    """Everything decided from the shift matrix.

    Attributes
    ----------
    measured : (N, N) bool
        Pairs whose correlation was computed (all pairs, or a band).
    outliers : (N, N) bool
        Pairs rejected (outlier test, failed fits, or pairs of bad frames found here).
    scores : (N, N) float
        Transitivity scores (NaN where not computed).
    threshold : float or None
        Transitivity threshold used (auto-chosen when ``params.threshold`` is None).
    valid : (N, N) bool
        Pairs used for the shifts (diagonal of used frames included).
    corrected : (N, N, 2) float
        Shift matrix with invalid elements between used frames refilled.
    used : (N,) bool
        Frames that enter the average.
    bad_reason : dict
        Why each excluded frame was excluded (frame -> text).
    shifts : (N, 2) float
        Final displacement of each frame (NaN for unused frames).
    uncertainty : (N, 2) float
        One-sigma uncertainty of each shift.
    hops : (N, N) bool
        Pairs found off by a lattice translation and corrected by it (robust solve).
    scale : float or None
        Per-axis scatter (pixels) of the residuals of the pairs in use (robust solve).
    reliable : bool
        False when the data cannot support the registration (the robust solve's
        scatter reached the cap, or most pairs disagree): shifts are then a guess and
        their uncertainty is large.
    refined : (N,) bool or None
        Frames whose shift was refined against the average of the others
        (:mod:`daskreg.method.refinement`); None before that step.
    """

    measured: np.ndarray
    outliers: np.ndarray
    scores: np.ndarray
    threshold: float | None
    valid: np.ndarray
    corrected: np.ndarray
    used: np.ndarray
    bad_reason: dict[int, str]
    shifts: np.ndarray
    uncertainty: np.ndarray
    hops: np.ndarray | None = None
    scale: float | None = None
    reliable: bool = True
    refined: np.ndarray | None = None


def auto_threshold(
    scores: np.ndarray, valid: np.ndarray, layout: PairLayout | None = None
) -> float:
    """Transitivity threshold from the data: ``max(1 px, 5 x median score of valid pairs)``.

    Good pairs score about ``2 sqrt(3)`` times the per-axis pair error (a few tenths of
    a pixel at low dose) while a unit-cell hop scores about one lattice spacing, so five
    times the typical score separates them without a hand-tuned number; the 1 px floor
    keeps clean, near-perfect series from rejecting sub-pixel noise.

    Parameters
    ----------
    scores : ndarray, shape (N, N)
        :func:`daskreg.kernels.shiftmatrix.transitivity_scores`.
    valid : ndarray of bool, shape (N, N)
    layout : PairLayout, optional
        Storage of both (default dense).
    """
    layout = pair_layout(len(valid)) if layout is None else layout
    upper = valid & layout.upper() & np.isfinite(scores)
    if not upper.any():
        return 1.0
    return float(max(1.0, 5.0 * np.median(scores[upper])))


def analyse_shift_matrix(
    pairs: PairMeasurements,
    params: RegistrationParams,
    initial_bad: dict[int, str] | None = None,
) -> MatrixAnalysis:
    """Outliers, bad frames, correction and final shifts from a raw shift matrix.

    Parameters
    ----------
    pairs : PairMeasurements
        The pair stage's matrices; frames of outlying contrast
        (:func:`~.bad_frames.contrast_outliers` on ``pairs.energy``) and weak frames
        (:func:`~.bad_frames.weak_frames` on ``pairs.quality``) are left out when
        ``params.detect_bad_frames``.
    params : RegistrationParams
    initial_bad : dict, optional
        Frames already known to be bad (frame -> reason), e.g. found before correlation.

    Returns
    -------
    MatrixAnalysis

    Raises
    ------
    TooFewFramesError
        Fewer than two frames remain usable.

    References
    ----------
    .. [1] B. H. Savitzky, I. El Baggari, C. B. Clement, et al., "Image registration of
       low signal-to-noise cryo-STEM data", Ultramicroscopy 191, 56-65 (2018),
       DOI 10.1016/j.ultramic.2018.04.008.
    """
    matrix, measured, fit_ok, quality = pairs.matrix, pairs.measured, pairs.fit_ok, pairs.quality
    layout = pairs.layout
    n_frames = matrix.shape[0]
    bad_reason = dict(initial_bad or {})
    bad_reason.update({b: "listed in bad_frames" for b in params.bad_frames if b < n_frames})
    used = sm.frame_mask(n_frames, np.array(sorted(bad_reason), dtype=int), params.frames)
    _require_frames(used, bad_reason)
    torn: list[int] = []
    if params.detect_bad_frames:
        typical = np.median(pairs.energy[used])
        for k in contrast_outliers(pairs.energy, used):
            bad_reason[int(k)] = (
                f"contrast {pairs.energy[k] / typical:.3g} times the series median in the "
                "mask's band (saturated, blanked or recorded at another gain?)"
            )
            used[k] = False
        _require_frames(used, bad_reason)
        for k in weak_frames(quality, measured, used, layout):
            bad_reason[int(k)] = (
                "correlates much worse than the other frames (torn, blank or defocused?)"
            )
            used[k] = False
        _require_frames(used, bad_reason)
        # com is too rough (about a pixel) to tell a tear from its own scatter.
        if pairs.split is not None and params.find_maxima != "com":
            for k, (row, jump) in torn_frames(pairs.split, used, pairs.lattice_basis).items():
                torn.append(k)
                bad_reason[k] = (
                    f"torn: its rows above and below {row:.0%} of the height are displaced "
                    f"by ({jump[0]:.2f}, {jump[1]:.2f}) px against each other (a jump during "
                    "the scan)"
                )
                used[k] = False
            _require_frames(used, bad_reason)

    if params.band == 1 and params.outliers is not None and used.sum() > 2:
        warnings.warn(
            "band=1 links each frame to its neighbours by one pair each: no pair can be "
            "checked against another, so unit-cell hops and wrong pairs go undetected; "
            "use band=2 or more wherever the drift allows",
            RegistrationWarning,
            stacklevel=3,
        )
    rejected = measured & ~fit_ok
    outliers = rejected.copy()
    scores = layout.full(np.nan)
    threshold = params.threshold
    robust = None
    if params.outliers is not None:
        # Two rounds of dropping frames, and one more when frames called torn come back.
        for _ in range(2 + bool(torn)):
            base = measured & ~rejected & layout.outer(used, used)
            if params.outliers == "robust":
                robust = _robust_solve(pairs, base, used, params)
                outliers = base & ~robust.inliers
                scores, threshold = robust.residual, robust.cutoff
                if torn and doubt(robust) is not None:
                    # Where the solve is a guess, parts of a frame land on any peak (a
                    # sublattice alias among them): a tear cannot be told from noise.
                    _give_back(torn, bad_reason, used)
                    torn = []
                    continue
            else:
                outliers, scores, threshold = _find_outliers(matrix, base, used, params, layout)
            outliers |= rejected
            # A frame is bad when most of its pairs are wrong; in the robust solve that
            # means grossly wrong, not merely noisier than the typical pair.
            wrong = outliers if robust is None else robust.gross | rejected
            newly_bad = frames_mostly_outliers(wrong, measured, used, layout)
            if newly_bad and doubt(robust) is not None:
                # When the solve itself is a guess, a frame disagreeing with it says
                # nothing against the frame: it is kept (the result says unreliable).
                newly_bad = []
            if not newly_bad:
                break
            for b in newly_bad:
                bad_reason[b] = "most of its pairs are outliers"
            used[newly_bad] = False
            _require_frames(used, bad_reason)

    if robust is not None:
        # Pairs that hopped by a lattice translation are used with the hop removed.
        matrix = robust.matrix
    valid = measured & ~outliers & layout.outer(used, used)
    readmitted = layout.full(False)
    if robust is not None and doubt(robust) is not None:
        # Frames a doubtful solve cannot link keep their measured pairs: dropping them
        # would take good frames out on the word of a guess (their sigma says it is one).
        loose = used & ~sm.connected_frames(valid, used, layout)
        if loose.any():
            readmitted = measured & ~rejected & ~valid & layout.outer(used, used)
            readmitted &= layout.outer(loose, used) | layout.outer(used, loose)
            valid |= readmitted
            outliers &= ~readmitted
    layout.set_diagonal(valid, used)
    if sm.connected_frames(valid, used, layout).sum() < 2:
        warnings.warn(
            "outlier rejection left no two frames linked by a valid pair; using every "
            "measured pair instead (too few frames to tell outliers apart)",
            RegistrationWarning,
            stacklevel=3,
        )
        outliers = rejected.copy()
        valid = measured & ~rejected & layout.outer(used, used)
        layout.set_diagonal(valid, used)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RegistrationWarning)
        corrected, kept = sm.correct_shift_matrix(matrix, valid, used, layout)
    for frame in np.flatnonzero(used & ~kept):
        bad_reason[int(frame)] = "no valid pair links it to the other frames"
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=3)
    used = kept
    _require_frames(used, bad_reason)
    valid &= layout.outer(used, used)

    found = sorted(set(bad_reason) - set(params.bad_frames))
    if found:
        warnings.warn(
            "left out frames " + "; ".join(f"{k}: {bad_reason[k]}" for k in found),
            RegistrationWarning,
            stacklevel=3,
        )
    weights = None if robust is None or params.solver != "robust" else robust.weights
    if weights is not None and readmitted.any():
        weights = np.where(readmitted, np.median(weights[weights > 0]), weights)
    lstsq_shifts, uncertainty = solve_shifts(matrix, valid, used, layout, weights=weights)
    shifts = shifts_from_rows(corrected, used, layout) if params.solver == "mean" else lstsq_shifts
    basis = pairs.lattice_basis
    cell = 0.0 if basis is None else float(np.linalg.norm(basis, axis=1).min())
    # Against the pairs as measured (``matrix`` has the robust solve's hop corrections).
    reliable = reliable_solve(robust, shifts, used, cell) and not jumps_a_cell(
        pairs.matrix, valid, shifts, used, layout, cell
    )
    # Where the solve is a guess a frame may sit several cells off, not only one: the
    # measured pairs' own disagreement with the shifts says how far.
    unsure = (
        cell if reliable else max(cell, _pair_spread(pairs, measured & ~rejected, shifts, used))
    )
    uncertainty = _uncertainty(uncertainty, used, pairs.split, robust, reliable, unsure)
    return MatrixAnalysis(
        measured=measured,
        outliers=outliers & ~layout.diagonal(),
        scores=scores,
        threshold=threshold,
        valid=valid,
        corrected=corrected,
        used=used,
        bad_reason=dict(sorted(bad_reason.items())),
        shifts=shifts,
        uncertainty=uncertainty,
        hops=None if robust is None else robust.hops & valid,
        scale=None if robust is None else robust.scale,
        reliable=reliable,
    )


def _robust_solve(
    pairs: PairMeasurements, candidates: np.ndarray, used: np.ndarray, params: RegistrationParams
) -> robust_kernels.RobustSolution:
    """The robust solve of the pair graph with this registration's lattice and cut-off."""
    basis = pairs.lattice_basis
    if basis is not None:
        # Well below the shortest lattice translation, so that a hop is never accepted.
        cap = HOP_CAP * float(np.linalg.norm(basis, axis=1).min())
    else:
        # No lattice: a pair error beyond a couple of the mask's feature sizes is a wrong
        # peak, not a noisy one.
        cap = NO_LATTICE_CAP * _feature_size(params)
    floor = robust_kernels.CUTOFF_FLOOR
    if params.threshold is not None:
        floor = cap = params.threshold
    return robust_kernels.robust_solve(
        pairs.matrix,
        candidates,
        used,
        pairs.layout,
        translations=basis,
        cap=cap,
        floor=floor,
        quality=pairs.quality,
    )


def _pair_spread(
    pairs: PairMeasurements, pairs_used: np.ndarray, shifts: np.ndarray, used: np.ndarray
) -> float:
    """Per-axis RMS of the measured pairs' residuals against ``shifts``, over ``sqrt 2``.

    Before any hop correction, so a pair measured on another cell counts with its whole
    jump. Where the measurements are no better than guesses of aliases, a pair's residual
    is the difference of two frames' errors: this is then the typical frame's error
    (measured over 10 seeds of 1024^2 anisotropic series at 0.5 counts: 37-48 px for
    errors of 8-21 px median, where the cell, 10 px, covered 86 % of them within 3 sigma).
    """
    layout = pairs.layout
    i, j = layout.nonzero(pairs_used & layout.outer(used, used) & layout.upper())
    if not len(i):
        return 0.0
    residual = layout.take(pairs.matrix, i, j, np.nan) - (shifts[j] - shifts[i])
    residual = residual[np.isfinite(residual).all(axis=1)]
    if not len(residual):
        return 0.0
    return float(np.sqrt((residual**2).mean(axis=0).max() / 2))


def _uncertainty(
    solved: np.ndarray,
    used: np.ndarray,
    split: np.ndarray | None,
    robust: robust_kernels.RobustSolution | None,
    reliable: bool,
    unreliable_scale: float,
) -> np.ndarray:
    """Per-frame sigma: the solve's, plus the errors that the pairs of a frame share.

    A frame's noise enters every pair it is in, so the pair residuals (and the solve's
    sigma from them, which shrinks as 1/sqrt(N)) cannot see it; the split halves of
    each frame measure it (:func:`~.pairs.half_shifts`: sigma of a whole frame is half
    the halves' scatter). The pair scatter enters as a per-frame term too
    (``scale^2 / 2``, a pair being the difference of two frames), since pair errors
    also correlate through shared frames. Measured on synthetic series (3 lattices,
    doses 3-50, 256^2-512^2): median sigma 0.4-1.8 x the true error; the solve's
    sigma alone was 0.02-0.5 x.
    """
    variance = np.nan_to_num(solved**2)
    if split is not None:
        noise = split[:, 0]
        values = noise[used & np.isfinite(noise).all(axis=1)]
        if robust is not None:
            # At very low dose the half frames fail (land anywhere): those say nothing
            # of the noise, and the pair scatter dominates there anyway.
            values = values[np.linalg.norm(values, axis=1) < 2 * robust.cutoff]
        if len(values) >= max(3, used.sum() // 2):
            centre = np.median(values, axis=0)
            noise = 1.4826 * np.median(np.abs(values - centre), axis=0)
            variance = variance + (noise / 2) ** 2
    if robust is not None:
        variance = variance + robust.scale**2 / 2
        if not reliable:
            # The shifts are a guess, up to a whole cell (or the cut-off without a
            # lattice): sigma says so.
            variance = np.maximum(variance, max(robust.cutoff, unreliable_scale) ** 2)
    return np.where(used[:, None], np.sqrt(variance), np.nan)


def _feature_size(params: RegistrationParams) -> float:
    """Smallest feature size (pixels) the mask keeps, as its cutoff ``n`` says."""
    if isinstance(params.mask, np.ndarray) or params.mask in ("none", "auto"):
        return DEFAULT_FEATURE_SIZE
    if params.mask == "elliptical":
        return float(max(params.n1, params.n2))
    return params.cutoff


def _find_outliers(
    matrix: np.ndarray,
    base: np.ndarray,
    used: np.ndarray,
    params: RegistrationParams,
    layout: PairLayout,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    if params.outliers == "nn":
        outliers = sm.nn_outliers(matrix, used, params.max_shift, layout) & base
        return outliers, np.full(base.shape, np.nan), None

    def automatic(scores: np.ndarray) -> float:
        return auto_threshold(scores, base, layout)

    threshold = automatic if params.threshold is None else params.threshold
    return sm.transitivity_outliers(matrix, base, used, threshold, params.maxpaths, layout)


def _give_back(torn: list[int], bad_reason: dict[int, str], used: np.ndarray) -> None:
    """Use the frames called torn again, and say so."""
    warnings.warn(
        f"frames {', '.join(map(str, torn))} looked torn, but at this dose parts of a frame "
        "do not find the lattice reliably, so a jump during the scan cannot be told from "
        "noise: they are kept. Check them by eye (daskreg.plot) if the scan may have jumped",
        RegistrationWarning,
        stacklevel=4,
    )
    for k in torn:
        del bad_reason[k]
    used[torn] = True


def _require_frames(used: np.ndarray, bad_reason: dict[int, str]) -> None:
    if used.sum() >= 2:
        return
    unusable = {
        reason for reason in bad_reason.values() if reason in (NONFINITE_REASON, CONSTANT_REASON)
    }
    if len(bad_reason) == len(used) and set(bad_reason.values()) == unusable:
        # Nothing was ever usable: the data, not the parameters, are at fault.
        error = NonFiniteError if unusable == {NONFINITE_REASON} else ConstantFrameError
        fix = (
            "if only some pixels are invalid (e.g. NaN padding), replace them first, e.g. "
            "np.nan_to_num(stack, nan=float(np.nanmedian(stack)))"
            if error is NonFiniteError
            else "check too that the beam was on (not blanked)"
        )
        raise error(
            f"all {len(used)} frames are unusable ({'; '.join(sorted(unusable))}); there is "
            "nothing to register. Check that the right file and signal were read "
            f"(signal=...); {fix}"
        )
    reasons = "; ".join(f"frame {k}: {v}" for k, v in sorted(bad_reason.items())) or "none"
    raise TooFewFramesError(
        f"only {int(used.sum())} usable frame(s) remain of {len(used)} (excluded: {reasons}); "
        "registration needs at least 2 linked frames: check bad_frames/frames, or loosen the "
        "outlier threshold"
    )
