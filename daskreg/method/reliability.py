"""When the robust solve cannot be trusted: the checks behind ``attrs['reliable']``.

Each check looks at the solved shifts and the pairs for a sign that the data do not
decide the answer (too few consistent pairs, cells decided by hop corrections, steps
between frames long for the cell); :func:`reliable_solve` warns with the reason and the
analysis then gives large uncertainties instead of a precise-looking wrong answer.
"""

from __future__ import annotations

import warnings

import numpy as np

from daskreg.errors import RegistrationWarning
from daskreg.kernels import robust as robust_kernels
from daskreg.kernels.layout import PairLayout

__all__ = ["MAX_HOP_FRACTION", "MIN_INLIER_FRACTION", "doubt", "jumps_a_cell", "reliable_solve"]

# Robust solve: below this fraction of consistent pairs the registration is unreliable.
MIN_INLIER_FRACTION = 0.5
# ... and when more than this fraction of the pairs agree only after a unit-cell
# correction, the hops are systematic, not noise: on a drift long for the frame, pairs
# far apart in time correlate at a nearer lattice translation, and which translation
# is the true one is then a guess (measured: 30-64 % of the pairs of 256^2 series that
# drift 40-70 px ended 4-21 px off in 2 of 6 cases; 0-1 % on the accuracy scenarios).
# At low dose it also catches wrong solves the inlier count misses (anisotropic a = 10 px
# at 2 counts, 384x512: seeds 0 and 9, 2.2 and 3.2 px off, 41 % and 48 % of the pairs
# hop-corrected), at the price of false alarms on large frames whose pairs hop at random
# (the same lattice at 1024^2: 6 of 10 seeds right to 0.03 px with 26-40 % corrected;
# the direction of the hops, away from zero there, did not separate the two well enough).
MAX_HOP_FRACTION = 0.25


# A drift step between consecutive frames beyond this fraction of the shortest lattice
# translation, with hop corrections among the pairs, means consecutive pairs may be
# aliases themselves (measured: 20 px per frame on 128^2, a = 12 px: every pair one
# cell nearer zero, the solve consistent at 8 px per frame).
LONG_STEP = 0.25
# ... with at least this fraction of the pairs hop-corrected.
STEP_HOP_FRACTION = 0.05


def reliable_solve(
    robust: robust_kernels.RobustSolution | None, shifts: np.ndarray, used: np.ndarray, cell: float
) -> bool:
    """Whether the robust solve supports ``shifts``; warns with the reason when not."""
    reason = doubt(robust)
    if reason is None and robust is not None and cell > 0:
        frames = np.flatnonzero(used)
        steps = np.linalg.norm(np.diff(shifts[frames], axis=0), axis=1)
        step = float(np.median(steps)) if len(steps) else 0.0
        if step > LONG_STEP * cell and robust.hop_fraction > STEP_HOP_FRACTION:
            reason = (
                f"the frames drift {step:.3g} px from one to the next, {step / cell:.0%} of "
                f"the lattice's shortest translation, and {robust.hop_fraction:.0%} of the "
                "pairs agree only after a unit-cell correction: even consecutive frames may "
                "be measured one cell off, so which cell each frame sits in is a guess. "
                "The result's attrs['reliable'] is 0 and its shift_uncertainty is large"
            )
    if reason is not None:
        warnings.warn(reason, RegistrationWarning, stacklevel=4)
    return reason is None


def jumps_a_cell(
    matrix: np.ndarray,
    valid: np.ndarray,
    shifts: np.ndarray,
    used: np.ndarray,
    layout: PairLayout,
    cell: float,
) -> bool:
    """Whether the solution puts neighbouring frames a unit cell apart against their pair.

    A pair of consecutive frames whose measured shift is under a quarter of the
    shortest lattice translation is unambiguous: its alias would lie three quarters of a
    cell away. When the solve nevertheless places the two frames about a cell apart
    (the hop correction taken the wrong way round), the frames before and after sit in
    different cells: the long pairs of a drift long for the frame have outvoted the
    short ones. Measured: 60 x 128^2 perovskite series drifting 50 px with band=16, two
    of seven seeds split this way (4.9 and 5.7 px RMS) and said nothing.
    """
    if cell <= 0:
        return False
    frames = np.flatnonzero(used)
    i, j = frames[:-1], frames[1:]
    held = layout.take(valid, i, j, False)
    measured = layout.take(matrix, i, j, np.nan)[held]
    solved = (shifts[j] - shifts[i])[held]
    short = np.hypot(*measured.T) < cell / 4
    jumped = np.hypot(*(solved - measured).T) > cell / 2
    split = np.flatnonzero(short & jumped)
    if not len(split):
        return False
    at = ", ".join(f"{i[held][k]}-{j[held][k]}" for k in split[:5])
    warnings.warn(
        f"the solved shifts put neighbouring frames ({at}) a unit cell apart although their "
        "own pair measures them close: the frames before and after sit in different cells. "
        "The drift is long for the frame size; register with a smaller band (e.g. band=4) "
        "and compare. The result's attrs['reliable'] is 0 and its shift_uncertainty is large",
        RegistrationWarning,
        stacklevel=4,
    )
    return True


def doubt(robust: robust_kernels.RobustSolution | None) -> str | None:
    """Why the robust solve cannot support the shifts (the warning's text), or None."""
    if robust is None:
        return None
    # Pairs that agree only after a hop correction fix the shifts modulo the lattice;
    # when they are most of the pairs, which cell each frame sits in is a guess.
    direct = robust.inlier_fraction - robust.hop_fraction
    if robust.capped or direct < MIN_INLIER_FRACTION:
        return (
            f"the pair measurements disagree too much to trust the shifts: residual scatter "
            f"{robust.scale:.3g} px per axis (cut-off {robust.cutoff:.3g} px), "
            f"{direct:.0%} of the pairs consistent without a unit-cell correction "
            f"({robust.hop_fraction:.0%} more with one). The dose is too low for this series "
            "(more frames, or a larger n, may help); the result's attrs['reliable'] is 0 "
            "and its shift_uncertainty is large"
        )
    if robust.hop_fraction > MAX_HOP_FRACTION:
        return (
            f"{robust.hop_fraction:.0%} of the pairs agree only after a unit-cell "
            "correction, so which cell each frame sits in is a guess. Either the drift is "
            "long for the frame size (frames far apart in time then correlate at a nearer "
            "lattice translation: register with band=4, which pairs only frames up to 4 "
            "apart, and compare) or the dose is low for this lattice (more frames, or a "
            "larger n, may help). The result's attrs['reliable'] is 0 and its "
            "shift_uncertainty is large"
        )
    return None
