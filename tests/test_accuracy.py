"""Issue 17's "Done when": daskreg's defaults against ground truth on low-dose series.

Every test registers with no parameters (``daskreg.register(stack)``) and compares with
the truth of :func:`daskreg.synthetic.lattice_series` and with the best setting of a
small hand-tuned grid (``tests/accuracy.py`` holds the scenarios, the metrics and the
grid; ``benchmarks/bench_accuracy.py`` prints the same numbers as a table).

The fast subset (256^2, 3 seeds) runs in CI; the sweep of lattices x doses x sizes x 10
seeds is marked ``slow`` (``pytest -m slow tests/test_accuracy.py``; 1024^2 alone takes
over an hour on a 2-core machine, its hand grid most of it).
"""

from __future__ import annotations

import numpy as np
import pytest

from daskreg.synthetic import lattice_basis, lattice_series
from tests.accuracy import (
    FAST_BROAD,
    FAST_INJECTED,
    FAST_SEEDS,
    FAST_SWEEP,
    FAST_UNREGISTRABLE,
    SLOW,
    SLOW_SEEDS,
    Scenario,
    best_hand_setting,
    calibration,
    grid_outcomes,
    inject_hops,
    outcomes_for,
    pooled,
    run_daskreg,
    score,
)

# RMS may exceed the best hand setting's by 20 % (issue 17's number). It also absorbs the
# selection bias of taking the best of 24 settings on the same seeds: neighbouring good
# settings differ by 5-20 % in pooled RMS (e.g. 0.051, 0.060, 0.065 px at a10 dose5).
RMS_FACTOR = 1.2
# Injected hops, once corrected, must leave the shifts as they were (issue 17: 0.005 px):
# 5 % of these series' RMS (0.08-0.11 px), while one hop left in a frame's 19 pairs
# moves its row-mean shift by a/19 = 0.5 px.
INJECT_TOLERANCE = 0.005
# A nanoparticle-like series (broad peaks) must register to 0.05 px: the data support
# ~0.03 px (issue 17: upsampled-DFT estimator on such data).
BROAD_RMS = 0.05
# Uncertainty calibration (issue 17): |err| <= 3 sigma for >= 90 % of (frame, axis)
# values (99.7 % for a calibrated Gaussian; 90 % leaves room for a heavier tail), and
# median sigma between 0.5x and 2x the true per-axis error.
COVERAGE = 0.90
SIGMA_RATIO = (0.5, 2.0)


def _cases() -> list:
    """The fast sweep and the slow sweep (lattices x doses x sizes, 10 seeds)."""
    # Measured (2026-12-07), every case passes or is skipped where no hand setting avoids
    # hops: 256^2 (59 passed, 10 skipped), 384x512 (hexagonal dose 2's seed 0, which the
    # defaults flag and the hand settings register only by dropping 12 to 18 of its 20
    # good frames, is held to neither: see _compared), and 1024^2 (`pytest -m slow -k
    # 1024`, 2 h 15 min beside other work: 60 passed, 8 skipped at dose 0.5 and
    # anisotropic dose 2; the one failure, anisotropic dose 0.5's calibration at 87 %,
    # is fixed by the unreliable solve's sigma: 100 %).
    fast = [pytest.param(s, FAST_SEEDS, id=s.name) for s in FAST_SWEEP]
    slow = [
        pytest.param(s, SLOW_SEEDS, id=name, marks=pytest.mark.slow) for name, s in SLOW.items()
    ]
    return fast + slow


def _best(scenario: Scenario, seeds):
    label, best = best_hand_setting(scenario, seeds)
    if best.hops:
        pytest.skip(f"no hand setting avoids hops here (best {label}: {best.hops} hops)")
    return label, best


def _compared(scenario: Scenario, seeds, label: str) -> tuple[list, list]:
    """Seeds on which the defaults are held to the best hand setting ``label``.

    A seed is left out when that setting avoids hops on it only by dropping good frames
    and the defaults keep every frame but say the data cannot support the answer
    (``reliable`` 0, every error within 3 sigma): the issue's "zero hops" and "no good
    frame dropped" cannot both hold there, and "never silently wrong" does. Measured
    (2026-12-07): hexagonal a = 12 px at 2 counts, 384x512, seed 0 (20 hops with the
    defaults, flagged; the hand settings without hops drop 12 to 18 of its 20 frames).
    Returns the defaults' and the hand setting's outcomes on the other seeds.
    """
    defaults = outcomes_for(scenario, seeds)
    hand = [grid_outcomes(scenario, seed)[label] for seed in seeds]
    kept = [
        k
        for k, (d, h) in enumerate(zip(defaults, hand, strict=True))
        if not (h.dropped and d.honest)
    ]
    if not kept:
        pytest.skip("on every seed hand tuning drops good frames and the defaults say so")
    return [defaults[k] for k in kept], [hand[k] for k in kept]


# -- the sweep ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "seeds"),
    _cases(),
)
def test_no_hops_where_hand_tuning_has_none(scenario, seeds):
    label, _ = _best(scenario, seeds)
    defaults = pooled(_compared(scenario, seeds, label)[0])
    assert defaults.hops == 0, f"{defaults.hops} frames off by a unit cell ({label}: 0)"


@pytest.mark.parametrize(
    ("scenario", "seeds"),
    _cases(),
)
def test_rms_within_best_hand_setting(scenario, seeds):
    label, _ = _best(scenario, seeds)
    defaults, best = (pooled(o) for o in _compared(scenario, seeds, label))
    assert defaults.rms <= RMS_FACTOR * best.rms, (
        f"RMS {defaults.rms:.3f} px with defaults, {best.rms:.3f} px with {label}"
    )


@pytest.mark.parametrize(
    ("scenario", "seeds"),
    _cases(),
)
def test_no_good_frame_dropped(scenario, seeds):
    dropped = {
        seed: sorted(o.dropped)
        for seed, o in zip(seeds, outcomes_for(scenario, seeds), strict=True)
    }
    assert not any(dropped.values()), f"good frames dropped (seed: frames): {dropped}"


@pytest.mark.parametrize(
    ("scenario", "seeds"),
    _cases(),
)
def test_uncertainty_calibrated(scenario, seeds):
    coverage, ratio = calibration(outcomes_for(scenario, seeds))
    assert coverage >= COVERAGE, f"|err| <= 3 sigma for only {coverage:.0%} of values"
    if best_hand_setting(scenario, seeds)[1].hops == 0:
        # Where registration succeeds sigma must also not be far too large; where no
        # setting can register, large sigma is the right answer.
        assert SIGMA_RATIO[0] <= ratio <= SIGMA_RATIO[1], (
            f"median sigma is {ratio:.2f}x the true per-axis error"
        )


# -- single cases ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "seeds"),
    [case for case in _cases() if case.values[0].bad_frames],
)
def test_torn_and_blank_frames_flagged(scenario, seeds):
    missed = {
        seed: sorted(o.missed) for seed, o in zip(seeds, outcomes_for(scenario, seeds), strict=True)
    }
    assert not any(missed.values()), f"truly bad frames not flagged (seed: frames): {missed}"


def test_injected_hops_corrected():
    scenario = FAST_INJECTED
    for seed in FAST_SEEDS:
        series = scenario.series(seed)
        # Both runs step by step, so that only the injection differs between them.
        clean = score(
            run_daskreg(series.stack, inject=lambda matrix: None), series, scenario.hop_length
        )
        injected = outcomes_for(scenario, [seed])[0]
        assert injected.hops == 0, f"seed {seed}: {injected.hops} frames off by a unit cell"
        assert abs(injected.rms - clean.rms) <= INJECT_TOLERANCE, (
            f"seed {seed}: RMS {injected.rms:.3f} px with 10 % of pairs hopped, "
            f"{clean.rms:.3f} px without"
        )


def test_unregistrable_series_says_so():
    """Where the data cannot support registration: hop-free shifts, or a warning and
    uncertainties that cover the errors, never confident wrong shifts (issue 17)."""
    outcomes = outcomes_for(FAST_UNREGISTRABLE, FAST_SEEDS)
    coverage, _ = calibration(outcomes)
    assert coverage >= COVERAGE, f"|err| <= 3 sigma for only {coverage:.0%} of values"
    for seed, outcome in zip(FAST_SEEDS, outcomes, strict=True):
        warned = [w for w in outcome.warnings if w.startswith("RegistrationWarning")]
        assert outcome.hops == 0 or warned, (
            f"seed {seed}: {outcome.hops} frames hopped and no warning"
        )
        # A solve that is itself a guess is no evidence against a frame that disagrees
        # with it (measured before: 1-13 of 20 frames per seed dropped so).
        dropped = [w for w in warned if "most of its pairs are outliers" in w]
        assert not dropped, f"seed {seed}: frames dropped for disagreeing: {dropped}"
        # Nor is a half frame landing on a sublattice alias evidence of a tear: the half
        # frames cannot find the lattice at this dose (seed 0 had good frames called
        # torn at offsets near (a/2, a/2)).
        torn = [w for w in warned if "torn:" in w]
        assert not torn, f"seed {seed}: good frames called torn: {torn}"


@pytest.mark.parametrize(
    ("dose", "seeds"), [(5.0, (3, 4)), (20.0, (4, 8)), (50.0, (4, 8))], ids=lambda v: str(v)
)
def test_tear_near_a_third_of_the_height_is_flagged(dose, seeds):
    """The sweep's torn frames missed with one cut in the middle: tears at 33-34 % of
    the height, where the cut's top part held both sides of the jump."""
    scenario = SLOW[f"anisotropic a10 dose{dose:g} 256x256"]
    for seed, outcome in zip(seeds, outcomes_for(scenario, seeds), strict=True):
        assert not outcome.missed, f"seed {seed}: frames {sorted(outcome.missed)} not flagged"
        assert not outcome.dropped, f"seed {seed}: good frames {sorted(outcome.dropped)} dropped"


def test_broad_peaks_register_precisely():
    """Measured with the refinement against the average: 0.032, 0.030, 0.032 px (the pair
    solve alone 0.054, 0.047, 0.066; 0.08-0.11 px at issue 17's start)."""
    rms = [o.rms for o in outcomes_for(FAST_BROAD, FAST_SEEDS)]
    assert max(rms) <= BROAD_RMS, f"RMS by seed {np.round(rms, 3).tolist()} px"


def test_inject_hops_moves_pairs_by_lattice_vectors():
    """The harness itself: 10 % of the pairs change, each by +-a1 or +-a2, antisymmetric."""
    basis = FAST_INJECTED.basis
    matrix = np.zeros((20, 20, 2))
    inject_hops(basis, seed=3)(matrix)
    i, j = np.triu_indices(20, 1)
    moved = np.abs(matrix[i, j]).sum(axis=1) > 0
    assert moved.sum() == round(0.1 * len(i))
    assert np.allclose(matrix, -matrix.transpose(1, 0, 2))
    hops = matrix[i, j][moved]
    lattice = np.vstack([basis, -basis])
    assert np.isclose(hops[:, None, :], lattice[None, :, :]).all(axis=2).any(axis=1).all()


@pytest.mark.parametrize("lattice", ["perovskite", "hexagonal", "anisotropic"])
def test_lattice_basis_vectors_are_periods_of_the_rendered_lattice(lattice):
    """The hops the harness injects and counts are true lattice translations: a frame
    drifted by a1 (or a2) from the first shows the same noise-free image."""
    for vector in lattice_basis(lattice, 12.0, rotation=17.0):
        frames = lattice_series(
            2,
            (48, 64),
            lattice=lattice,
            spacing=12.0,
            rotation=17.0,
            dose=np.inf,
            vacancy_fraction=0.0,
            drift_step=tuple(vector),
            drift_jitter=0.0,
        ).stack
        # float32 rendering of unit-height columns: agreement to 1e-5 is exact.
        np.testing.assert_allclose(frames[1], frames[0], atol=1e-5)
