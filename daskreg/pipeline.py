"""The steps of the method on in-memory arrays, shared by every engine.

The numpy engine (:class:`daskreg.Registration`) and the Dask engine
(:mod:`daskreg.parallel`) both call these: building the mask, measuring a block of
pairs, and analysing the assembled shift matrix (outliers, bad frames, correction,
final shifts). Nothing here knows where the frames come from.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from daskreg._pieces import frame_slices
from daskreg.errors import (
    ConstantFrameError,
    NonFiniteError,
    ParameterError,
    RegistrationWarning,
    TooFewFramesError,
)
from daskreg.kernels import correlate, detector, masks, peaks
from daskreg.kernels import robust as robust_kernels
from daskreg.kernels import shiftmatrix as sm
from daskreg.kernels._scratch import scratch
from daskreg.kernels.band import BandGeometry, band_geometry
from daskreg.kernels.lattice import nearest_translation
from daskreg.kernels.layout import PairLayout, pair_layout
from daskreg.kernels.robust import RAYLEIGH_MEDIAN
from daskreg.params import RegistrationParams
from daskreg.validate import frame_quality

__all__ = [
    "build_mask",
    "unusable_frames",
    "initial_bad_frames",
    "frame_correction",
    "prepare_frames",
    "pair_indices",
    "PairSetup",
    "pair_setup",
    "measure_pairs",
    "PairMeasurements",
    "assemble_pairs",
    "MatrixAnalysis",
    "analyse_shift_matrix",
    "auto_threshold",
    "weak_frames",
    "contrast_outliers",
    "example_views",
]

# Correlation maps held at once while measuring pairs (float32 values); the batch's
# temporaries are a few times this, which must fit a worker of 1 GiB next to its spectra.
_PAIR_BATCH_BYTES = 32 * 2**20
# Frames transformed at once by PairSetup.spectra (as float64 bytes).
_SPECTRA_PIECE_BYTES = 32 * 2**20
# Smallest batch of pairs given to a thread: the fits' warm start needs a few hundred
# windows to pay off, and numpy's per-call cost must stay small.
_MIN_THREAD_BATCH = 32
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
# Robust solve: largest cut-off as a fraction of the shortest lattice translation (a
# hop's residual is at least one translation minus the cut-off away from zero).
HOP_CAP = 0.3
# Robust solve without a lattice: the cut-off's cap in units of the mask's feature size,
# which stands at DEFAULT_FEATURE_SIZE pixels for masks without a cutoff.
NO_LATTICE_CAP = 2.0
DEFAULT_FEATURE_SIZE = 4.0
# Robust solve: below this fraction of consistent pairs the registration is unreliable.
MIN_INLIER_FRACTION = 0.5
# Reasons of the frames that cannot be correlated at all (see unusable_frames).
_NONFINITE = "contains NaN or infinite pixels"
_CONSTANT = "constant frame (no contrast, e.g. beam blanked)"


def build_mask(params: RegistrationParams, shape: tuple[int, int]) -> np.ndarray:
    """The Fourier mask of ``params`` for frames of ``shape``, in FFT order.

    Raises
    ------
    ParameterError
        A user mask of the wrong shape, or a cutoff that leaves no frequency.
    """
    if isinstance(params.mask, str) and params.mask == "auto":
        raise ParameterError(
            "mask='auto' is chosen from the frames (daskreg.autoparams.resolve) before a "
            "mask can be built; resolve the parameters first, or pass a mask kind"
        )
    if isinstance(params.mask, np.ndarray):
        if params.mask.shape != tuple(shape):
            raise ParameterError(
                f"the user mask has shape {params.mask.shape} but frames are {tuple(shape)}; "
                "build it on daskreg.fourier_grids(frame_shape)"
            )
        mask = np.fft.ifftshift(params.mask)
    elif params.mask == "elliptical":
        mask = masks.elliptical_mask(shape, params.n1, params.n2, params.theta)
    else:
        mask = masks.fourier_mask(shape, params.mask, params.cutoff)
    # The DC term is zero after mean subtraction, so a mask must pass something else.
    passed = mask.copy()
    passed[0, 0] = 0
    if not np.any(passed):
        raise ParameterError(
            f"the Fourier mask {params.mask!r} with n={params.cutoff:g} keeps no spatial frequency "
            f"for "
            f"frames of {tuple(shape)}: the cutoff is finer than one cycle per frame; use a "
            f"smaller n (at most {min(shape) / 2:g})"
        )
    return mask


def unusable_frames(finite: np.ndarray, std: np.ndarray) -> dict[int, str]:
    """Frames that cannot be correlated at all, and why (see ``validate.frame_quality``).

    Parameters
    ----------
    finite : ndarray of bool, shape (F,)
    std : ndarray of float, shape (F,)

    Returns
    -------
    dict
        Frame index (within the block) -> reason: NaN/inf pixels, or no contrast.
    """
    bad: dict[int, str] = {}
    for k in np.flatnonzero(~finite):
        bad[int(k)] = _NONFINITE
    for k in np.flatnonzero(finite & (std == 0)):
        bad[int(k)] = _CONSTANT
    return bad


def initial_bad_frames(bad: dict[int, str], params: RegistrationParams) -> dict[int, str]:
    """The unusable frames to exclude before correlation.

    Raises
    ------
    NonFiniteError
        There are unusable frames but ``params.detect_bad_frames`` is False.
    """
    if bad and not params.detect_bad_frames:
        raise NonFiniteError(
            f"frames {sorted(bad)} hold NaN/inf pixels or no contrast; pass "
            "detect_bad_frames=True to exclude them, or bad_frames=[...]"
        )
    return dict(bad)


def frame_correction(
    moments: detector.FrameMoments, std: np.ndarray, usable: np.ndarray
) -> detector.FrameCorrection:
    """Scale and hot pixels of a series, from its usable frames; warns when pixels are found.

    Parameters
    ----------
    moments : FrameMoments
        Per-pixel moments over the usable frames.
    std : ndarray, shape (N,)
        Standard deviation of every frame (:func:`daskreg.validate.frame_quality`).
    usable : ndarray of bool, shape (N,)
        Frames that can be correlated (not in :func:`unusable_frames`).

    Returns
    -------
    FrameCorrection
        :func:`~daskreg.kernels.detector.series_scale` and
        :func:`~daskreg.kernels.detector.hot_pixels`.
    """
    pixels = detector.hot_pixels(moments)
    if len(pixels):
        shown = ", ".join(f"({y}, {x})" for y, x in pixels[:5].tolist())
        more = f" and {len(pixels) - 5} more" if len(pixels) > 5 else ""
        warnings.warn(
            f"found {len(pixels)} hot pixel(s) fixed in detector coordinates, far brighter than "
            f"their neighbours in every frame, at (y, x) {shown}{more}; they would pin the "
            "shifts at zero, so they are replaced by the median of their neighbours in "
            "daskreg's copy of the frames (correlation and average; your data are unchanged). "
            "The result lists them in attrs['hot_pixel_yx']",
            RegistrationWarning,
            stacklevel=3,
        )
    return detector.FrameCorrection(detector.series_scale(np.asarray(std)[usable]), pixels)


def prepare_frames(
    frames: np.ndarray, unusable: dict[int, str], correction: detector.FrameCorrection
) -> np.ndarray:
    """The frames every engine correlates and averages: hot pixels repaired, unusable frames
    zeroed, in a private copy when anything changes (the caller's array is untouched).

    Parameters
    ----------
    frames : ndarray, shape (F, ny, nx)
    unusable : dict
        Frame index within ``frames`` -> reason (:func:`unusable_frames`).
    correction : FrameCorrection
    """
    frames = np.asarray(frames)
    out = correction.repair(frames)
    if unusable:
        if out is frames:
            out = frames.astype(np.result_type(frames.dtype, np.float32), copy=True)
        out[sorted(unusable)] = 0.0
    return out


def pair_indices(
    n_frames: int, band: int | None = None, *, rows: slice | None = None, cols: slice | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices ``(i, j)``, ``i < j``, of all pairs or of a band ``j - i <= band``.

    Parameters
    ----------
    n_frames : int
    band : int, optional
    rows, cols : slice, optional
        Only pairs with ``i`` in ``rows`` and ``j`` in ``cols`` (a block of the pair
        matrix, as the Dask engine schedules them); default all frames.

    Returns
    -------
    i, j : ndarray of int, shape (P,)
        Sorted by ``i``, then ``j``. Never builds all N^2 pairs to keep a band.
    """
    i = np.arange(n_frames)[rows or slice(None)]
    j = np.arange(n_frames)[cols or slice(None)]
    lo = np.searchsorted(j, i, side="right")
    hi = np.full_like(lo, len(j)) if band is None else np.searchsorted(j, i + band, "right")
    counts = np.maximum(hi - lo, 0)
    starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
    return np.repeat(i, counts), j[starts + np.arange(counts.sum())]


@dataclass(frozen=True)
class PairSetup:
    """What every pair of a registration shares: mask, frequency band, parameters.

    Build it once with :func:`pair_setup`; then :meth:`spectra` per block of frames,
    :meth:`energy` per block of spectra and :func:`measure_pairs` per block of pairs.

    Attributes
    ----------
    params : RegistrationParams
    shape : (ny, nx)
    mask_half : ndarray
        Half-plane mask, cropped to the band when there is one.
    band : BandGeometry or None
        Set when the correlation is band-limited and worth computing on a coarse grid.
    """

    params: RegistrationParams
    shape: tuple[int, int]
    mask_half: np.ndarray
    band: BandGeometry | None

    def spectra(self, frames: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """Spectra of a block of frames ``(F, ny, nx)`` divided by ``scale``, cropped to the
        band if any.

        ``scale`` is the series' :func:`~daskreg.kernels.detector.series_scale` (one for
        all blocks, so that energies and peaks stay comparable between frames).

        A few frames are transformed at a time: the windowed copy and the half-plane
        spectra of a whole 64 MiB chunk are several times its size, of which the band
        keeps a few per cent (with :func:`~daskreg.validate.frame_quality`, which had
        the same fault, 1 GiB workers peaked at 0.8 instead of 0.64 GiB).
        """
        frames = np.asarray(frames)
        kx_max = None if self.band is None else self.band.kx_max
        pieces = [
            correlate.frame_spectra(
                frames[piece],
                dtype=self.params.spectrum_dtype,
                kx_max=kx_max,
                window=self.params.window,
                scale=scale,
            )
            for piece in frame_slices(len(frames), math.prod(self.shape), _SPECTRA_PIECE_BYTES)
        ]
        if self.band is not None:
            # The crop's fancy index leaves frames interleaved (frame is not the slowest
            # axis): contiguous frames are what the pair kernels read pair by pair.
            pieces = [np.ascontiguousarray(self.band.crop(piece)) for piece in pieces]
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def energy(self, spectra: np.ndarray) -> np.ndarray:
        """Masked energy of each frame (see :func:`~daskreg.kernels.correlate.masked_energy`)."""
        return correlate.masked_energy(spectra, self.mask_half, self.shape)


def pair_setup(
    params: RegistrationParams, shape: tuple[int, int], *, band_limited: bool | None = None
) -> PairSetup:
    """Mask and band for frames of ``shape``.

    Parameters
    ----------
    params : RegistrationParams
    shape : (ny, nx)
    band_limited : bool, optional
        Force (True) or forbid (False) the band-limited path; by default it is used
        when the mask's band is at least four times smaller than the half plane and
        ``find_maxima`` is ``"pixel"``, ``"gf"`` or ``"upsampled"`` (``com`` needs whole
        maps).
    """
    mask_half = correlate.half_plane_mask(build_mask(params, shape))
    real = np.float32 if params.precision == "single" else np.float64
    mask_half = mask_half.astype(real if np.isrealobj(mask_half) else params.spectrum_dtype)
    band = None
    if band_limited is not False and params.find_maxima in ("pixel", "gf", "upsampled"):
        band = band_geometry(mask_half, shape)
        if band is None and band_limited:
            raise ParameterError(
                f"mask {params.mask!r} with n={params.cutoff:g} is not band-limited enough for the "
                "band-limited path; use band_limited=None"
            )
    if band is not None:
        mask_half = band.crop(mask_half)
    return PairSetup(params, tuple(shape), mask_half, band)


def _band_products(
    spectra_a: np.ndarray, spectra_b: np.ndarray, i: np.ndarray, j: np.ndarray, setup: PairSetup
) -> np.ndarray:
    """Masked band products of pairs ``(i[k], j[k])``, in this thread's scratch array."""
    product = scratch("band products", (len(i), *setup.mask_half.shape), spectra_a.dtype)
    return correlate.pair_spectra(
        spectra_a, spectra_b, i, j, setup.mask_half, setup.params.correlation, out=product
    )


def measure_pairs(
    spectra_a: np.ndarray,
    spectra_b: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    setup: PairSetup,
    *,
    threads: int = 1,
    on_batch: Callable[[int], None] | None = None,
) -> peaks.PeakResult:
    """Correlate pairs of frames from two blocks of spectra and locate each maximum.

    Pair ``k`` correlates frame ``i[k]`` of block a with frame ``j[k]`` of block b (the
    blocks may be the same array), so a block pair of the Dask graph and the whole
    in-memory stack are measured by the same call.

    Parameters
    ----------
    spectra_a, spectra_b : ndarray, shape (F, ...)
        :meth:`PairSetup.spectra` of two blocks of frames.
    i, j : ndarray of int, shape (P,)
        Indices into ``spectra_a`` and ``spectra_b``.
    setup : PairSetup
    threads : int, default 1
        Batches of pairs measured at once, one per thread (the kernels release the GIL).
        Dask workers keep 1: their cluster already has a worker per core.
    on_batch : callable, optional
        Called with the number of pairs of each batch measured (progress display).

    Returns
    -------
    PeakResult
        ``r_ij = s_j - s_i`` per pair, success flags and peak heights.
    """
    params, shape = setup.params, setup.shape
    bias = correlate.window_autocorrelation(tuple(shape), params.window)
    if setup.band is None:
        map_bytes = 4 * shape[0] * shape[1]
    else:  # two gathered band spectra and their product (the band path chunks the rest)
        map_bytes = 3 * setup.mask_half.size * np.dtype(params.spectrum_dtype).itemsize
    batch = int(max(1, _PAIR_BATCH_BYTES // map_bytes / threads))
    if threads > 1:
        # Enough batches to keep every thread busy to the end.
        batch = max(min(batch, -(-len(i) // (4 * threads))), _MIN_THREAD_BATCH)

    def measure(start: int) -> peaks.PeakResult:
        pairs = slice(start, start + batch)
        if setup.band is not None:
            return peaks.find_shifts_band(
                _band_products(spectra_a, spectra_b, i[pairs], j[pairs], setup),
                setup.band,
                params.find_maxima,
                num_peaks=params.num_peaks,
                sigma_guess=params.sigma_guess,
                window_radius=params.window_radius,
                bias=bias,
            )
        corr = correlate.correlation_maps(
            spectra_a[i[pairs]], spectra_b[j[pairs]], setup.mask_half, shape, params.correlation
        )
        return peaks.find_shifts(
            corr,
            params.find_maxima,
            num_peaks=params.num_peaks,
            sigma_guess=params.sigma_guess,
            window_radius=params.window_radius,
            num_iter=params.num_iter,
            min_window_frac=params.min_window_frac,
            bias=bias,
        )

    def counted(start: int) -> peaks.PeakResult:
        found = measure(start)
        if on_batch is not None:
            on_batch(len(found.shifts))
        return found

    starts = range(0, len(i), batch)
    # BLAS's own threads cost more than they give on these small products, and they
    # fight ours (two threads of pairs then ran slower than one); Dask workers get the
    # same limit from distributed's environment.
    with threadpool_limits(limits=1, user_api="blas"):
        if threads > 1 and len(starts) > 1:
            with ThreadPoolExecutor(threads) as pool:
                return peaks.PeakResult.concatenate(list(pool.map(counted, starts)))
        return peaks.PeakResult.concatenate([counted(start) for start in starts])


def half_shifts(
    frames: np.ndarray,
    setup: PairSetup,
    *,
    scale: float = 1.0,
    noise_frames: np.ndarray | None = None,
    spectra: np.ndarray | None = None,
) -> np.ndarray:
    """Shift between two halves of each frame, split two ways.

    Checkerboard (``[:, 0]``): the pixels with ``y + x`` even and odd hold independent
    noise on the same specimen at the same position, so the measured shift between them
    is pure noise: its scatter over the frames is twice the standard deviation of a
    shift measured from a whole frame (half the counts each, differenced). This is the
    part of each frame's error that every pair with that frame shares, which the pair
    residuals cannot see. The checkerboard's own spectrum lies at the Nyquist corner,
    outside any mask of cutoff ``n > 2``.

    Top and bottom (``[:, 1]``): the rows above and below the middle (joined by a smooth
    step) show different parts of the specimen, so on a lattice their shift is a lattice
    translation (modulo the lattice, the series' common scan distortion); a frame torn by
    a jump during the scan shows the jump instead (:func:`torn_frames`).

    Parameters
    ----------
    frames : ndarray, shape (F, ny, nx)
    setup : PairSetup
    scale : float, default 1
        The series' intensity scale (:class:`~daskreg.kernels.detector.FrameCorrection`).
    noise_frames : ndarray of bool, shape (F,), optional
        Frames whose checkerboard split is measured (default all): the noise is a
        statistic of the series, which a sample of frames estimates as well
        (:func:`daskreg.autoparams.sample_indices`), at a fraction of the cost.
    spectra : ndarray, optional
        :meth:`PairSetup.spectra` of ``frames`` (with ``scale``), already computed:
        each split then costs one more pass instead of two.

    Returns
    -------
    ndarray, shape (F, 2, 2)
        ``(dy, dx)`` per frame and split, NaN where the measurement failed.
    """
    frames = np.asarray(frames)
    real = frames.dtype if np.issubdtype(frames.dtype, np.floating) else np.float32
    ny, nx = setup.shape
    even = (np.add.outer(np.arange(ny), np.arange(nx)) % 2 == 0).astype(real)
    # A smooth step over an eighth of the height: a hard cut would correlate with itself.
    y = (np.arange(ny) - ny / 2) / max(ny / 8, 1)
    top = np.cos(np.pi / 4 * (np.clip(y, -1, 1) + 1)) ** 2
    top = np.broadcast_to(top[:, None], (ny, nx)).astype(real)
    chosen = np.ones(len(frames), bool) if noise_frames is None else np.asarray(noise_frames)
    out = np.full((len(frames), 2, 2), np.nan)
    for k, (part, rows) in enumerate(((even, np.flatnonzero(chosen)), (top, None))):
        some = frames if rows is None else frames[rows]
        if not len(some):
            continue
        first = setup.spectra(some * part, scale=scale)
        if spectra is None:
            second = setup.spectra(some * (1 - part), scale=scale)
        else:
            # The spectra are linear in the frame (mean subtraction included), so the
            # other half's are the whole frame's minus this half's: one pass, not two.
            second = (spectra if rows is None else spectra[rows]) - first
        halves = [first, second]
        index = np.arange(len(some))
        found = measure_pairs(*halves, index, index, setup)
        out[slice(None) if rows is None else rows, k] = np.where(
            found.ok[:, None], found.shifts, np.nan
        )
    return out


def torn_frames(
    strips: np.ndarray, used: np.ndarray, basis: np.ndarray | None
) -> dict[int, np.ndarray]:
    """Frames whose top and bottom halves are displaced against each other: torn.

    Parameters
    ----------
    strips : ndarray, shape (N, 2)
        Top-to-bottom shift of each frame (:func:`half_shifts` ``[:, 1]``).
    used : ndarray of bool, shape (N,)
    basis : ndarray, shape (B, 2), optional
        Lattice translations: shifts are compared modulo the lattice (without one,
        nothing is called torn).

    Returns
    -------
    dict
        Frame -> its displacement from the series' consensus (pixels), for frames
        displaced by more than ``TEAR_SIGMAS`` robust standard deviations of the series
        and more than ``TEAR_FRACTION`` of the shortest lattice translation.
    """
    ok = used & np.isfinite(strips).all(axis=1)
    # Without a known lattice two parts of a periodic specimen can be a translation
    # apart that nothing here can tell from a tear.
    if basis is None or ok.sum() < 5:
        return {}
    values = strips.astype(np.float64)
    values = values - nearest_translation(np.nan_to_num(values), basis)[0]
    centre = np.median(values[ok], axis=0)
    offset = values - centre
    offset = offset - nearest_translation(np.nan_to_num(offset), basis)[0]
    distance = np.linalg.norm(offset, axis=1)
    spread = np.median(distance[ok]) / RAYLEIGH_MEDIAN
    limit = max(TEAR_SIGMAS * spread, TEAR_FRACTION * float(np.linalg.norm(basis, axis=1).min()))
    return {int(k): offset[k] for k in np.flatnonzero(ok & (distance > limit))}


@dataclass
class PairMeasurements:
    """The raw outcome of the pair stage, as N x N matrices (or their band).

    Attributes
    ----------
    matrix : (N, N, 2) float
        Antisymmetric ``R[i, j] = s_j - s_i``.
    measured : (N, N) bool
        Pairs whose correlation was computed.
    fit_ok : (N, N) bool
        False where the maximum finder failed.
    quality : (N, N) float
        Correlation coefficient of each pair, ``peak / sqrt(E_i E_j)`` (NaN if unmeasured).
    layout : PairLayout
        How the matrices are stored: dense ``(N, N)``, or ``(N, 2 band + 1)`` by offset
        ``j - i`` when a band leaves pairs out (:func:`daskreg.kernels.layout.pair_layout`).
    energy : (N,) float
        Masked energy of each frame (:func:`daskreg.kernels.correlate.masked_energy`).
    lattice_basis : (B, 2) float, optional
        Lattice translations of the specimen in pixels (rows ``a1``, ``a2``), when a
        lattice was found: pairs off by one are corrected by the robust solve.
    split : (N, 2, 2) float, optional
        :func:`half_shifts` of every frame (NaN for unusable frames): the per-frame
        noise of a shift, which the pair residuals cannot see, and tears.
    """

    matrix: np.ndarray
    measured: np.ndarray
    fit_ok: np.ndarray
    quality: np.ndarray
    layout: PairLayout
    energy: np.ndarray
    lattice_basis: np.ndarray | None = None
    split: np.ndarray | None = None


def assemble_pairs(
    n_frames: int,
    i: np.ndarray,
    j: np.ndarray,
    found: peaks.PeakResult,
    energy: np.ndarray,
    band: int | None = None,
    split: np.ndarray | None = None,
) -> PairMeasurements:
    """N x N matrices (or their band) from the pair results of any engine.

    Parameters
    ----------
    n_frames : int
    i, j : ndarray of int, shape (P,)
        Pair indices.
    found : PeakResult
        Shifts, success flags and peak heights of the pairs, in the same order.
    energy : ndarray, shape (N,)
        :func:`daskreg.kernels.correlate.masked_energy` of every frame.
    band : int, optional
        The band the pairs were chosen with (``params.band``): picks the storage.
    split : ndarray, shape (N, 2, 2), optional
        :func:`half_shifts` of every frame.
    """
    layout = pair_layout(n_frames, band)
    matrix = sm.assemble_shift_matrix(n_frames, i, j, found.shifts, layout)
    measured = layout.full(False)
    fit_ok = layout.full(True)
    quality = layout.full(np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        coefficient = found.peak / np.sqrt(energy[i] * energy[j])
    for a, b in ((i, j), (j, i)):
        layout.put(measured, a, b, True)
        layout.put(fit_ok, a, b, found.ok)
        layout.put(quality, a, b, coefficient)
    return PairMeasurements(
        matrix, measured, fit_ok, quality, layout, np.asarray(energy), split=split
    )


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


def analyse_shift_matrix(
    pairs: PairMeasurements,
    params: RegistrationParams,
    initial_bad: dict[int, str] | None = None,
) -> MatrixAnalysis:
    """Outliers, bad frames, correction and final shifts from a raw shift matrix.

    Parameters
    ----------
    pairs : PairMeasurements
        The pair stage's matrices; frames of outlying contrast (:func:`contrast_outliers`
        on ``pairs.energy``) and weak frames (:func:`weak_frames` on ``pairs.quality``)
        are left out when ``params.detect_bad_frames``.
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
    """
    matrix, measured, fit_ok, quality = pairs.matrix, pairs.measured, pairs.fit_ok, pairs.quality
    layout = pairs.layout
    n_frames = matrix.shape[0]
    bad_reason = dict(initial_bad or {})
    bad_reason.update({b: "listed in bad_frames" for b in params.bad_frames if b < n_frames})
    used = sm.frame_mask(n_frames, np.array(sorted(bad_reason), dtype=int), params.frames)
    _require_frames(used, bad_reason)
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
            for k, jump in torn_frames(pairs.split[:, 1], used, pairs.lattice_basis).items():
                bad_reason[k] = (
                    f"torn: its top and bottom halves are displaced by ({jump[0]:.2f}, "
                    f"{jump[1]:.2f}) px against each other (a jump during the scan)"
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
        for _ in range(2):
            base = measured & ~rejected & layout.outer(used, used)
            if params.outliers == "robust":
                robust = _robust_solve(pairs, base, used, params)
                outliers = base & ~robust.inliers
                scores, threshold = robust.residual, robust.cutoff
            else:
                outliers, scores, threshold = _find_outliers(matrix, base, used, params, layout)
            outliers |= rejected
            # A frame is bad when most of its pairs are wrong; in the robust solve that
            # means grossly wrong, not merely noisier than the typical pair.
            wrong = outliers if robust is None else robust.gross | rejected
            newly_bad = _frames_mostly_outliers(wrong, measured, used, layout)
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
    lstsq_shifts, uncertainty = sm.solve_shifts(matrix, valid, used, layout, weights=weights)
    shifts = (
        sm.shifts_from_rows(corrected, used, layout) if params.solver == "mean" else lstsq_shifts
    )
    reliable = _reliable(robust)
    basis = pairs.lattice_basis
    cell = 0.0 if basis is None else float(np.linalg.norm(basis, axis=1).min())
    uncertainty = _uncertainty(uncertainty, used, pairs.split, robust, reliable, cell)
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
    each frame measure it (:func:`half_shifts`: sigma of a whole frame is half
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


def _reliable(robust: robust_kernels.RobustSolution | None) -> bool:
    if robust is None:
        return True
    # Pairs that agree only after a hop correction fix the shifts modulo the lattice;
    # when they are most of the pairs, which cell each frame sits in is a guess.
    direct = robust.inlier_fraction - robust.hop_fraction
    unreliable = robust.capped or direct < MIN_INLIER_FRACTION
    if unreliable:
        warnings.warn(
            f"the pair measurements disagree too much to trust the shifts: residual scatter "
            f"{robust.scale:.3g} px per axis (cut-off {robust.cutoff:.3g} px), "
            f"{direct:.0%} of the pairs consistent without a unit-cell correction "
            f"({robust.hop_fraction:.0%} more with one). The dose is too low for this series "
            "(more frames, or a larger n, may help); the result's attrs['reliable'] is 0 "
            "and its shift_uncertainty is large",
            RegistrationWarning,
            stacklevel=4,
        )
    return not unreliable


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


def _frames_mostly_outliers(
    outliers: np.ndarray, measured: np.ndarray, used: np.ndarray, layout: PairLayout
) -> list[int]:
    pairs = measured & layout.outer(used, used) & ~layout.diagonal()
    n_pairs = pairs.sum(axis=1)
    n_out = (outliers & pairs).sum(axis=1)
    frac = np.where(n_pairs > 0, n_out / np.maximum(n_pairs, 1), 0.0)
    candidates = np.flatnonzero(used & (frac > BAD_FRAME_OUTLIER_FRACTION))
    # With most frames failing, the fault is in the parameters, not the frames.
    if len(candidates) > used.sum() // 2:
        return []
    return candidates.tolist()


def _require_frames(used: np.ndarray, bad_reason: dict[int, str]) -> None:
    if used.sum() >= 2:
        return
    unusable = {reason for reason in bad_reason.values() if reason in (_NONFINITE, _CONSTANT)}
    if len(bad_reason) == len(used) and set(bad_reason.values()) == unusable:
        # Nothing was ever usable: the data, not the parameters, are at fault.
        error = NonFiniteError if unusable == {_NONFINITE} else ConstantFrameError
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
