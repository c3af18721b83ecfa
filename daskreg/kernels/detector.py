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
from daskreg.kernels.local_median import SIZE, LocalMedian

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
_NEIGHBOURHOOD = SIZE
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
    median = LocalMedian(mean)
    # The image-wide statistics from whole rows spread over the image (every row when
    # the image is small): every exact 5 x 5 median costs ~25 ms per 512^2 image.
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
