"""The compiled local-maxima search against a plain numpy definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from daskreg.kernels.maxima import distinct_best, top_maxima


def _brute_force(m: np.ndarray, k: int, floor: float):
    """Local maxima by definition: no neighbour larger, no equal neighbour above/left."""
    ny, nx = m.shape
    top = m.max()
    limit = floor * top if top > 0 else 0.0
    found = []
    for y in range(ny):
        for x in range(nx):
            v = m[y, x]
            if v < limit:
                continue
            peak = True
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if (dy, dx) == (0, 0):
                        continue
                    w = m[(y + dy) % ny, (x + dx) % nx]
                    if w > v or (w == v and (dy, dx) < (0, 0)):
                        peak = False
            if peak:
                found.append((v, y, x))
    # Stable: equal values keep row-major order.
    found.sort(key=lambda t: -t[0])
    return [(y, x) for _, y, x in found[:k]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("floor", [0.0, 0.5])
def test_maxima_match_the_definition(dtype, floor):
    rng = np.random.default_rng(3)
    smooth = ndimage.gaussian_filter(rng.random((3, 40, 52)), (0, 1.5, 1.5), mode="wrap") - 0.5
    # Quantised values make plateaus and ties, the cases an off-by-one rule gets wrong.
    maps = (np.round(smooth * 200) / 200).astype(dtype)
    found = top_maxima(maps, 12, floor=floor)
    for p in range(len(maps)):
        expected = _brute_force(maps[p], 12, floor)
        got = [tuple(v) for v in found.positions[p][found.valid[p]]]
        assert got == expected
        assert len(expected) > 0


def test_wrapped_peak_and_fewer_maxima_than_asked():
    m = np.zeros((1, 16, 20))
    m[0, 0, 19], m[0, 15, 0] = 5.0, 4.0  # diagonal neighbours across both edges
    m[0, 8, 8] = 3.0
    found = top_maxima(m, 4)
    assert [tuple(v) for v in found.positions[0][found.valid[0]]] == [(0, 19), (8, 8)]
    assert found.valid[0].tolist() == [True, True, False, False]
    assert np.isneginf(found.score[0, 2:]).all()


def test_interpolated_height_and_offset_exact_for_a_gaussian():
    # Sampled every 2 px, a Gaussian's log is a parabola through any three samples.
    sigma, centre, amp = 1.9, np.array([9.3, 12.8]), 2.5
    y, x = np.mgrid[:16, :24] * 2.0
    peak = amp * np.exp(-((y - 2 * centre[0]) ** 2 + (x - 2 * centre[1]) ** 2) / (2 * sigma**2))
    second = 1.0 * np.exp(-((y - 6.0) ** 2 + (x - 8.0) ** 2) / (2 * sigma**2))
    found = top_maxima((peak + second)[None], 2, interpolate=True)
    np.testing.assert_allclose(found.positions[0, 0] + found.offset[0, 0], centre, atol=1e-6)
    np.testing.assert_allclose(found.score[0, 0], amp, rtol=1e-6)
    np.testing.assert_allclose(found.score[0, 1], 1.0, rtol=1e-6)


def _log_parabola_height(m: np.ndarray, y: int, x: int) -> float:
    """The ranking height of the maximum at (y, x), written out with logarithms."""
    ny, nx = m.shape
    v = float(m[y, x])

    def gain(before: float, after: float) -> float:
        b, a = np.log(max(before / v, 1e-3)), np.log(max(after / v, 1e-3))
        return 0.0 if b + a >= 0 else -((b - a) ** 2) / (8 * (b + a))

    m = m.astype(np.float64)
    return v * np.exp(
        gain(m[(y - 1) % ny, x], m[(y + 1) % ny, x]) + gain(m[y, (x - 1) % nx], m[y, (x + 1) % nx])
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_interpolated_ranking_keeps_the_best_heights_of_many_maxima(dtype):
    # Far more maxima than kept, so the search skips most of them by its bound on the
    # height: the kept ones must still be the best by the height itself.
    rng = np.random.default_rng(5)
    maps = ndimage.gaussian_filter(rng.random((4, 64, 64)), (0, 1.2, 1.2), mode="wrap")
    maps = (maps - maps.mean()).astype(dtype)
    found = top_maxima(maps, 6, interpolate=True)
    for p in range(len(maps)):
        every = _brute_force(maps[p], 10_000, 0.0)
        assert len(every) > 30
        heights = sorted(
            (_log_parabola_height(maps[p], y, x) for y, x in every if maps[p, y, x] > 0),
            reverse=True,
        )
        np.testing.assert_allclose(found.score[p], heights[:6], rtol=1e-9)


def test_rejects_non_float_maps():
    with pytest.raises(ValueError, match="real float"):
        top_maxima(np.zeros((1, 4, 4), dtype=int), 2)


def test_distinct_best_counts_each_position_once_and_ignores_invalid():
    positions = np.array([[[5, 5], [1, 2], [5, 5], [7, 0], [3, 3]],
                          [[0, 0], [0, 0], [2, 2], [9, 9], [4, 4]]])
    values = np.array([[1.0, 3.0, 9.0, 2.0, 8.0],
                       [4.0, 5.0, 6.0, 7.0, 0.5]], dtype=np.float32)
    valid = np.array([[True, True, True, True, False],
                      [False, True, True, False, False]])
    best, best_values = distinct_best(positions, values, valid, 3)
    # Row 0: the second (5, 5) is a repeat, whatever its value; (3, 3) is invalid.
    np.testing.assert_array_equal(best[0], [[1, 2], [7, 0], [5, 5]])
    np.testing.assert_array_equal(best_values[0], [3.0, 2.0, 1.0])
    # Row 1: an invalid candidate does not hide a valid one at the same position, and
    # fewer than k candidates leave -inf.
    np.testing.assert_array_equal(best[1, :2], [[2, 2], [0, 0]])
    np.testing.assert_array_equal(best_values[1], [6.0, 5.0, -np.inf])
