"""The pair stage on in-memory arrays: which pairs, their spectra, their shifts.

:func:`pair_setup` once per registration, :meth:`PairSetup.spectra` per block of
frames, :func:`measure_pairs` per block of pairs: the numpy engine calls them on the
whole stack, the Dask engine on each block of its graph. :func:`half_shifts` measures
each frame against itself (two parts), for the per-frame noise and for tears.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from daskreg._pieces import frame_slices
from daskreg.errors import ParameterError
from daskreg.kernels import correlate, peaks
from daskreg.kernels._blas import one_blas_thread
from daskreg.kernels._scratch import scratch
from daskreg.kernels.band import BandGeometry, band_geometry
from daskreg.kernels.peak_result import PeakResult
from daskreg.method.masks import build_mask
from daskreg.params import RegistrationParams

__all__ = [
    "pair_indices",
    "PairSetup",
    "pair_setup",
    "measure_pairs",
    "half_shifts",
    "TEAR_ROWS",
    "N_SPLITS",
]

# Correlation maps held at once while measuring pairs (float32 values); the batch's
# temporaries are a few times this, which must fit a worker of 1 GiB next to its spectra.
_PAIR_BATCH_BYTES = 32 * 2**20
# Frames transformed at once by PairSetup.spectra (as float64 bytes).
_SPECTRA_PIECE_BYTES = 32 * 2**20
# Smallest batch of pairs given to a thread: the fits' warm start needs a few hundred
# windows to pay off, and numpy's per-call cost must stay small.
_MIN_THREAD_BATCH = 32
# Rows (fractions of the height) at which each frame is cut into a top and a bottom part
# to look for tears. A tear between 30 % and 70 % of the height is then always within a
# sixth of the height of a cut: with one cut in the middle, a tear near 30 % or 70 % left
# one part holding both sides of the jump, and the correlation of the two parts picked
# the lattice translation of the rows next to the cut, which hides the jump (anisotropic
# a10 series at doses 5-50: 2 torn frames of 10 missed at each dose).
TEAR_ROWS = (1 / 2, 1 / 3, 2 / 3)
# Splits :func:`half_shifts` measures per frame: the checkerboard, then one per tear row.
N_SPLITS = 1 + len(TEAR_ROWS)


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

    def spectra(
        self,
        frames: np.ndarray,
        *,
        scale: float = 1.0,
        cuts: bool | slice = False,
        checkerboard: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
        """Spectra of a block of frames ``(F, ny, nx)`` divided by ``scale``.

        Cropped to the band if any.

        ``scale`` is the series' :func:`~daskreg.kernels.detector.series_scale` (one for
        all blocks, so that energies and peaks stay comparable between frames).

        With ``cuts``, a tuple: the spectra and those of the parts :func:`half_shifts`
        splits each frame into, which share the frame's transform along x (shape
        ``(F, K, ...)``). ``True`` makes all :data:`N_SPLITS` (the checkerboard's even
        pixels, then the top part of each frame cut at each of :data:`TEAR_ROWS`) on
        the band-limited path only, where they are a few per cent of the frames' size;
        on the full-size path they would be four times the spectra's, and None stands
        for them (:func:`half_shifts` then makes one part at a time). A slice of
        :data:`TEAR_ROWS` makes those cuts on either path; ``checkerboard`` adds (or
        alone makes) the checkerboard's, first.

        A few frames are transformed at a time: the windowed copy and the half-plane
        spectra of a whole 64 MiB chunk are several times its size, of which the band
        keeps a few per cent (with :func:`~daskreg.validate.frame_quality`, which had
        the same fault, 1 GiB workers peaked at 0.8 instead of 0.64 GiB).
        """
        frames = np.asarray(frames)
        kx_max = None if self.band is None else self.band.kx_max
        rows = slice(None) if cuts is True and self.band is not None else cuts
        weights = None if rows in (False, True) else _top_weights(self.shape[0])[rows]
        checkerboard = checkerboard or (cuts is True and weights is not None)
        pieces = [
            correlate.frame_spectra(
                frames[piece],
                dtype=self.params.spectrum_dtype,
                kx_max=kx_max,
                window=self.params.window,
                scale=scale,
                row_weights=weights,
                checkerboard=checkerboard,
            )
            for piece in frame_slices(len(frames), math.prod(self.shape), _SPECTRA_PIECE_BYTES)
        ]
        if weights is None and not checkerboard:
            whole = self._joined(pieces)
            return (whole, None) if cuts else whole
        return tuple(self._joined(list(output)) for output in zip(*pieces, strict=True))

    def _joined(self, pieces: list[np.ndarray]) -> np.ndarray:
        if self.band is None:
            return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        # Each piece's band written into its frames of one contiguous array (frames
        # contiguous: the pair kernels read them pair by pair).
        first = self.band.crop(pieces[0][:0])
        out = np.empty((sum(len(p) for p in pieces), *first.shape[1:]), first.dtype)
        start = 0
        for piece in pieces:
            self.band.crop(piece, out[start : start + len(piece)])
            start += len(piece)
        return out

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
) -> PeakResult:
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

    def measure(start: int) -> PeakResult:
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

    def counted(start: int) -> PeakResult:
        found = measure(start)
        if on_batch is not None:
            on_batch(len(found.shifts))
        return found

    starts = range(0, len(i), batch)
    # BLAS's own threads cost more than they give on these small products, and they
    # fight ours (two threads of pairs then ran slower than one); Dask workers get the
    # same limit from distributed's environment.
    with one_blas_thread():
        if threads > 1 and len(starts) > 1:
            with ThreadPoolExecutor(threads) as pool:
                return PeakResult.concatenate(list(pool.map(counted, starts)))
        return PeakResult.concatenate([counted(start) for start in starts])


def half_shifts(
    frames: np.ndarray,
    setup: PairSetup,
    *,
    scale: float = 1.0,
    noise_frames: np.ndarray | None = None,
    spectra: np.ndarray | None = None,
    parts: np.ndarray | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Shift between two parts of each frame: a checkerboard split and top/bottom cuts.

    Checkerboard (``[:, 0]``): the pixels with ``y + x`` even and odd hold independent
    noise on the same specimen at the same position, so the measured shift between them
    is pure noise: its scatter over the frames is twice the standard deviation of a
    shift measured from a whole frame (half the counts each, differenced). This is the
    part of each frame's error that every pair with that frame shares, which the pair
    residuals cannot see. The checkerboard's own spectrum lies at the Nyquist corner,
    outside any mask of cutoff ``n > 2``.

    Top and bottom (``[:, 1:]``, one per row of :data:`TEAR_ROWS`): the rows above and
    below the cut (joined by a smooth step) show different parts of the specimen, so on
    a lattice their shift is a lattice translation (modulo the lattice, the series'
    common scan distortion); a frame torn by a jump during the scan shows the jump
    instead (:func:`~.bad_frames.torn_frames`), at least at the cut nearest the tear.

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
        ``setup.spectra(frames, scale=scale)``, already computed (the pair stage's).
    parts : ndarray, optional
        The parts of ``setup.spectra(frames, scale=scale, cuts=True)``, already
        computed: the splits then cost nothing more than their correlations.
    threads : int, default 1
        As :func:`measure_pairs`'s.

    Returns
    -------
    ndarray, shape (F, N_SPLITS, 2)
        ``(dy, dx)`` per frame and split, NaN where the measurement failed.
    """
    frames = np.asarray(frames)
    if spectra is None:
        spectra, parts = setup.spectra(frames, scale=scale, cuts=True)
    index = np.arange(len(frames))
    chosen = index if noise_frames is None else np.flatnonzero(noise_frames)
    out = np.full((len(frames), N_SPLITS, 2), np.nan)
    if parts is not None:
        # Every split in one call, on the parts where they are: the first part of split
        # k of frame f is part f * N_SPLITS + k, the second the frame less it (the
        # spectra are linear in the frame).
        first = parts.reshape(-1, *parts.shape[2:])
        second = (spectra[:, None] - parts).reshape(first.shape)
        frame = np.concatenate([np.repeat(index, N_SPLITS - 1), chosen])
        split = np.concatenate([np.tile(np.arange(1, N_SPLITS), len(index)), 0 * chosen])
        pairs = frame * N_SPLITS + split
        found = measure_pairs(first, second, pairs, pairs, setup, threads=threads)
        out[frame, split] = np.where(found.ok[:, None], found.shifts, np.nan)
        return out
    # The full-size path: each split a pair (first part, second part) of one frame, made
    # and measured one at a time (its spectra are large).
    splits: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    for k in range(len(TEAR_ROWS)):
        top = setup.spectra(frames, scale=scale, cuts=slice(k, k + 1))[1][:, 0]
        splits.append((1 + k, index, top, spectra - top))
    if len(chosen):
        first = setup.spectra(frames[chosen], scale=scale, checkerboard=True)[1][:, 0]
        splits.append((0, chosen, first, spectra[chosen] - first))
    for k, rows, first, second in splits:
        pairs = np.arange(len(first))
        found = measure_pairs(first, second, pairs, pairs, setup, threads=threads)
        out[rows, k] = np.where(found.ok[:, None], found.shifts, np.nan)
    return out


@lru_cache(maxsize=8)
def _top_weights(ny: int) -> np.ndarray:
    """Row weights of the top part of a frame cut at each of :data:`TEAR_ROWS`.

    A smooth step over an eighth of the height: a hard cut would correlate with itself.
    """
    y = (np.arange(ny) - np.multiply(TEAR_ROWS, ny)[:, None]) / max(ny / 8, 1)
    weights = np.cos(np.pi / 4 * (np.clip(y, -1, 1) + 1)) ** 2
    weights.flags.writeable = False
    return weights
