"""Band-limited correlation: coarse maps for candidates, exact full-resolution windows.

Most masks are zero beyond a cutoff (``bandpass``, ``hann``, ``hamming``, ... at
``|k| < size / (2n)``; ``gaussian`` once truncated at 1e-6), so the masked correlation
spectrum lives in a small band of ``2 ky_max + 1`` rows and ``kx_max + 1`` columns of
the half plane. Then:

1. the spectra are cropped to the band once per frame (about ``n^2`` times less data);
2. each pair's product is inverse-transformed along y only, for the band's columns
   (:meth:`BandGeometry.columns`, about ``n`` times cheaper than the full transform):
   this gives every full-resolution row, still as x-frequencies;
3. every ``COARSE_SPACING``-th row is inverse-transformed along x on a grid of at least
   one sample every ``COARSE_SPACING`` pixels (:meth:`BandGeometry.coarse_maps`): the
   correlation on a coarse grid, enough to find and rank candidate maxima;
4. around each candidate the full-resolution correlation is evaluated exactly by a
   small DFT along x of the rows it needs (:meth:`BandGeometry.windows`, compiled;
   Guizar-Sicairos et al., Opt. Lett. 33, 156 (2008)) — the same numbers the full-size
   inverse transform gives, up to round-off.

For sub-pixel maxima the correlation is also evaluated on fine grids at any fractional
position straight from the band product (:func:`_grid_dft`, two small matrix products,
the upsampled DFT of Guizar-Sicairos et al.); :func:`half_plane_frequencies` describes a
full half plane the same way, so full-size maps share that kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numba
import numpy as np
import scipy.fft

from daskreg.kernels._fft import ifft_into, irfft_into
from daskreg.kernels._scratch import scratch

__all__ = ["BandGeometry", "band_geometry", "half_plane_frequencies", "COARSE_SPACING"]

# The band path pays off only when the band is this much smaller than the half plane.
_MIN_SAVING = 4.0
# Largest distance (pixels) between coarse samples: near the Nyquist rate a lattice's
# peaks are too thinly sampled to rank them by interpolation.
COARSE_SPACING = 2


@dataclass(frozen=True)
class BandGeometry:
    """Where a band of frequencies sits in the full and in the coarse transforms.

    Attributes
    ----------
    shape : (ny, nx)
        Full frame shape.
    ky_max, kx_max : int
        Largest ``|ky|`` and ``kx`` kept (cycles per frame).
    coarse : (my, mx)
        Coarse grid: ``my = ny / row_step`` rows, ``mx`` columns.
    """

    shape: tuple[int, int]
    ky_max: int
    kx_max: int
    coarse: tuple[int, int]

    @property
    def row_step(self) -> int:
        """Full-resolution rows between coarse rows (coarse rows are exact rows)."""
        return self.shape[0] // self.coarse[0]

    @cached_property
    def rows(self) -> np.ndarray:
        """Rows of the full half-plane spectrum in the band, FFT order (0..K, -K..-1)."""
        ny = self.shape[0]
        k = self.ky_max
        return np.concatenate([np.arange(k + 1), np.arange(ny - k, ny)])

    @cached_property
    def row_frequencies(self) -> np.ndarray:
        """Signed ``ky`` (cycles per frame) of each band row, int64."""
        k = self.ky_max
        return np.concatenate([np.arange(k + 1), np.arange(-k, 0)]).astype(np.int64)

    @cached_property
    def column_weight(self) -> np.ndarray:
        """2 for columns standing for a conjugate pair, 1 for DC (and Nyquist)."""
        weight = np.full(self.kx_max + 1, 2.0)
        weight[0] = 1.0
        if self.shape[1] % 2 == 0 and self.kx_max == self.shape[1] // 2:
            weight[-1] = 1.0
        return weight

    @property
    def spacing(self) -> tuple[float, float]:
        """Full-resolution pixels between coarse samples, per axis."""
        return (self.shape[0] / self.coarse[0], self.shape[1] / self.coarse[1])

    @property
    def pair_columns_size(self) -> int:
        """Elements of one pair's :meth:`columns`."""
        return self.shape[0] * (self.coarse[1] // 2 + 1)

    def crop(self, half_plane: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The band of a half-plane array, contiguous (written into ``out`` if given).

        The array is ``(..., ny, nx // 2 + 1)``, or only its first ``kx_max + 1`` columns;
        the band is its rows :attr:`rows`. Two slices copied (a fancy index of the rows
        and a contiguous copy of its result took three times as long).
        """
        k, ny, columns = self.ky_max, self.shape[0], self.kx_max + 1
        if out is None:
            out = np.empty((*half_plane.shape[:-2], 2 * k + 1, columns), half_plane.dtype)
        out[..., : k + 1, :] = half_plane[..., : k + 1, :columns]
        out[..., k + 1 :, :] = half_plane[..., ny - k :, :columns]
        return out

    def columns(self, product: np.ndarray) -> np.ndarray:
        """Inverse transform along y of a band product: every row, x still as frequency.

        Parameters
        ----------
        product : ndarray, shape (P, 2 ky_max + 1, kx_max + 1)
            Masked correlation spectra on the band.

        Returns
        -------
        ndarray, shape (P, ny, mx // 2 + 1)
            ``G(y, kx) = (1/ny) sum_ky P(ky, kx) exp(2 pi i ky y / ny)`` for ``kx <=
            kx_max``, zero beyond: already the zero-padded input of
            :meth:`coarse_maps`. This thread's scratch array, valid until its next call.
        """
        ny = self.shape[0]
        k = self.ky_max
        full = scratch(("band rows", self), (product.shape[0], ny, product.shape[2]), product.dtype)
        full[:, : k + 1] = product[:, : k + 1]
        full[:, ny - k :] = product[:, k + 1 :]
        padded = scratch(("columns", self), (len(full), ny, self.coarse[1] // 2 + 1), full.dtype)
        ifft_into(full, 1, padded[..., : self.kx_max + 1])
        return padded

    def coarse_maps(self, columns: np.ndarray) -> np.ndarray:
        """Correlation on the coarse grid.

        It is ``nx / mx`` times the full-size path's scale (the candidates are ranked,
        never compared with exact values).

        Parameters
        ----------
        columns : ndarray, shape (P, ny, mx // 2 + 1)
            :meth:`columns` of the pairs.

        Returns
        -------
        ndarray, shape (P, my, mx)
            ``c(p * row_step, q * nx / mx) * nx / mx``. This thread's scratch array,
            valid until its next call.
        """
        my, mx = self.coarse
        real = _real(columns)
        out = scratch("coarse maps", (len(columns), my, mx), real)
        return irfft_into(columns[:, :: self.row_step], mx, 2, out)

    def windows(self, columns: np.ndarray, centres: np.ndarray, radius: int) -> np.ndarray:
        """Exact full-resolution correlation in square windows around integer centres.

        Parameters
        ----------
        columns : ndarray, shape (P, ny, mx // 2 + 1)
            :meth:`columns` of the pairs.
        centres : ndarray of int, shape (P, K, 2)
            Window centres ``(y, x)`` in full-resolution pixels (any integers: periodic).
        radius : int

        Returns
        -------
        ndarray of float, shape (P, K, 2 radius + 1, 2 radius + 1)
        """
        real = _real(columns)
        out = np.empty((*centres.shape[:2], 2 * radius + 1, 2 * radius + 1), real)
        basis = self.offset_basis(radius, real)
        cos, sin = self.phases(real)
        _window_dft(columns.view(real), _int64(centres), cos, sin, basis, real(0), out)
        return out

    def brightest_near(
        self, columns: np.ndarray, centres: np.ndarray, reach: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The brightest full-resolution pixel within ``reach`` of each centre, exactly.

        Parameters
        ----------
        columns : ndarray, shape (P, ny, mx // 2 + 1)
            :meth:`columns` of the pairs.
        centres : ndarray of int, shape (P, K, 2)
            ``(y, x)`` in full-resolution pixels (any integers: periodic).
        reach : int
            Pixels searched along each axis on either side of a centre.

        Returns
        -------
        positions : ndarray of int64, shape (P, K, 2)
            Of the brightest pixel in each ``(2 reach + 1)^2`` window, wrapped into the
            frame (the first in row-major order on ties).
        values : ndarray, shape (P, K)
            The correlation there (as :meth:`windows` gives it).
        """
        real = _real(columns)
        positions = np.empty((*centres.shape[:2], 2), np.int64)
        values = np.empty(centres.shape[:2], real)
        basis = self.offset_basis(reach, real)
        cos, sin = self.phases(real)
        _window_argmax(
            columns.view(real), _int64(centres), cos, sin, basis, real(0), positions, values
        )
        return positions, values

    def phases(self, dtype: type) -> tuple[np.ndarray, np.ndarray]:
        """``cos`` and ``sin`` of ``2 pi m / nx``, ``m = 0 .. nx - 1``, for the window kernels."""
        return _phases(self.shape[1], dtype)

    @lru_cache(maxsize=8)  # noqa: B019 - a handful of radii per geometry, kept with it
    def offset_basis(self, radius: int, dtype: type) -> np.ndarray:
        """The window kernel of the offsets ``o = -radius .. radius``.

        Rows ``(cos, -sin)`` of ``2 pi kx o / nx`` interleaved per ``kx``, times the
        column weight and ``1 / nx``.
        """
        nx = self.shape[1]
        kx = np.arange(self.kx_max + 1)
        angle = 2 * np.pi * ((np.arange(-radius, radius + 1)[:, None] * kx) % nx) / nx
        basis = np.empty((len(angle), 2 * len(kx)))
        basis[:, 0::2] = np.cos(angle)
        basis[:, 1::2] = -np.sin(angle)
        return (basis * np.repeat(self.column_weight, 2) / nx).astype(dtype)


def half_plane_frequencies(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Signed row frequencies and column weights of a full ``rfft2`` half plane.

    The counterpart of :attr:`BandGeometry.row_frequencies` and
    :attr:`BandGeometry.column_weight` for spectra that were not cropped to a band.

    Returns
    -------
    ky : ndarray of int64, shape (ny,)
        FFT order; for even ``ny`` the Nyquist row counts as ``-ny / 2``.
    weight : ndarray of float64, shape (nx // 2 + 1,)
        2 for columns standing for a conjugate pair, 1 for DC and (even ``nx``) Nyquist.
    """
    ny, nx = shape
    ky = np.fft.fftfreq(ny, 1 / ny).round().astype(np.int64)
    weight = np.full(nx // 2 + 1, 2.0)
    weight[0] = 1.0
    if nx % 2 == 0:
        weight[-1] = 1.0
    return ky, weight


def _int64(centres: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(centres, dtype=np.int64)


def _real(spectra: np.ndarray) -> type:
    """The real dtype of complex ``spectra`` (float32 for complex64)."""
    return np.float32 if spectra.dtype == np.complex64 else np.float64


@lru_cache(maxsize=8)
def _phases(n: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """``cos`` and ``sin`` of ``2 pi m / n`` for ``m = 0 .. n-1``."""
    angle = 2 * np.pi * np.arange(n) / n
    return np.cos(angle).astype(dtype), np.sin(angle).astype(dtype)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _window_into(columns, p, cy, cx, cos, sin, basis, zero, phase, row, out):  # pragma: no cover
    """``out[w, o] = Re sum_kx G_p(cy + w - r, kx) weight(kx) exp(2 pi i kx (cx + o - r) / nx)``.

    ``exp(2 pi i kx (c + o) / nx)`` splits into the centre's phase, applied to each
    row the window needs, and the offset's, the same ``basis`` for every window.
    ``columns`` is the complex ``G`` viewed as reals (re, im interleaved), so a value
    is one dot product of contiguous reals: the real part is all a window needs.
    ``phase`` and ``row`` are work arrays of the basis' width.
    """
    ny, nx = columns.shape[1], cos.shape[0]
    size, width = basis.shape
    radius = size // 2
    # kx * centre mod nx by additions: no division per column.
    step = cx % nx
    m = 0
    for q in range(width // 2):
        phase[2 * q] = cos[m]
        phase[2 * q + 1] = sin[m]
        m += step
        if m >= nx:
            m -= nx
    for w in range(size):
        y = (cy + w - radius) % ny
        for q in range(width // 2):
            re, im = columns[p, y, 2 * q], columns[p, y, 2 * q + 1]
            row[2 * q] = re * phase[2 * q] - im * phase[2 * q + 1]
            row[2 * q + 1] = re * phase[2 * q + 1] + im * phase[2 * q]
        for o in range(size):
            total = zero
            for t in range(width):
                total += row[t] * basis[o, t]
            out[w, o] = total


@numba.njit(cache=True, nogil=True)
def _window_dft(columns, centres, cos, sin, basis, zero, out):  # pragma: no cover - compiled
    """Every window: ``out[p, k]`` around ``centres[p, k]`` (see :func:`_window_into`)."""
    phase = np.empty(basis.shape[1], dtype=columns.dtype)
    row = np.empty(basis.shape[1], dtype=columns.dtype)
    for p in range(centres.shape[0]):
        for k in range(centres.shape[1]):
            cy, cx = centres[p, k, 0], centres[p, k, 1]
            _window_into(columns, p, cy, cx, cos, sin, basis, zero, phase, row, out[p, k])


@numba.njit(cache=True, nogil=True)
def _window_argmax(columns, centres, cos, sin, basis, zero, positions, values):  # pragma: no cover
    """The brightest pixel of each window (first in row-major order on ties) and its value."""
    ny, nx = columns.shape[1], cos.shape[0]
    size = basis.shape[0]
    radius = size // 2
    phase = np.empty(basis.shape[1], dtype=columns.dtype)
    row = np.empty(basis.shape[1], dtype=columns.dtype)
    window = np.empty((size, size), dtype=columns.dtype)
    for p in range(centres.shape[0]):
        for k in range(centres.shape[1]):
            cy, cx = centres[p, k, 0], centres[p, k, 1]
            _window_into(columns, p, cy, cx, cos, sin, basis, zero, phase, row, window)
            best_w, best_o = 0, 0
            for w in range(size):
                for o in range(size):
                    if window[w, o] > window[best_w, best_o]:
                        best_w, best_o = w, o
            positions[p, k, 0] = (cy + best_w - radius) % ny
            positions[p, k, 1] = (cx + best_o - radius) % nx
            values[p, k] = window[best_w, best_o]


@numba.njit(cache=True, nogil=True)
def _grid_dft(spectrum, ky, weight, fine, ys, xs, out):  # pragma: no cover - compiled
    """The correlation of one pair on square grids of fine positions, from its spectrum.

    ``out[g, i, j] = Re sum_ky sum_kx weight(kx) P(ky, kx) exp(2 pi i (ky y / ny + kx x
    / nx))`` at ``y = ys[g, i] / u``, ``x = xs[g, j] / u`` pixels, where ``fine = (ny u,
    nx u)`` and ``ys``, ``xs`` (grids, points) are integers in ``[0, fine)``; ``weight``
    holds the column weights over ``ny nx``, so on whole pixels these are the full-size
    maps' values.

    Matrix products, Guizar-Sicairos et al.'s upsampled DFT, on ``spectrum`` (rows,
    2 columns), the complex ``P`` viewed as reals (re, im interleaved), with ``ky`` the
    signed frequency of each row: ``[cos; sin](ky y) @ P`` for the rows of every grid
    at once (one BLAS call: its cost is nearly all of the work) gives ``cos`` and ``sin``
    times the real and imaginary parts of every column, and a small product per grid
    with its column phases (interleaved the same way) combines them into the real part.
    Four times faster than compiled loops at 512^2. The phases come from one sine and
    cosine per grid line, raised to each frequency by recurrence in float64.
    """
    n_rows, n_cols = spectrum.shape[0], spectrum.shape[1] // 2
    n_grids, n_y = ys.shape
    n_x = xs.shape[1]
    phases_y = np.empty((2 * n_grids * n_y, n_rows), spectrum.dtype)
    phases_x = np.empty((2, 2 * n_cols, n_x), spectrum.dtype)
    k_max = 0
    for r in range(n_rows):
        k_max = max(k_max, abs(ky[r]))
    power_c = np.empty(max(k_max, n_cols - 1) + 1)
    power_s = np.empty(max(k_max, n_cols - 1) + 1)
    for g in range(n_grids):
        for i in range(n_y):
            _powers(2 * np.pi * ys[g, i] / fine[0], k_max, power_c, power_s)
            cos_row, sin_row = 2 * g * n_y + i, (2 * g + 1) * n_y + i
            for r in range(n_rows):
                k = ky[r]
                phases_y[cos_row, r] = power_c[abs(k)]
                phases_y[sin_row, r] = power_s[k] if k >= 0 else -power_s[-k]
    rows = np.dot(phases_y, spectrum)
    for g in range(n_grids):
        for j in range(n_x):
            _powers(2 * np.pi * xs[g, j] / fine[1], n_cols - 1, power_c, power_s)
            for q in range(n_cols):
                c, s = power_c[q] * weight[q], power_s[q] * weight[q]
                # Re((a + ib)(c + is)) = a c - b s, for the cos(ky y) rows; for the
                # sin(ky y) rows, which stand for i sin(ky y), it is -(a s + b c).
                phases_x[0, 2 * q, j] = c
                phases_x[0, 2 * q + 1, j] = -s
                phases_x[1, 2 * q, j] = -s
                phases_x[1, 2 * q + 1, j] = -c
        start = 2 * g * n_y
        out[g] = np.dot(rows[start : start + n_y], phases_x[0]) + np.dot(
            rows[start + n_y : start + 2 * n_y], phases_x[1]
        )


@numba.njit(cache=True, nogil=True, inline="always")
def _powers(angle, k_max, cos_out, sin_out):  # pragma: no cover - compiled
    """``cos`` and ``sin`` of ``k angle`` for ``k = 0 .. k_max``, by complex recurrence.

    In float64 a few hundred products lose a few 1e-14.
    """
    c1, s1 = np.cos(angle), np.sin(angle)
    c, s = 1.0, 0.0
    for k in range(k_max + 1):
        cos_out[k] = c
        sin_out[k] = s
        c, s = c * c1 - s * s1, c * s1 + s * c1


def band_geometry(mask_half: np.ndarray, shape: tuple[int, int]) -> BandGeometry | None:
    """The band of a half-plane mask, or None when cropping would not pay off.

    Parameters
    ----------
    mask_half : ndarray, shape (ny, nx // 2 + 1)
        Hermitian half-plane mask (:func:`daskreg.kernels.correlate.half_plane_mask`).
    shape : (ny, nx)
        Full frame shape.

    Returns
    -------
    BandGeometry or None
    """
    ny, nx = shape
    nonzero = mask_half != 0
    if not nonzero.any():
        return None
    ky = np.abs(np.fft.fftfreq(ny, 1 / ny)).astype(int)
    ky_max = int(ky[nonzero.any(axis=1)].max())
    kx_max = int(np.flatnonzero(nonzero.any(axis=0)).max())
    # Coarse rows are exact rows, so their step must divide ny.
    row_step = COARSE_SPACING if ny % COARSE_SPACING == 0 else 1
    mx = scipy.fft.next_fast_len(max(2 * kx_max + 1, -(-nx // COARSE_SPACING)), real=True)
    if mx >= nx:
        return None
    band_size = (2 * ky_max + 1) * (kx_max + 1)
    if band_size * _MIN_SAVING > ny * (nx // 2 + 1):
        return None
    return BandGeometry((ny, nx), ky_max, kx_max, (ny // row_step, mx))
