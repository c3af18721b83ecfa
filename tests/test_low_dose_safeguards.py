"""Safeguards of the robust defaults: say so when the data cannot support an answer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import daskreg
from daskreg.errors import RegistrationWarning
from daskreg.synthetic import lattice_series


def _rms(result, series) -> float:
    shifts = result.shifts.values
    used = np.isfinite(shifts).all(axis=1)
    error = shifts[used] - series.shifts[used]
    error -= error.mean(axis=0)
    return float(np.sqrt((error**2).sum(axis=1).mean()))


@pytest.mark.parametrize("seed", [1, 2])
def test_drift_beyond_half_the_frame_is_flagged_not_silently_wrong(seed):
    # 220 px over 12 frames of 128^2 (issue 17): far pairs share no area and their
    # shifts wrap around the frame. The right answer, or a warning with sigma that
    # covers the error.
    series = lattice_series(
        12, (128, 128), lattice="perovskite", spacing=12, dose=20, drift_step=(20, 0), seed=seed
    )
    with pytest.warns(RegistrationWarning) as caught:
        result = daskreg.register(series.stack)
    rms = _rms(result, series)
    if rms > 0.5:
        assert result.dataset.attrs["reliable"] == 0
        assert any("attrs['reliable'] is 0" in str(w.message) for w in caught)
        assert np.nanmedian(result.shift_uncertainty.values) >= 3.0


@pytest.mark.parametrize(
    ("lattice", "spacing", "dose", "step", "seed"),
    [
        # Measured before: 21.7 px (flagged), 18.7 px (reliable, sigma 0.016 px: silently
        # wrong), 0.022 px; now the second is flagged too (55 % and 32 % of its pairs are
        # unit-cell corrected). A start from frames near in time finds the right cells
        # (0.018, 0.014 px) but then misses drift beyond half the frame: not yet.
        ("perovskite", 14, 20, (3, -2.5), 0),
        ("perovskite", 14, 20, (3, -2.5), 1),
        ("perovskite", 14, 20, (3, -2.5), 2),
        # Dose 2: 4-13 px off on 2 of 3 seeds, 5.96 px on the third, reliable claimed.
        ("hexagonal", 12, 2, (2, -1.5), 0),
        ("hexagonal", 12, 2, (2, -1.5), 1),
    ],
)
def test_long_drift_right_or_flagged(lattice, spacing, dose, step, seed):
    """A drift long for the frame (40-70 px over 20 frames of 256^2): far pairs hop
    systematically towards zero. Right, or flagged with a sigma that covers the error."""
    series = lattice_series(
        20,
        (256, 256),
        lattice=lattice,
        spacing=spacing,
        dose=dose,
        read_noise=1.0,
        drift_step=step,
        seed=seed,
    )
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = daskreg.register(series.stack)
    rms = _rms(result, series)
    if rms > 0.5:
        assert result.dataset.attrs["reliable"] == 0
        assert np.nanmedian(result.shift_uncertainty.values) >= spacing / 2


@pytest.mark.parametrize("seed", [0, 1, 11])
def test_long_series_split_by_a_cell_is_flagged(seed):
    """60 frames of 128^2 drifting 50 px, band 16: on seeds 0 and 1 the long pairs
    outvote the short ones and the solve splits the series into two groups a unit cell
    apart (5.7 and 4.9 px RMS; measured with the robust solve of this stop), which was
    reported as reliable. Right (seed 11: 0.04 px), or flagged naming the neighbours."""
    series = lattice_series(60, (128, 128), lattice="perovskite", dose=5.0, seed=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = daskreg.register(series.stack, band=16)
    rms = _rms(result, series)
    if rms > 0.5:
        assert result.dataset.attrs["reliable"] == 0
        assert any("neighbouring frames" in str(w.message) for w in caught)
        assert np.nanmedian(result.shift_uncertainty.values) >= 16 / 2
    else:
        assert result.dataset.attrs["reliable"] == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_data_too_noisy_to_register_say_so(seed):
    # 0.5 counts at a column peak with read noise: no setting registers this (the
    # accuracy harness's best hand setting hops on most frames).
    series = lattice_series(
        16, (256, 256), lattice="perovskite", spacing=16, dose=0.5, read_noise=1.0, seed=seed
    )
    with pytest.warns(RegistrationWarning, match="disagree too much"):
        result = daskreg.register(series.stack)
    assert result.dataset.attrs["reliable"] == 0
    sigma = np.nanmedian(result.shift_uncertainty.values)
    assert sigma >= 0.3 * 16  # at least a good fraction of a lattice spacing


def test_sigma_of_an_unregistrable_series_covers_errors_of_several_cells():
    """At 0.5 counts the solve lands each frame on some alias, often several cells off:
    sigma must cover that, not just one cell. Measured before with sigma = the cell
    (10 px): 82 % of the errors (median 13.7 px) within 3 sigma on this series."""
    series = lattice_series(
        20, (384, 512), lattice="anisotropic", spacing=10, dose=0.5, read_noise=1.0, seed=4
    )
    with pytest.warns(RegistrationWarning, match="disagree too much"):
        result = daskreg.register(series.stack)
    assert result.dataset.attrs["reliable"] == 0
    shifts, sigma = result.shifts.values, result.shift_uncertainty.values
    error = shifts - series.shifts
    error = np.abs(error - error.mean(axis=0))
    assert np.median(error) > 10  # several cells off: the case this test is about
    assert np.all(error <= 3 * sigma)


@pytest.mark.parametrize("lattice", ["perovskite", "hexagonal", "anisotropic"])
def test_clean_series_is_reliable_and_records_its_choices(lattice):
    series = lattice_series(12, (256, 256), lattice=lattice, spacing=12, dose=20, seed=3)
    result = daskreg.register(series.stack)
    attrs = result.dataset.attrs
    assert attrs["reliable"] == 1
    assert "mask" in attrs["auto_choices"] and attrs["lattice_basis"] != "null"
    assert _rms(result, series) < 0.1


def test_band_one_warns_that_nothing_can_be_checked():
    series = lattice_series(8, (96, 96), dose=50, seed=4)
    with pytest.warns(RegistrationWarning, match="band=1 links each frame"):
        daskreg.register(series.stack, band=1)


def _torn_series(seed: int, dose: float = 10.0):
    """A perovskite series whose frame 6 jumps by the sublattice translation (a/2, a/2)
    from row 140 on: A and B columns swap, the hard case of issue 17."""
    series = lattice_series(20, (256, 256), spacing=12, dose=dose, read_noise=1.0, seed=seed)
    stack = series.stack.copy()
    stack[6, 140:] = np.roll(stack[6], (6, 6), axis=(0, 1))[140:]
    return series, stack


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_halves_of_a_torn_frame_disagree(seed):
    from daskreg import autoparams
    from daskreg.method.bad_frames import torn_frames
    from daskreg.method.pairs import half_shifts, pair_setup
    from daskreg.params import RegistrationParams

    series, stack = _torn_series(seed)
    resolved = autoparams.resolve(RegistrationParams(), stack[::2])
    setup = pair_setup(resolved.params, stack.shape[1:])
    used = np.ones(len(stack), bool)
    torn = torn_frames(half_shifts(stack, setup), used, resolved.lattice_basis)
    assert list(torn) == [6]
    # The sublattice jump, modulo the lattice: (6, 6) px or an equivalent.
    assert np.linalg.norm(torn[6][1]) > 4
    clean = torn_frames(half_shifts(series.stack, setup), used, resolved.lattice_basis)
    assert clean == {}


@pytest.mark.parametrize("band_limited", [None, False])
def test_halves_from_the_whole_frames_spectra_are_the_two_pass_ones(band_limited):
    # The spectra are linear in the frame: one part's is the whole's minus the other's,
    # and the cuts share the frame's transform along x. Against each part transformed
    # and measured on its own (numpy's rfft2 of the centred, windowed frame times the
    # cut's smooth step, or the checkerboard split through the pair stage's spectra).
    from daskreg.kernels.correlate import hann_window
    from daskreg.method.pairs import TEAR_ROWS, half_shifts, measure_pairs, pair_setup
    from daskreg.params import RegistrationParams

    series = lattice_series(6, (96, 128), dose=20, seed=5)
    frames, (ny, nx) = series.stack, series.stack.shape[1:]
    params = RegistrationParams.reference(find_maxima="gf")
    setup = pair_setup(params, (ny, nx), band_limited=band_limited)
    noise = np.array([True, False, True, False, True, True])
    index = np.arange(len(frames))

    def measured(first, second, rows=index):
        found = measure_pairs(first, second, index[: len(rows)], index[: len(rows)], setup)
        return np.where(found.ok[:, None], found.shifts, np.nan)

    def cropped(half_plane):
        spectra = half_plane.astype(params.spectrum_dtype)
        return spectra if setup.band is None else np.ascontiguousarray(setup.band.crop(spectra))

    expected = np.full((6, 1 + len(TEAR_ROWS), 2), np.nan)
    even = np.add.outer(np.arange(ny), np.arange(nx)) % 2 == 0
    chosen = np.flatnonzero(noise)
    expected[chosen, 0] = measured(
        setup.spectra(frames[chosen] * even, scale=4.0),
        setup.spectra(frames[chosen] * ~even, scale=4.0),
        chosen,
    )
    centred = (frames - frames.mean(axis=(1, 2), keepdims=True)) * hann_window((ny, nx)) / 4
    for k, row in enumerate(TEAR_ROWS):
        y = (np.arange(ny) - row * ny) / (ny / 8)
        top = (np.cos(np.pi / 4 * (np.clip(y, -1, 1) + 1)) ** 2)[:, None]
        expected[:, 1 + k] = measured(
            cropped(np.fft.rfft2(centred * top)), cropped(np.fft.rfft2(centred * (1 - top)))
        )
    assert np.isfinite(expected[:, 1:]).all()

    alone = half_shifts(frames, setup, scale=4.0, noise_frames=noise)
    whole = setup.spectra(frames, scale=4.0)
    one_pass = half_shifts(frames, setup, scale=4.0, noise_frames=noise, spectra=whole)
    spectra, parts = setup.spectra(frames, scale=4.0, cuts=True)
    assert (parts is None) == (setup.band is None)
    # With the pair stage's spectra and cuts (on the band: measured in one call, here
    # on two threads).
    shared = half_shifts(
        frames, setup, scale=4.0, noise_frames=noise, spectra=spectra, parts=parts, threads=2
    )
    for found in (alone, one_pass, shared):
        np.testing.assert_allclose(found, expected, atol=1e-3, equal_nan=True)


@pytest.mark.parametrize("band_limited", [None, False])
def test_spectra_made_in_pieces_are_the_spectra_made_at_once(band_limited, monkeypatch):
    # A stack is transformed a few frames at a time, each piece's band cropped into its
    # frames of one output: pieces of 2 and 3 frames against one piece of all 7 (and
    # against numpy for the whole spectra).
    from daskreg.kernels.correlate import hann_window
    from daskreg.method import pairs
    from daskreg.params import RegistrationParams

    frames = lattice_series(7, (64, 80), dose=20, seed=2).stack
    setup = pairs.pair_setup(RegistrationParams.reference(), (64, 80), band_limited=band_limited)
    assert (setup.band is None) == (band_limited is False)
    at_once = setup.spectra(frames, scale=2.0, cuts=True)
    for frames_per_piece in (2, 3):
        monkeypatch.setattr(pairs, "_SPECTRA_PIECE_BYTES", frames_per_piece * 64 * 80 * 8)
        pieces = setup.spectra(frames, scale=2.0, cuts=True)
        assert len(pieces) == 2
        for got, want in zip(pieces, at_once, strict=True):
            if want is None:
                assert got is None
                continue
            assert got.flags.c_contiguous
            # Single precision: a transform's rounding depends on its batch (SIMD lanes).
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * abs(want).max())
    centred = (frames - frames.mean(axis=(1, 2), keepdims=True)) * hann_window((64, 80)) / 2
    whole = np.fft.rfft2(centred)
    if setup.band is not None:
        whole = setup.band.crop(whole)
    scale = abs(whole).max()
    np.testing.assert_allclose(at_once[0], whole, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("seed", [5, 9])
def test_a_doubtful_solve_keeps_the_frames_it_cannot_link(seed):
    # Hexagonal a = 12 px at 2 counts per column (tests/accuracy.py's fast sweep): the
    # pairs hop so often that the solve is a guess. Measured before: seed 5 dropped 8 and
    # seed 9 5 good frames as "no valid pair links it". Kept now, flagged, sigma a cell.
    series = lattice_series(
        20, (256, 256), lattice="hexagonal", spacing=12.0, dose=2.0, read_noise=1.0, seed=seed
    )
    with pytest.warns(RegistrationWarning) as caught:
        result = daskreg.register(series.stack)
    assert result.bad_frame_reasons == {}
    assert result.dataset.attrs["reliable"] == 0
    assert any("attrs['reliable'] is 0" in str(w.message) for w in caught)
    error = result.shifts.values - series.shifts
    error -= error.mean(axis=0)
    assert (np.abs(error) <= 3 * result.shift_uncertainty.values).all()
