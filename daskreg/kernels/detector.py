"""Pixels fixed in detector coordinates (hot pixels, bright defects) and the series' scale.

A camera's hot pixel (or a small bright defect) sits at the same detector pixel in every
frame while the specimen drifts. It correlates perfectly with itself at zero shift, so
a bright one pulls every pair's correlation peak to zero: a single pixel at a few
hundred times the lattice's maximum pins the shifts at zero (3.6 px of error on a
drifting 256^2 series). In the mean of the frames the drifting lattice blurs while a
fixed defect stays sharp, and it is present in (nearly) every frame while a cosmic-ray
or X-ray spike is not: :func:`hot_pixels` finds such pixels from the per-pixel mean and
temporal standard deviation (:class:`FrameMoments`), and :func:`repair` replaces them in
a private copy of the frames by the median of their neighbours.

:func:`series_scale` is the power of two that brings the series' values near 1 before
the transforms: spectra in single precision overflow for values beyond about 1e15 and
underflow below about 1e-20, while a power of two changes no digit of the rest.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numba
import numpy as np

from daskreg._pieces import frame_slices

__all__ = [
    "FrameMoments",
    "frame_survey",
    "FrameCorrection",
    "hot_pixels",
    "repair",
    "series_scale",
    "HOT_PIXEL_NOISE_SIGMAS",
    "HOT_PIXEL_LATTICE_FACTOR",
]

# Side of the neighbourhood whose median stands for the pixel's surroundings: 5 x 5
# keeps the median on the background for spots of up to 3 x 3 defect pixels.
_NEIGHBOURHOOD = 5
# A defect must exceed its neighbourhood median by this many robust standard deviations
# of the residuals of the mean image (noise alone reaches about 6 on 4k^2 frames) ...
HOT_PIXEL_NOISE_SIGMAS = 12.0
# ... and by this factor more than the brightest features of the lattice do. Atomic
# columns are many and alike: over 3 lattices x doses 0.5-50 x drift or none, the largest
# residual of a clean mean image is at most 1.8 times the reference level (below), so a
# factor 4 never takes a column, while a defect weaker than that biases the shifts by
# less than 0.01 px (measured: a pixel at 4 x the reference level on a 256^2 series).
HOT_PIXEL_LATTICE_FACTOR = 4.0
# The reference level is the residual at this rank from the top (a fraction of the
# pixels, and at least _MIN_RANK pixels): above the columns' centres, below the defects
# as long as they are fewer than this.
_REFERENCE_FRACTION = 1e-3
_MIN_RANK = 16
# Frames examined at once by frame_survey when they are converted to float64 first.
_PIECE_BYTES = 8 * 2**20
# Dtypes frame_survey reads as they are (one compiled loop each); others are converted.
_READ_AS_IS = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint16))
# Pixels (in whole rows) from which the image-wide noise and centre of the excess are
# estimated: a relative error of the MAD of about 1 %, far inside the detection margins.
_SAMPLE_PIXELS = 2**14


@dataclass(frozen=True)
class FrameMoments:
    """Per-pixel count, mean and sum of squared deviations over a set of frames.

    Mergeable (Chan et al.'s parallel update), so a Dask reduction over frame chunks and
    the in-memory engine give the same numbers.

    Attributes
    ----------
    count : int
    mean : ndarray of float64, shape (ny, nx)
    m2 : ndarray of float64, shape (ny, nx)
        Sum over frames of ``(frame - mean)**2``.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, frames: np.ndarray, keep: np.ndarray | None = None) -> FrameMoments:
        """Moments of the frames ``(F, ny, nx)`` where ``keep`` (F,) is True (default all).

        Frames with NaN/inf pixels or no contrast are left out too
        (:func:`frame_survey`).
        """
        return frame_survey(frames, keep=keep)[2]

    def merge(self, other: FrameMoments) -> FrameMoments:
        """Moments of the union of two disjoint sets of frames."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / count)
        return FrameMoments(count, mean, m2)

    @property
    def std(self) -> np.ndarray:
        """Temporal standard deviation of each pixel (0 for fewer than two frames)."""
        return np.sqrt(self.m2 / max(self.count - 1, 1))


def frame_survey(
    frames: np.ndarray, *, keep: np.ndarray | None = None, moments: bool = True
) -> tuple[np.ndarray, np.ndarray, FrameMoments | None]:
    """Each frame's finite flag and standard deviation, and the per-pixel moments.

    One compiled pass over the frames (numpy's statistics read a 40 x 512^2 stack seven
    times, in 35 ms; this reads it once, in about 10 ms).

    Parameters
    ----------
    frames : ndarray, shape (F, ny, nx)
        Any real dtype.
    keep : ndarray of bool, shape (F,), optional
        Frames the moments may include (default all).
    moments : bool, default True
        Whether to compute the moments (else None is returned for them).

    Returns
    -------
    finite : ndarray of bool, shape (F,)
        False where a frame holds a NaN or infinite pixel.
    std : ndarray of float64, shape (F,)
        Standard deviation of each frame's finite pixels (0 for a constant frame or one
        without a finite pixel).
    moments : FrameMoments or None
        Over the frames in ``keep`` that are finite and not constant.

    Notes
    -----
    Both statistics are sums of deviations from a pivot (the frame's first finite pixel;
    each pixel's value in the first frame summed), so that an offset far above the
    contrast loses no digits; the per-pixel mean is the plain sum over the count
    (exact for integer-valued frames).
    """
    frames = np.asarray(frames)
    n_frames, ny, nx = frames.shape
    keep = np.ones(n_frames, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    finite = np.zeros(n_frames, dtype=bool)
    std = np.zeros(n_frames)
    sums = np.zeros((4 if moments else 0, ny, nx))
    count = 0
    if frames.dtype.isnative and frames.dtype in _READ_AS_IS:
        pieces = [slice(0, n_frames)]
    else:
        pieces = frame_slices(n_frames, ny * nx, _PIECE_BYTES)
    for piece in pieces:
        block = frames[piece]
        if block.dtype not in _READ_AS_IS or not block.dtype.isnative:
            block = block.astype(np.float64)
        count = _survey_pass(block, keep[piece], moments, count, finite[piece], std[piece], sums)
    if not moments:
        return finite, std, None
    total, _, shifted, squared = sums
    if count == 0:
        return finite, std, FrameMoments(0, np.zeros((ny, nx)), np.zeros((ny, nx)))
    m2 = np.maximum(squared - shifted * shifted / count, 0.0)
    return finite, std, FrameMoments(count, total / count, m2)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _survey_pass(frames, keep, moments, count, finite, std, sums):  # pragma: no cover - compiled
    """:func:`frame_survey`'s loop; returns the count of frames in the moments so far.

    ``sums`` holds, per pixel: the sum of the values, the pivot (the first summed
    frame's value), the sum of the deviations from it and of their squares.
    """
    n_frames, ny, nx = frames.shape
    for f in range(n_frames):
        frame = frames[f]
        pivot = _first_finite(frame)
        n_finite = 0
        s = 0.0
        q = 0.0
        for y in range(ny):
            row = frame[y]
            for x in range(nx):
                value = np.float64(row[x])
                ok = np.isfinite(value)
                d = value - pivot if ok else 0.0
                n_finite += ok
                s += d
                q += d * d
        if n_finite > 0:
            mean = s / n_finite
            std[f] = np.sqrt(max(q / n_finite - mean * mean, 0.0))
        finite[f] = n_finite == ny * nx
        if not (moments and keep[f] and finite[f] and std[f] > 0):
            continue
        for y in range(ny):
            row = frame[y]
            total, base, shifted, squared = sums[0, y], sums[1, y], sums[2, y], sums[3, y]
            for x in range(nx):
                value = np.float64(row[x])
                if count == 0:
                    base[x] = value
                d = value - base[x]
                total[x] += value
                shifted[x] += d
                squared[x] += d * d
        count += 1
    return count


@numba.njit(cache=True, nogil=True)
def _first_finite(frame):  # pragma: no cover - compiled
    """The first finite value of ``frame`` in row-major order (0 if there is none)."""
    for y in range(frame.shape[0]):
        for x in range(frame.shape[1]):
            value = np.float64(frame[y, x])
            if np.isfinite(value):
                return value
    return 0.0


def hot_pixels(moments: FrameMoments) -> np.ndarray:
    """Pixels that are far brighter than their neighbours in (nearly) every frame.

    A pixel is a defect when its excess over the median of its 5 x 5 neighbourhood in
    the mean image, ``r``, is

    - beyond noise: more than ``HOT_PIXEL_NOISE_SIGMAS`` robust standard deviations
      (median absolute deviation) of ``r`` over the image (from rows spread over it);
    - beyond the lattice: more than ``HOT_PIXEL_LATTICE_FACTOR`` times the reference
      level, the value of ``r`` at rank ``max(16, 0.1 %)`` from the top. Atomic columns
      are many and alike, so they fill the top ranks evenly; a few defects stand far
      above them. This keeps a sharp lattice that did not drift (whose columns the mean
      image does not blur) safe at any dose;
    - fixed: its temporal standard deviation is below ``r``, which holds for a defect
      present in more than about half the frames (a spike in one frame of ``F`` has a
      standard deviation of ``sqrt(F)`` times its excess in the mean).

    Parameters
    ----------
    moments : FrameMoments
        Over the usable frames of the series.

    Returns
    -------
    ndarray of int, shape (K, 2)
        ``(y, x)`` of each defect pixel, sorted; empty when there are none (or fewer
        than two frames).
    """
    none = np.zeros((0, 2), dtype=int)
    mean = moments.mean
    if moments.count < 2 or min(mean.shape) < _NEIGHBOURHOOD:
        return none
    median = _LocalMedian(mean)
    # The image-wide statistics from whole rows spread over the image (every row when
    # the image is small): the exact median of 5 x 5 costs ~0.1 s per 512^2 image.
    sample = median.excess_rows(max(1, mean.shape[0] * mean.shape[1] // _SAMPLE_PIXELS))
    centre = np.median(sample)
    noise = 1.4826 * np.median(np.abs(sample - centre))
    if noise == 0:
        # Integer-valued sparse data (most residuals equal): the plain spread instead.
        noise = float(np.std(sample))
    rank = max(_MIN_RANK, math.ceil(_REFERENCE_FRACTION * mean.size))
    if noise == 0 or rank >= mean.size:
        return none
    reference = median.top(rank, sample) - centre
    limit = centre + max(HOT_PIXEL_NOISE_SIGMAS * noise, HOT_PIXEL_LATTICE_FACTOR * reference)
    # Only pixels whose bound exceeds the limit can be defects: their exact excess decides.
    where = np.flatnonzero(median.bound > limit)
    excess = median.excess(where)
    keep = (excess > limit) & (moments.std.ravel()[where] < excess - centre)
    return np.stack(np.unravel_index(where[keep], mean.shape), axis=1)


class _LocalMedian:
    """Excess of each pixel over the median of its 5 x 5 neighbourhood, where needed.

    ``bound`` is an upper bound of the excess for every pixel, cheap to compute: the
    median of 25 values is at least ``min(m3, q)``, ``m3`` the median of the five row
    medians and ``q`` the smallest of the rows' fourth values (sorted ascending). Below
    that value lie at most two values of each of the three rows whose median reaches
    ``m3`` and at most three of each other row: twelve, the number the median has below
    it. (The smallest row median alone, the earlier bound, left three to six times as
    many pixels to compute exactly on lattice images.) The exact excess is computed
    only for the pixels asked for. Borders as
    ``scipy.ndimage.median_filter(mode="mirror")``.
    """

    def __init__(self, image: np.ndarray) -> None:
        half = _NEIGHBOURHOOD // 2
        self.image = np.ascontiguousarray(image, dtype=np.float64)
        self.padded = np.pad(self.image, half, mode="reflect")
        lower = np.empty_like(self.image)
        _lower_bounds(self.padded, lower)
        self.bound = (self.image - lower).ravel()

    def excess(self, flat: np.ndarray) -> np.ndarray:
        """Exact excess at the flat pixel indices ``flat``."""
        out = np.empty(len(flat))
        _excess_at(self.image, self.padded, np.asarray(flat, dtype=np.int64), out)
        return out

    def excess_rows(self, step: int) -> np.ndarray:
        """Exact excess of every pixel in every ``step``-th row."""
        ny, nx = self.image.shape
        rows = np.arange(0, ny, step)
        return self.excess((rows[:, None] * nx + np.arange(nx)[None, :]).ravel())

    def top(self, rank: int, known: np.ndarray) -> float:
        """The ``rank``-th largest exact excess over the whole image.

        ``known`` holds exact excesses of some pixels; its ``rank``-th largest is at
        most the image's, so only pixels whose bound reaches it can be among the top.
        """
        floor = np.sort(known)[::-1][rank - 1] if len(known) >= rank else -np.inf
        candidates = np.flatnonzero(self.bound >= floor)
        first = 4 * rank
        if len(candidates) <= first:
            values = self.excess(candidates)
        else:
            # The pixels of highest bound first: the rank-th largest of their excesses
            # is a higher floor for the rest (on lattice images 1-2 thousand pixels
            # computed instead of 6-17 thousand).
            order = np.argpartition(self.bound[candidates], len(candidates) - first)
            head = self.excess(candidates[order[-first:]])
            floor = max(floor, float(np.partition(head, first - rank)[first - rank]))
            rest = candidates[order[:-first]]
            values = np.concatenate([head, self.excess(rest[self.bound[rest] >= floor])])
        return float(np.sort(values)[::-1][rank - 1])


@numba.njit(cache=True, nogil=True, inline="always")
def _sort5(a, b, c, d, e):  # pragma: no cover - compiled
    """Five values sorted by a nine-comparator network (branch-free minima and maxima)."""
    a, b = min(a, b), max(a, b)
    d, e = min(d, e), max(d, e)
    c, e = min(c, e), max(c, e)
    c, d = min(c, d), max(c, d)
    a, d = min(a, d), max(a, d)
    a, c = min(a, c), max(a, c)
    b, e = min(b, e), max(b, e)
    b, d = min(b, d), max(b, d)
    b, c = min(b, c), max(b, c)
    return a, b, c, d, e


@numba.njit(cache=True, nogil=True)
def _lower_bounds(padded, out):  # pragma: no cover - compiled
    """:class:`_LocalMedian`'s lower bound of each pixel's 5 x 5 median, into ``out``.

    ``padded`` is the image padded by two pixels on every side; rows are read as
    slices, so that no index is negative (numba's wrap-around check would keep the
    loops from vectorising).
    """
    ny, nx = out.shape
    middle = np.empty((padded.shape[0], nx))
    fourth = np.empty((padded.shape[0], nx))
    for r in range(padded.shape[0]):
        row, m, q = padded[r], middle[r], fourth[r]
        for x in range(nx):
            _, _, c, d, _ = _sort5(row[x], row[x + 1], row[x + 2], row[x + 3], row[x + 4])
            m[x] = c
            q[x] = d
    for y in range(ny):
        m0, m1, m2, m3, m4 = middle[y], middle[y + 1], middle[y + 2], middle[y + 3], middle[y + 4]
        q0, q1, q2, q3, q4 = fourth[y], fourth[y + 1], fourth[y + 2], fourth[y + 3], fourth[y + 4]
        row = out[y]
        for x in range(nx):
            _, _, c, _, _ = _sort5(m0[x], m1[x], m2[x], m3[x], m4[x])
            row[x] = min(c, min(min(q0[x], q1[x]), min(min(q2[x], q3[x]), q4[x])))


@numba.njit(cache=True, nogil=True)
def _excess_at(image, padded, flat, out):  # pragma: no cover - compiled
    """``image`` less the median of its 5 x 5 neighbourhood at the flat indices ``flat``.

    The neighbourhood's rows are sorted, then its columns (networks, no branches): in
    the result, the element at ``(i, j)`` has at least ``(i + 1)(j + 1)`` elements
    (itself included) at or below it and ``(5 - i)(5 - j)`` at or above, so six
    elements lie surely below the median, six surely above, and the median is the
    middle one of the other 13 (Wirth's selection): 4x faster than a selection among
    all 25.
    """
    nx = image.shape[1]
    m = np.empty((5, 5))
    middle = np.empty(13)
    for n in range(flat.shape[0]):
        y = flat[n] // nx
        x = flat[n] - y * nx
        for dy in range(5):
            row = padded[y + dy]
            m[dy, 0], m[dy, 1], m[dy, 2], m[dy, 3], m[dy, 4] = _sort5(
                row[x], row[x + 1], row[x + 2], row[x + 3], row[x + 4]
            )
        for c in range(5):
            m[0, c], m[1, c], m[2, c], m[3, c], m[4, c] = _sort5(
                m[0, c], m[1, c], m[2, c], m[3, c], m[4, c]
            )
        k = 0
        for i in range(5):
            for j in range(5):
                if (i + 1) * (j + 1) <= 13 and (5 - i) * (5 - j) <= 13:
                    middle[k] = m[i, j]
                    k += 1
        out[n] = image[y, x] - _select(middle, 6)


@numba.njit(cache=True, nogil=True)
def _select(values, k):  # pragma: no cover - compiled
    """The ``k``-th smallest of ``values`` (reordered in place), by Wirth's selection."""
    low, high = 0, len(values) - 1
    while low < high:
        pivot = values[k]
        i, j = low, high
        while i <= j:
            while values[i] < pivot:
                i += 1
            while pivot < values[j]:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if j < k:
            low = i
        if k < i:
            high = j
    return values[k]


def repair(frames: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """A copy of ``frames`` with each defect pixel replaced by its neighbours' median.

    Parameters
    ----------
    frames : ndarray, shape (F, ny, nx)
    pixels : ndarray of int, shape (K, 2)
        From :func:`hot_pixels`.

    Returns
    -------
    ndarray, shape (F, ny, nx)
        ``frames`` itself when there is nothing to repair, else a float copy (the
        caller's array never changes): each defect pixel, in every frame, becomes the
        median of the pixels of its 5 x 5 neighbourhood that are not defects.
    """
    frames = np.asarray(frames)
    pixels = np.asarray(pixels, dtype=int).reshape(-1, 2)
    if len(pixels) == 0 or len(frames) == 0:
        return frames
    ny, nx = frames.shape[-2:]
    out = frames.astype(np.result_type(frames.dtype, np.float32), copy=True)
    defect = np.zeros((ny, nx), dtype=bool)
    defect[pixels[:, 0], pixels[:, 1]] = True
    half = _NEIGHBOURHOOD // 2
    offsets = np.arange(-half, half + 1)
    ys = pixels[:, 0, None, None] + offsets[None, :, None]
    xs = pixels[:, 1, None, None] + offsets[None, None, :]
    ys, xs = np.broadcast_arrays(ys, xs)
    inside = (ys >= 0) & (ys < ny) & (xs >= 0) & (xs < nx)
    ys, xs = np.clip(ys, 0, ny - 1), np.clip(xs, 0, nx - 1)
    good = (inside & ~defect[ys, xs]).reshape(len(pixels), -1)
    ys, xs = ys.reshape(len(pixels), -1), xs.reshape(len(pixels), -1)
    for piece in frame_slices(len(out), ys.size, _PIECE_BYTES):
        patches = np.asarray(out[piece][:, ys, xs], dtype=np.float64)
        patches[:, ~good] = np.nan
        # A defect inside a cluster larger than the neighbourhood keeps its value.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanmedian(patches, axis=-1)
        values = np.where(np.isnan(values), out[piece][:, pixels[:, 0], pixels[:, 1]], values)
        out[piece, pixels[:, 0], pixels[:, 1]] = values
    return out


def series_scale(std: np.ndarray) -> float:
    """The power of two nearest the median of the frames' standard deviations.

    Dividing every frame by it brings the values near 1 before the transforms, so that
    neither squares nor sums over a frame overflow or underflow in single precision;
    being a power of two it changes no significant digit, and one scale for the whole
    series keeps the frames' relative contrast (which the bad-frame tests compare).

    Parameters
    ----------
    std : ndarray, shape (F,)
        Standard deviation of each usable frame (:func:`daskreg.validate.frame_quality`).

    Returns
    -------
    float
        1.0 when no frame has a finite, positive standard deviation.
    """
    std = np.asarray(std, dtype=np.float64)
    std = std[np.isfinite(std) & (std > 0)]
    if not len(std):
        return 1.0
    return float(2.0 ** round(math.log2(float(np.median(std)))))


@dataclass(frozen=True)
class FrameCorrection:
    """What every engine does to the frames before measuring them.

    Attributes
    ----------
    scale : float
        :func:`series_scale`: frames are divided by it inside the spectra.
    hot_pixels : ndarray of int, shape (K, 2)
        :func:`hot_pixels`: repaired in a private copy (:meth:`repair`).
    """

    scale: float = 1.0
    hot_pixels: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=int))

    def repair(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` with the hot pixels repaired (the same array if there are none)."""
        return repair(frames, self.hot_pixels)
