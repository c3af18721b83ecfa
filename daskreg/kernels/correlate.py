"""Frame spectra and pairwise correlation maps.

Sign convention (the one of the whole package): for a pair ``(i, j)`` the correlation
``IFFT(M * F_j * conj(F_i))`` peaks at ``r_ij = s_j - s_i``, the displacement of frame
``j`` relative to frame ``i``, where frame ``k`` shows the specimen displaced by
``+s_k``.

The real-space window (:data:`WINDOWS`: Hann by default, Tukey, or none) weights the two
frames' overlap less the further they are displaced, which multiplies each correlation
by the window's autocorrelation (:func:`window_autocorrelation`) and pulls every peak
towards zero shift. The sub-pixel estimators divide it out near the peak
(:func:`daskreg.kernels.peaks.find_shifts`, ``bias=``); on the derived SrTiO3 series this
lowers the RMS error by about 20 %. The maps themselves are not divided: that would
amplify noise far from zero shift up to nine times and let it compete with the true peak.
Without a window the periodic transform sees the jump from the last row to the first,
and the frame edges correlate with each other (a peak at zero shift on drifting data).

Spectra are real-to-complex (``rfft2``) half planes: a frame's spectrum is Hermitian,
and the correlation we keep is the REAL part of the full inverse transform, which is
exactly ``irfft2`` of the half-plane product once the mask is made Hermitian
(``(M(k) + conj(M(-k))) / 2``, see :func:`half_plane_mask`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, get_args

import numba
import numpy as np
import scipy.fft

from daskreg.kernels import _fft
from daskreg.kernels._scratch import scratch

__all__ = [
    "CorrelationKind",
    "CORRELATION_KINDS",
    "WindowKind",
    "WINDOWS",
    "TUKEY_ALPHA",
    "hann_window",
    "real_window",
    "window_autocorrelation",
    "frame_spectra",
    "centre_and_window",
    "half_plane_mask",
    "correlation_spectra",
    "pair_spectra",
    "correlation_maps",
    "masked_energy",
]

CorrelationKind = Literal["cc", "mc", "pc", "phase"]
CORRELATION_KINDS: tuple[str, ...] = get_args(CorrelationKind)
WindowKind = Literal["hann", "tukey"]
#: Real-space windows: ``None`` only subtracts each frame's mean.
WINDOWS: tuple[str | None, ...] = (*get_args(WindowKind), None)
# Fraction of each axis in the Tukey window's cosine tapers (half at each edge): the
# middle half of the frame keeps full weight, against none of it for Hann.
TUKEY_ALPHA = 0.5

# Guards the divisions of mc/pc/phase at frequencies where a spectrum vanishes
# (e.g. DC after mean subtraction); such terms are set to zero.
_TINY = np.finfo(np.float32).tiny
# Pairs whose spectra are gathered at once where the products are not compiled.
_GATHERED_PAIRS = 16


def hann_window(shape: tuple[int, int]) -> np.ndarray:
    """Separable periodic Hann window ``sin(pi y/ny)**2 * sin(pi x/nx)**2``.

    The window takes the frame to zero at its edges, so the periodic FFT sees no jump
    from the last row to the first (which would correlate the frame borders).
    """
    ny, nx = shape
    wy = np.sin(np.pi * np.arange(ny) / ny) ** 2
    wx = np.sin(np.pi * np.arange(nx) / nx) ** 2
    return np.outer(wy, wx)


def _window_axis(n: int, kind: WindowKind | None) -> np.ndarray:
    """The periodic 1-D window of ``kind`` on ``n`` samples (zero at sample 0)."""
    if kind == "hann":
        return np.sin(np.pi * np.arange(n) / n) ** 2
    if kind == "tukey":
        # Imported here: scipy.signal (with the scipy.stats it loads) is 0.7 s of every
        # process's import, for a window that is not the default.
        import scipy.signal

        return scipy.signal.windows.tukey(n, TUKEY_ALPHA, sym=False)
    if kind is None:
        return np.ones(n)
    raise ValueError(f"unknown window {kind!r}; expected one of {WINDOWS}")


def real_window(shape: tuple[int, int], kind: WindowKind | None = "hann") -> np.ndarray:
    """Separable periodic real-space window of ``kind`` (ones for None).

    ``"hann"`` is :func:`hann_window`. ``"tukey"`` is flat over the middle
    ``1 - TUKEY_ALPHA`` of each axis with cosine tapers to zero at the edges: more of the
    frame counts, the edges still meet without a jump.
    """
    if kind == "hann":
        return hann_window(shape)
    return np.outer(_window_axis(shape[0], kind), _window_axis(shape[1], kind))


@lru_cache(maxsize=8)
def _window(shape: tuple[int, int], real: type, kind: WindowKind | None = "hann") -> np.ndarray:
    window = real_window(shape, kind).astype(real)
    window.flags.writeable = False
    return window


@lru_cache(maxsize=16)
def window_autocorrelation(shape: tuple[int, int], kind: WindowKind | None = "hann") -> np.ndarray:
    """Periodic autocorrelation of :func:`real_window`, 1 at zero shift.

    Separable: the outer product of each axis' autocorrelation. For Hann
    ``a(r) = (1 + cos(2 pi r / n) / 2) / 1.5`` per axis, so it never drops below 1/9 and
    dividing by it is safe everywhere; Tukey's drops less; no window gives ones.
    """
    ny, nx = shape
    out = np.outer(_autocorrelation_axis(ny, kind), _autocorrelation_axis(nx, kind))
    out.flags.writeable = False
    return out


def _autocorrelation_axis(n: int, kind: WindowKind | None) -> np.ndarray:
    if kind == "hann":
        return (1 + 0.5 * np.cos(2 * np.pi * np.arange(n) / n)) / 1.5
    if kind is None:
        return np.ones(n)
    window = _window_axis(n, kind)
    out = np.fft.irfft(np.abs(np.fft.rfft(window)) ** 2, n)
    return out / out[0]


def frame_spectra(
    frames: np.ndarray,
    *,
    dtype: np.dtype | type = np.complex64,
    kx_max: int | None = None,
    scale: float = 1.0,
    window: WindowKind | None = "hann",
    row_weights: np.ndarray | None = None,
    checkerboard: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted, windowed half-plane spectra of a block of frames.

    Parameters
    ----------
    frames : ndarray, shape (..., ny, nx)
        Real frames.
    dtype : complex dtype, default complex64
        Precision of the returned spectra (complex128 on request).
    kx_max : int, optional
        Keep only the columns ``kx <= kx_max``. The transform along y then runs on those
        columns alone (a band-limited mask needs no more), which gives the same numbers
        as cropping the whole half plane.
    scale : float, default 1
        Divide the frames by it (folded into the window, so it costs nothing): values far
        from 1 (1e20, 1e-25) would overflow or underflow the single-precision transform
        and its squares. A power of two changes no significant digit.
    window : {"hann", "tukey", None}, default "hann"
        Real-space window (:func:`real_window`) applied after subtracting the mean.
    row_weights : ndarray, shape (K, ny), optional
        Also return the spectra of each centred, windowed frame multiplied by each row
        of weights (parts of the frame, as :func:`~daskreg.method.pairs.half_shifts`
        cuts them). A weight along y commutes with the transform along x, so the parts
        share the frame's: each costs one transform along y of the kept columns.
    checkerboard : bool, default False
        Also return the spectrum of the pixels with ``y + x`` even of each centred,
        windowed frame (the others zero), first among the parts. The checkerboard is
        ``(1 + (-1)^(y + x)) / 2``: the factor ``(-1)^x`` moves the transform along x
        by half the width, which for even widths is the frame's own transform read
        backwards from the Nyquist column (conjugated), and ``(-1)^y`` is a weight along
        y. One more transform along y of the kept columns, no copy of the frames.

    Returns
    -------
    ndarray, shape (..., ny, nx // 2 + 1), or (..., ny, kx_max + 1)
        The spectra; with ``row_weights`` or ``checkerboard``, a tuple of them and the
        parts' spectra, shape ``(..., K, ny, kx)`` (the checkerboard's first).
    """
    real = np.float32 if np.dtype(dtype) == np.complex64 else np.float64
    frames = np.asarray(frames)
    if frames.dtype not in (np.float32, np.float64):
        frames = frames.astype(real)
    shape = frames.shape[-2:]
    # The centred frames are this thread's scratch: made fresh, a block of them cost
    # more in page faults than its mean and window together.
    centred = scratch("centred frames", frames.shape, real)
    flat = frames.reshape(-1, *shape)
    base = _window(shape, real, window)
    window = base if scale == 1 else base * real(1 / scale)
    centre_and_window(flat, window, centred.reshape(-1, *shape))
    whole = _fft.rfft(centred, axis=-1)
    half = whole[..., : None if kx_max is None else kx_max + 1]
    spectra = _fft.fft(half, axis=-2).astype(dtype, copy=False)
    if row_weights is None and not checkerboard:
        return spectra
    # Every part's transform along x, then one transform along y for all of them.
    n_weights = 0 if row_weights is None else len(row_weights)
    rows = np.empty((*half.shape[:-2], int(checkerboard) + n_weights, *half.shape[-2:]), half.dtype)
    if checkerboard:
        _alternated(whole, centred, rows[..., 0, :, :], real)
    if row_weights is not None:
        weights = np.asarray(row_weights, dtype=real)[:, :, None]
        np.multiply(half[..., None, :, :], weights, out=rows[..., int(checkerboard) :, :, :])
    parts = _fft.fft(rows, axis=-2)
    if checkerboard:
        # The even pixels are (1 + (-1)^(y + x)) / 2 of the frame.
        parts[..., 0, :, :] += spectra
        parts[..., 0, :, :] *= 0.5
    return spectra, parts.astype(dtype, copy=False)


def _alternated(whole: np.ndarray, centred: np.ndarray, out: np.ndarray, real: type) -> None:
    """The transform along x of ``centred * (-1)^(y + x)``, first columns, into ``out``.

    ``whole`` is the transform of ``centred`` along x (see :func:`frame_spectra`).
    """
    ny, nx = centred.shape[-2:]
    columns = out.shape[-1]
    if nx % 2 == 0:
        # Column kx of the frame times (-1)^x is column kx - nx/2 of the frame's, which
        # for a real frame is the conjugate of column nx/2 - kx; (-1)^y in the same
        # pass (numpy's reversed conjugate and strided negation took 8x as long).
        for lead in np.ndindex(out.shape[:-3]):
            _conjugate_alternated(whole[lead].view(real), out[lead].view(real))
        return
    alternate = np.where(np.arange(nx) % 2 == 0, 1, -1).astype(real)
    out[...] = _fft.rfft(centred * alternate, axis=-1)[..., :columns]
    out[..., 1::2, :] *= -1


@numba.njit(cache=True, nogil=True)
def _conjugate_alternated(whole, out):  # pragma: no cover - compiled
    """``out[f, y, k] = (-1)^y conj(whole[f, y, nx/2 - k])`` for frames of even width.

    Both complex arrays viewed as reals (re, im interleaved along the last axis).
    """
    half = whole.shape[2] // 2 - 1
    for f in range(out.shape[0]):
        for y in range(out.shape[1]):
            source, target = whole[f, y], out[f, y]
            sign = 1 if y % 2 == 0 else -1
            for k in range(out.shape[2] // 2):
                target[2 * k] = sign * source[2 * (half - k)]
                target[2 * k + 1] = -sign * source[2 * (half - k) + 1]


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def centre_and_window(frames, window, out):  # pragma: no cover - compiled
    """``out = (frame - mean) * window`` per frame, the mean summed in float64.

    Two passes over each frame instead of numpy's five over the block (conversion,
    mean, subtraction, window): a float64 block is read once from memory, and its
    conversion no longer needs a copy (a quarter of the spectra's time at 512^2).
    """
    ny, nx = window.shape
    for f in range(frames.shape[0]):
        total = 0.0
        for y in range(ny):
            for x in range(nx):
                total += frames[f, y, x]
        mean = total / (ny * nx)
        for y in range(ny):
            for x in range(nx):
                out[f, y, x] = (frames[f, y, x] - mean) * window[y, x]


def half_plane_mask(mask: np.ndarray) -> np.ndarray:
    """Half-plane (``rfft2`` layout) version of a full FFT-order mask.

    The mask is first made Hermitian, ``(M(k) + conj(M(-k))) / 2``, which is what taking
    the real part of the full inverse transform does to it; real radially symmetric
    masks are unchanged.

    Parameters
    ----------
    mask : ndarray, shape (ny, nx)
        Mask in FFT order (DC at ``[0, 0]``), real or complex.

    Returns
    -------
    ndarray, shape (ny, nx // 2 + 1)
        Real if ``mask`` is.
    """
    flipped = np.roll(mask[::-1, ::-1], shift=(1, 1), axis=(0, 1))
    hermitian = 0.5 * (mask + np.conj(flipped))
    if np.isrealobj(mask):
        hermitian = hermitian.real
    return hermitian[:, : mask.shape[1] // 2 + 1]


def correlation_spectra(
    spec_i: np.ndarray,
    spec_j: np.ndarray,
    mask_half: np.ndarray,
    kind: CorrelationKind = "cc",
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Masked correlation spectra of pairs of frames.

    Parameters
    ----------
    spec_i, spec_j : ndarray, shape (P, ky, kx)
        Half-plane spectra of the first and second frame of each pair.
    mask_half : ndarray, shape (ky, kx)
        Half-plane mask from :func:`half_plane_mask` (or a crop of it).
    kind : {"cc", "mc", "pc", "phase"}
        ``cc``: ``F_j conj(F_i)`` (cross-correlation). ``mc``: divided by
        ``sqrt(|F_j conj(F_i)|)`` (mutual correlation). ``pc``: divided by ``|F_j|**2``
        (the reference's "phase correlation"). ``phase``: divided by ``|F_j conj(F_i)|``
        (the textbook normalised phase correlation).
    out : ndarray, shape (P, ky, kx), optional
        Where to write the result.

    Returns
    -------
    ndarray, shape (P, ky, kx)

    Notes
    -----
    ``cc`` is the robust choice for noisy lattices. ``phase`` whitens the spectrum:
    sharp peaks on clean data, but at low dose noise dominates and it fails (the
    reference's ``pc`` fails on lattices too). ``mc`` sits between the two.
    """
    # In place: the products of a batch of pairs are the largest arrays of the band path.
    product = np.conj(spec_i, out=out)
    product *= spec_j
    if kind == "mc":
        product = _safe_divide(product, np.sqrt(np.abs(product)))
    elif kind == "pc":
        product = _safe_divide(product, np.abs(spec_j) ** 2)
    elif kind == "phase":
        product = _safe_divide(product, np.abs(product))
    elif kind != "cc":
        raise ValueError(f"unknown correlation kind {kind!r}; expected one of {CORRELATION_KINDS}")
    product *= mask_half
    if out is not None and product is not out:
        out[...] = product
        return out
    return product


def pair_spectra(
    spectra_a: np.ndarray,
    spectra_b: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    mask_half: np.ndarray,
    kind: CorrelationKind = "cc",
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`correlation_spectra` of ``spectra_a[i]`` and ``spectra_b[j]``, pair by pair.

    The pairs' spectra are never gathered: for ``cc`` one compiled pass reads both
    spectra and the mask and writes the product (gathering them, then multiplying in
    place, took four passes over a batch's largest arrays); other kinds gather a few
    pairs at a time.

    Parameters
    ----------
    spectra_a, spectra_b : ndarray, shape (F, ky, kx)
        Half-plane spectra (or their band) of two blocks of frames.
    i, j : ndarray of int, shape (P,)
        Frame of ``spectra_a`` and of ``spectra_b`` in each pair.
    mask_half, kind, out : see :func:`correlation_spectra`

    Returns
    -------
    ndarray, shape (P, ky, kx)
    """
    if out is None:
        out = np.empty((len(i), *spectra_a.shape[1:]), np.result_type(spectra_a, spectra_b))
    real = out.real.dtype
    if (
        kind == "cc"
        and spectra_a.dtype == spectra_b.dtype == out.dtype
        and np.isrealobj(mask_half)
        and out.flags.c_contiguous
    ):
        # Copies only where the caller's spectra are not contiguous already.
        _cross_products(
            np.ascontiguousarray(spectra_a).view(real),
            np.ascontiguousarray(spectra_b).view(real),
            np.asarray(i),
            np.asarray(j),
            np.ascontiguousarray(mask_half, dtype=real),
            out.view(real),
        )
        return out
    for start in range(0, len(i), _GATHERED_PAIRS):
        pairs = slice(start, start + _GATHERED_PAIRS)
        correlation_spectra(
            spectra_a[i[pairs]], spectra_b[j[pairs]], mask_half, kind, out=out[pairs]
        )
    return out


@numba.njit(cache=True, nogil=True)
def _cross_products(spectra_a, spectra_b, i, j, mask, out):  # pragma: no cover - compiled
    """``out[p] = conj(spectra_a[i[p]]) * spectra_b[j[p]] * mask`` for a real mask.

    The complex arrays are viewed as reals (re, im interleaved along x).
    """
    for p in range(len(i)):
        a, b, o = spectra_a[i[p]], spectra_b[j[p]], out[p]
        for y in range(o.shape[0]):
            for x in range(mask.shape[1]):
                ar, ai = a[y, 2 * x], a[y, 2 * x + 1]
                br, bi = b[y, 2 * x], b[y, 2 * x + 1]
                o[y, 2 * x] = (ar * br + ai * bi) * mask[y, x]
                o[y, 2 * x + 1] = (ar * bi - ai * br) * mask[y, x]


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    safe = denominator > _TINY
    return np.where(safe, numerator / np.where(safe, denominator, 1), 0)


def correlation_maps(
    spec_i: np.ndarray,
    spec_j: np.ndarray,
    mask_half: np.ndarray,
    shape: tuple[int, int],
    kind: CorrelationKind = "cc",
) -> np.ndarray:
    """Full-resolution real correlation maps of pairs of frames.

    Parameters
    ----------
    spec_i, spec_j : ndarray, shape (P, ny, nx // 2 + 1)
        Half-plane spectra (:func:`frame_spectra`).
    mask_half : ndarray, shape (ny, nx // 2 + 1)
        Half-plane mask (:func:`half_plane_mask`).
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    kind : {"cc", "mc", "pc", "phase"}
        See :func:`correlation_spectra`.

    Returns
    -------
    ndarray of float, shape (P, ny, nx)
        Correlation of each pair; its maximum lies at ``r_ij = s_j - s_i`` (modulo the
        frame size).
    """
    product = correlation_spectra(spec_i, spec_j, mask_half, kind)
    return scipy.fft.irfft2(product, s=shape)


def masked_energy(spectra: np.ndarray, mask_half: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Zero-shift autocorrelation ``(1/N) sum_k M(k) |F(k)|^2`` of each frame, full plane.

    Dividing a cross-correlation peak by ``sqrt(E_i E_j)`` gives a correlation
    coefficient (1 for identical frames), comparable across pairs.

    Parameters
    ----------
    spectra : ndarray, shape (F, ny, nx // 2 + 1)
    mask_half : ndarray, shape (ny, nx // 2 + 1)
    shape : tuple of int
        Frame shape ``(ny, nx)``.

    Returns
    -------
    ndarray of float64, shape (F,)
    """
    nx = shape[1]
    # Columns other than DC and (for even nx) Nyquist stand for two conjugate columns.
    weight = np.full(mask_half.shape[-1], 2.0)
    weight[0] = 1.0
    if nx % 2 == 0:
        weight[-1] = 1.0
    power = np.abs(spectra.astype(np.complex128)) ** 2 * (mask_half.real * weight)
    return power.sum(axis=(-2, -1)) / (shape[0] * shape[1])
