"""Accuracy harness on low-dose synthetic series: scenarios, metrics, hand-tuned grid.

One module for both consumers, ``tests/test_accuracy.py`` (the assertions of issue 17)
and ``benchmarks/bench_accuracy.py`` (the table against peers), so the two can never
measure different things. It lives under ``tests/`` and not in the package because it
is measuring equipment, not part of daskreg's API, and the test is its primary user;
the benchmark puts the repository root on ``sys.path`` and imports ``tests.accuracy``.

Everything runs through the public API: :func:`daskreg.register` (defaults, or hand
settings) and, for the injected-error runs, :class:`daskreg.Registration` step by step.

Conventions
-----------
Frame ``i`` of a :func:`daskreg.synthetic.lattice_series` shows the specimen displaced
by ``+shifts[i]``; ``result.shifts`` uses the same sign, relative to the mean of the
frames used. Errors are therefore compared after removing their mean (RMS) or their
median (hops, see :func:`score`).
"""

from __future__ import annotations

import functools
import itertools
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import daskreg
from daskreg.synthetic import SyntheticSeries, lattice_basis, lattice_series

__all__ = [
    "FAST_SCENARIOS",
    "FAST_BROAD",
    "FAST_INJECTED",
    "FAST_SEEDS",
    "FAST_SWEEP",
    "FAST_UNREGISTRABLE",
    "HAND_GRID",
    "SLOW",
    "SLOW_SEEDS",
    "TORN_BLANK",
    "Outcome",
    "Pooled",
    "Run",
    "Scenario",
    "best_hand_setting",
    "calibration",
    "grid_outcomes",
    "inject_hops",
    "make_series",
    "outcomes_for",
    "pooled",
    "run_daskreg",
    "score",
    "setting_label",
]

# Read noise of a fast STEM detector chain, in counts: it dominates at ~1 count/column.
READ_NOISE = 1.0
# Fraction of pairs moved by a lattice vector in the injected-error runs (issue 17).
INJECT_FRACTION = 0.10


@dataclass(frozen=True)
class Scenario:
    """One kind of series: lattice, spacing, dose, size, bad frames, injected hops.

    ``dose`` is the expected count at the peak of the brightest column (as
    :func:`daskreg.synthetic.lattice_series`), with :data:`READ_NOISE` added;
    ``bad_frames`` holds ``(frame, "torn" | "blank")`` pairs (a tuple, so that a
    scenario is hashable and its runs can be cached).
    ``column_sigma=None`` is the generator's ``spacing / 8``; the broad-peaked
    (nanoparticle-like) case sets it wider.
    """

    name: str
    lattice: str = "perovskite"
    spacing: float = 14.0
    dose: float = 10.0
    shape: tuple[int, int] = (256, 256)
    n_frames: int = 20
    column_sigma: float | None = None
    bad_frames: tuple[tuple[int, str], ...] = ()
    inject: bool = False

    def series(self, seed: int) -> SyntheticSeries:
        """The series of this scenario for ``seed`` (cached, see :func:`make_series`)."""
        return make_series(self, seed)

    @property
    def basis(self) -> np.ndarray:
        """Lattice vectors ``(2, 2)`` as ``(dy, dx)`` rows, pixels."""
        return lattice_basis(self.lattice, self.spacing)

    @property
    def hop_length(self) -> float:
        """Error (px) above which a frame counts as off by a unit cell: a quarter of the
        shortest lattice translation (see :func:`score`)."""
        a1, a2 = self.basis
        return 0.25 * min(np.hypot(*v) for v in (a1, a2, a1 + a2, a1 - a2))


# One scenario's seeds: the grid and the defaults of a scenario run one after the other
# and their outcomes are cached apart, so older series are not needed again (20 frames
# of 1024^2 are 80 MB each).
@functools.lru_cache(maxsize=12)
def make_series(scenario: Scenario, seed: int) -> SyntheticSeries:
    """Render ``scenario`` for ``seed``; cached so the grid and the defaults see one
    series without rendering it twice."""
    return lattice_series(
        scenario.n_frames,
        scenario.shape,
        lattice=scenario.lattice,
        spacing=scenario.spacing,
        column_sigma=scenario.column_sigma,
        dose=scenario.dose,
        read_noise=READ_NOISE,
        bad_frames=dict(scenario.bad_frames) or None,
        seed=seed,
    )


# ----------------------------------------------------------------------------------------
# Scenario lists. FAST runs in CI (256^2, 3 seeds); SLOW is the sweep of issue 17.

#: A torn and a blank frame (issue 17's examples of frames to flag).
TORN_BLANK = ((6, "torn"), (13, "blank"))
#: The sweep part of the fast subset: one scenario per lattice at low to moderate dose.
#: The perovskite one carries a torn and a blank frame: the generator draws the bad
#: frames from their own random stream, so its good frames are those of the clean series
#: and it serves the sweep and the bad-frame test at once.
FAST_SWEEP: tuple[Scenario, ...] = (
    Scenario("hexagonal a12 dose2", lattice="hexagonal", spacing=12.0, dose=2.0),
    Scenario(
        "perovskite a14 dose10 torn+blank",
        lattice="perovskite",
        spacing=14.0,
        dose=10.0,
        bad_frames=TORN_BLANK,
    ),
    Scenario("anisotropic a10 dose5", lattice="anisotropic", spacing=10.0, dose=5.0),
)
#: Below what any setting registers: every one of the 24 hand settings hops on 44 or
#: more of 60 frames (benchmarks/README.md), so it has no grid in the fast subset.
FAST_UNREGISTRABLE = Scenario(
    "perovskite a16 dose0.5", lattice="perovskite", spacing=16.0, dose=0.5
)
#: 10 % of the pairs of the anisotropic series moved by a lattice vector.
FAST_INJECTED = replace(FAST_SWEEP[2], name="anisotropic a10 dose5 injected", inject=True)
#: Nanoparticle-like: period 32 px, columns four times the usual width, broad peaks.
# The nanoparticle-like case: 24 x 320^2 at about 8 counts per pixel on average
# (columns of sigma a/4 on a hexagonal cell: mean = 0.5 x the column peak's dose).
FAST_BROAD = Scenario(
    "broad a32 8 counts/px",
    lattice="hexagonal",
    spacing=32.0,
    column_sigma=8.0,
    dose=16.0,
    shape=(320, 320),
    n_frames=24,
)
FAST_SCENARIOS = (*FAST_SWEEP, FAST_UNREGISTRABLE, FAST_INJECTED, FAST_BROAD)
FAST_SEEDS = (0, 1, 2)

SLOW_SEEDS = tuple(range(10))
SLOW_DOSES = (0.5, 2.0, 5.0, 20.0, 50.0)
SLOW_SIZES = ((256, 256), (384, 512), (1024, 1024))
_SLOW_SPACING = {"perovskite": 14.0, "hexagonal": 12.0, "anisotropic": 10.0}
# Where the lattice is visible in one frame (>= 5 counts per column) the sweep's series
# carry the torn and the blank frame too: they leave the good frames as they are.
SLOW: dict[str, Scenario] = {
    f"{lattice} a{_SLOW_SPACING[lattice]:g} dose{dose:g} {ny}x{nx}": Scenario(
        f"{lattice} a{_SLOW_SPACING[lattice]:g} dose{dose:g} {ny}x{nx}",
        lattice=lattice,
        spacing=_SLOW_SPACING[lattice],
        dose=dose,
        shape=(ny, nx),
        bad_frames=TORN_BLANK if dose >= 5 else (),
    )
    for lattice in _SLOW_SPACING
    for dose in SLOW_DOSES
    for ny, nx in SLOW_SIZES
}


# ----------------------------------------------------------------------------------------
# Running daskreg and scoring a run.


@dataclass(frozen=True)
class Run:
    """What one registration returned, as plain arrays.

    ``shifts``/``sigma`` are NaN for frames not used; ``bad`` is the set of frames the
    method left out; ``warnings`` the messages it raised.
    """

    shifts: np.ndarray
    sigma: np.ndarray
    bad: frozenset[int]
    seconds: float
    warnings: tuple[str, ...] = ()
    reliable: bool = True


@dataclass(frozen=True)
class Outcome:
    """Ground-truth metrics of one run (see :func:`score`)."""

    rms: float
    hops: int
    n_scored: int
    dropped: frozenset[int]
    flagged: frozenset[int]
    missed: frozenset[int]
    errors: np.ndarray
    sigma: np.ndarray
    seconds: float
    warnings: tuple[str, ...] = ()
    reliable: bool = True

    @property
    def honest(self) -> bool:
        """Flagged unreliable with every error within 3 sigma: "cannot register", said."""
        return not self.reliable and bool(np.all(np.abs(self.errors) <= 3 * self.sigma))


def run_daskreg(
    stack: np.ndarray,
    params: Mapping[str, Any] | None = None,
    *,
    inject: Callable[[np.ndarray], None] | None = None,
) -> Run:
    """Register ``stack`` with daskreg's defaults (``params`` None or empty) or ``params``.

    Without ``inject`` this is exactly ``daskreg.register(stack, **params)``; the
    warnings it raises are kept as ``"Category: message"``. With it,
    :class:`daskreg.Registration` runs step by step and ``inject`` edits the measured
    shift matrix in place between ``find_shifts`` and the analysis (the README's "Step
    by step" flow), through :func:`measured_matrix`.
    """
    params = dict(params or {})
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if inject is None:
            result = daskreg.register(stack, progress=False, **params)
        else:
            reg = daskreg.Registration(stack, **params)
            reg.find_shifts()
            inject(measured_matrix(reg))
            result = reg.average()
    return _run_from_result(result, time.perf_counter() - start, caught)


def _run_from_result(result: Any, seconds: float, caught: list) -> Run:
    return Run(
        shifts=np.asarray(result.shifts.values, dtype=np.float64),
        sigma=np.asarray(result.shift_uncertainty.values, dtype=np.float64),
        bad=frozenset(np.flatnonzero(result.bad_frames.values).tolist()),
        seconds=seconds,
        warnings=tuple(f"{w.category.__name__}: {w.message}" for w in caught),
        reliable=bool(result.dataset.attrs.get("reliable", 1)),
    )


def measured_matrix(reg: daskreg.Registration) -> np.ndarray:
    """The raw shift matrix a :class:`daskreg.Registration` analyses, for editing in place
    after ``find_shifts``.

    The one private name the harness uses (``Registration._raw``): the public
    ``find_shifts`` returns a labelled copy, and editing that would change nothing.
    """
    return reg._raw.matrix


def inject_hops(
    basis: np.ndarray, *, fraction: float = INJECT_FRACTION, seed: int = 0
) -> Callable[[np.ndarray], None]:
    """Return an in-place editor moving ``fraction`` of the pairs by a lattice vector.

    The pairs (``i < j`` of a dense ``(N, N, 2)`` matrix) and the vectors (``±a1``,
    ``±a2``) are drawn from ``seed``; ``R[j, i]`` gets the opposite so the matrix stays
    antisymmetric, as a real hopped measurement is.
    """

    def edit(matrix: np.ndarray) -> None:
        n = matrix.shape[0]
        if matrix.shape[:2] != (n, n):
            raise ValueError("inject_hops edits a dense shift matrix; run without band=")
        rng = np.random.default_rng(seed)
        i, j = np.triu_indices(n, 1)
        pick = rng.choice(len(i), size=round(fraction * len(i)), replace=False)
        vectors = np.vstack([basis, -basis])[rng.integers(0, 4, size=len(pick))]
        matrix[i[pick], j[pick]] += vectors
        matrix[j[pick], i[pick]] -= vectors

    return edit


def score(run: Run, series: SyntheticSeries, hop_length: float) -> Outcome:
    """Compare a run with the truth.

    Frames scored: those the run used, less the truly bad ones (a torn frame has no
    single true shift). ``errors`` are ``measured - true`` per frame and axis with
    their mean removed (the result's origin is the mean of its frames, the truth's is
    arbitrary): ``rms`` is their 2-D RMS. A frame is *hopped* when its error, taken
    about the median error of the frames instead of the mean (so that a few hopped
    frames do not make the good ones look off), exceeds ``hop_length``: a quarter of
    the shortest lattice translation, 2.5-8 px here. That separates whole-cell (and
    sublattice, 0.7 a) jumps from noise with a wide margin on both sides: a noise
    error of a/4 would need a per-axis scatter near 1 px, where registration has
    failed anyway and the RMS says so; a 1 px criterion would instead count the tails
    of honest low-dose noise as hops.
    """
    truly_bad = set(series.bad_frames)
    scored = np.array([k not in run.bad and k not in truly_bad for k in range(len(series.shifts))])
    scored &= np.isfinite(run.shifts).all(axis=1)
    diff = run.shifts[scored] - series.shifts[scored]
    errors = diff - diff.mean(axis=0) if len(diff) else diff
    rms = float(np.sqrt((errors**2).sum(axis=1).mean())) if len(diff) else np.nan
    about_median = diff - np.median(diff, axis=0) if len(diff) else diff
    hops = int((np.hypot(*about_median.T) > hop_length).sum()) if len(diff) else 0
    return Outcome(
        rms=rms,
        hops=hops,
        n_scored=int(scored.sum()),
        dropped=frozenset(run.bad - truly_bad),
        flagged=frozenset(run.bad & truly_bad),
        missed=frozenset(truly_bad - run.bad),
        errors=errors,
        sigma=run.sigma[scored],
        seconds=run.seconds,
        warnings=run.warnings,
        reliable=run.reliable,
    )


@dataclass(frozen=True)
class Pooled:
    """Metrics of one method on one scenario over several seeds."""

    rms: float
    hops: int
    dropped: int
    missed: int
    frames: int
    seconds: float

    def row(self) -> str:
        return (
            f"{self.rms:8.3f} {self.hops:3d}/{self.frames:<4d} {self.dropped:3d} "
            f"{self.seconds:7.2f}"
        )


def pooled(outcomes: Iterable[Outcome]) -> Pooled:
    """Pool seeds: RMS over every scored frame of every seed (root of the mean square),
    hops, good frames dropped and truly bad frames missed summed, mean time per run."""
    outcomes = list(outcomes)
    squares = np.concatenate([(o.errors**2).sum(axis=1) for o in outcomes])
    return Pooled(
        rms=float(np.sqrt(squares.mean())) if len(squares) else np.nan,
        hops=sum(o.hops for o in outcomes),
        dropped=sum(len(o.dropped) for o in outcomes),
        missed=sum(len(o.missed) for o in outcomes),
        frames=sum(o.n_scored for o in outcomes),
        seconds=float(np.mean([o.seconds for o in outcomes])),
    )


def calibration(outcomes: Iterable[Outcome]) -> tuple[float, float]:
    """Uncertainty calibration over seeds: ``(coverage, ratio)``.

    ``coverage`` is the fraction of (frame, axis) errors with ``|err| <= 3 sigma``;
    ``ratio`` is the median sigma over the true per-axis error, estimated robustly as
    ``1.4826 x median |err|`` (the standard deviation for Gaussian errors, not pulled up
    by a hop), so 1 is perfect calibration and issue 17 asks for 0.5-2.
    """
    outcomes = list(outcomes)
    err = np.abs(np.concatenate([o.errors.ravel() for o in outcomes]))
    sigma = np.concatenate([o.sigma.ravel() for o in outcomes])
    if not len(err):
        return np.nan, np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = float(np.mean(err <= 3 * sigma))
        ratio = float(np.median(sigma) / (1.4826 * np.median(err)))
    return coverage, ratio


# ----------------------------------------------------------------------------------------
# Hand tuning.

#: The small grid a user would try by hand (issue 17): mask kind x cutoff x outlier
#: threshold, Gaussian-fit peaks, transitivity. Threshold None is the automatic one;
#: 1 px is the automatic floor; 3 px sits between the good pairs' scores (tenths of a
#: pixel) and a hop's (about a lattice constant, >= 10 px here).
HAND_MASKS = ("bandpass", "hann")
HAND_CUTOFFS = (2, 3, 4, 6)
HAND_THRESHOLDS = (None, 1.0, 3.0)


def setting_label(params: Mapping[str, Any]) -> str:
    """Short text for a hand setting, e.g. ``hann n=4 thr=auto``."""
    threshold = params.get("threshold")
    thr = "auto" if threshold is None else f"{threshold:g}"
    return f"{params['mask']} n={params['n']:g} thr={thr}"


#: Label -> ``register`` keywords of every hand setting.
HAND_GRID: dict[str, dict[str, Any]] = {
    setting_label(p): p
    for p in (
        {
            "mask": mask,
            "n": n,
            "find_maxima": "gf",
            "outliers": "transitivity",
            "threshold": threshold,
        }
        for mask, n, threshold in itertools.product(HAND_MASKS, HAND_CUTOFFS, HAND_THRESHOLDS)
    )
}


def outcomes_for(
    scenario: Scenario, seeds: Iterable[int], params: Mapping[str, Any] | None = None
) -> list[Outcome]:
    """Score ``params`` (None: daskreg's defaults) on every seed of ``scenario``."""
    return [_cached_outcome(scenario, seed, _freeze(params)) for seed in seeds]


def _freeze(params: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((params or {}).items()))


@functools.lru_cache(maxsize=4096)
def _cached_outcome(scenario: Scenario, seed: int, frozen: tuple[tuple[str, Any], ...]) -> Outcome:
    series = scenario.series(seed)
    inject = inject_hops(scenario.basis, seed=seed) if scenario.inject else None
    run = run_daskreg(series.stack, dict(frozen), inject=inject)
    return score(run, series, scenario.hop_length)


@functools.lru_cache(maxsize=1024)  # the whole slow sweep (450 series); results are small
def grid_outcomes(scenario: Scenario, seed: int) -> dict[str, Outcome]:
    """Score every :data:`HAND_GRID` setting on one seed, keyed by :func:`setting_label`.

    Each (mask, n) is measured once and only the analysis is redone per threshold
    (``Registration.find_outliers``), which is what keeps the grid cheap enough for CI;
    ``seconds`` is therefore the measurement plus one analysis, not a fresh run. Hops
    are injected as in :func:`run_daskreg` when the scenario asks for them.
    """
    series = scenario.series(seed)
    found = {}
    for mask, n in itertools.product(HAND_MASKS, HAND_CUTOFFS):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            reg = daskreg.Registration(series.stack, mask=mask, n=n, find_maxima="gf")
            reg.find_shifts()
            if scenario.inject:
                inject_hops(scenario.basis, seed=seed)(measured_matrix(reg))
            measured = time.perf_counter() - start
            for threshold in HAND_THRESHOLDS:
                start, seen = time.perf_counter(), len(caught)
                reg.find_outliers("transitivity", threshold=threshold)
                result = reg.average()
                seconds = measured + time.perf_counter() - start
                run = _run_from_result(result, seconds, caught[seen:])
                label = setting_label({"mask": mask, "n": n, "threshold": threshold})
                found[label] = score(run, series, scenario.hop_length)
    return found


def best_hand_setting(scenario: Scenario, seeds: Iterable[int]) -> tuple[str, Pooled]:
    """The :data:`HAND_GRID` setting with the fewest hops, then fewest good frames
    dropped, then the lowest pooled RMS over ``seeds`` (one setting per scenario, as a
    user tunes once per kind of data). Returns its label and pooled metrics."""
    per_seed = [grid_outcomes(scenario, seed) for seed in seeds]
    ranked = []
    for label in per_seed[0]:
        p = pooled(outcomes[label] for outcomes in per_seed)
        ranked.append(((p.hops, p.dropped, p.rms), label, p))
    ranked.sort(key=lambda item: item[0])
    return ranked[0][1], ranked[0][2]
