"""The crystal lattice of a series, read from its mean power spectrum.

At low dose a single pair's correlation can peak one lattice translation away from the
true shift (a "unit-cell hop"): the Bragg reflections, which carry most of the signal,
are identical under every lattice translation, and only the non-periodic content
(vacancies, edges, defects) tells the cells apart. This module finds the lattice so that
the method layer can (1) recognise a pair residual that is close to a lattice
translation and correct it, (2) place the Fourier mask just beyond the primary
reflections, and (3) keep the sub-pixel fit window inside one cell.

Conventions: vectors are ``(y, x)`` in array order. Reciprocal vectors ``g`` are in
cycles per pixel, reflections in cycles per frame along each axis (``ky = gy * ny``,
``kx = gx * nx``, the integer FFT indices of :func:`daskreg.kernels.masks.fourier_grids`),
and real-space translations ``a`` in pixels, with ``a_i . g_j = delta_ij``. A spectrum is
Hermitian, so of each pair of reflections ``+-k`` only the one with ``kx > 0`` (or
``kx = 0``, ``ky > 0``) is listed.

Everything here is plain numpy and scipy (no dask); the method layer samples the frames.
The basis geometry is in :mod:`daskreg.kernels.lattice_basis`, the mask and fit window
chosen from a lattice in :mod:`daskreg.kernels.lattice_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numba
import numpy as np
import scipy.special

from daskreg.kernels._fft import rfft2_into
from daskreg.kernels.correlate import centre_and_window, hann_window
from daskreg.kernels.lattice_basis import fit_basis, indexed, reciprocal_basis, reduce_basis

__all__ = ["Lattice", "power_spectrum", "find_lattice", "nearest_translation"]

# Below this radius (cycles per frame) the power is the window's own leakage around DC
# and the frame's large-scale contrast, not a lattice; a lattice must repeat at least
# this many times across the frame to be found.
_MIN_CYCLES = 4.0
# A reflection is a local maximum over this box (power-spectrum pixels): the Hann
# window spreads a Bragg peak over +-1 pixel, so 5 x 5 keeps one maximum per peak.
_PEAK_BOX = 5
# Probability that a noise pixel anywhere in the spectrum passes the significance test
# (Bonferroni over the pixels searched).
_FALSE_ALARM = 1e-3
# Percentile of the power/background ratios that sets the noise law's shape: high
# enough to see static speckle (a mixture with the frame noise shows in the tail),
# low enough that the reflections of a rich lattice (up to ~2 % of the pixels) do not
# set it.
_TAIL = 0.99
# A reflection must also stand this far above its background whatever the statistics
# say: the gamma model of the background is an approximation.
_MIN_RATIO = 4.0
# The basis is built from reflections this many times above the significance level and
# at least this fraction of the strongest one (static speckle scales with the dose like
# the reflections do, and reaches several times its background).
_CONFIDENT = 2.0
_RELATIVE = 1e-2


@dataclass(frozen=True)
class Lattice:
    """A 2-D (or 1-D, fringes) lattice found in a series' power spectrum.

    Attributes
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)`` the spectrum was computed for.
    reflections : ndarray, shape (K, 2)
        Sub-pixel positions ``(ky, kx)`` in cycles per frame of the significant Bragg
        reflections, one of each ``+-k`` pair, sorted by radius.
    strengths : ndarray, shape (K,)
        Power of each reflection over its background (a ratio, 1 = background).
    g1 : ndarray, shape (2,)
        First reciprocal basis vector, cycles per pixel ``(gy, gx)``.
    g2 : ndarray or None
        Second reciprocal basis vector; None for 1-D fringes.
    a1 : ndarray, shape (2,)
        Shortest lattice translation, pixels ``(y, x)``; for fringes, the fringe period
        normal to the fringes.
    a2 : ndarray or None
        Second translation of a reduced basis (``|a1| <= |a2|``, angle in
        ``[60, 120]`` degrees); None for fringes.
    spacing_min : float
        ``|a1|``, pixels.
    """

    shape: tuple[int, int]
    reflections: np.ndarray
    strengths: np.ndarray
    g1: np.ndarray
    g2: np.ndarray | None
    a1: np.ndarray
    a2: np.ndarray | None
    spacing_min: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacing_min", float(np.hypot(*self.a1)))

    @property
    def basis(self) -> np.ndarray:
        """Real-space basis as rows, shape ``(2, 2)`` (or ``(1, 2)`` for fringes), pixels."""
        return np.array([self.a1] if self.a2 is None else [self.a1, self.a2])

    @property
    def reciprocal_basis(self) -> np.ndarray:
        """Reciprocal basis as rows, cycles per pixel, dual to :attr:`basis`."""
        return np.array([self.g1] if self.g2 is None else [self.g1, self.g2])

    def nearest_translation(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest lattice translation to each vector, and the distance to it.

        Parameters
        ----------
        v : array_like, shape (P, 2) or (2,)
            Vectors ``(y, x)`` in pixels, e.g. pair residuals
            ``r_ij - (s_j - s_i)``.

        Returns
        -------
        translation : ndarray, shape like ``v``
            ``m1 a1 + m2 a2`` with integers ``m`` (zero when zero is the nearest);
            for fringes ``m1 a1``.
        distance : ndarray, shape (P,) or ()
            ``|v - translation|``, pixels.

        Notes
        -----
        The basis is Lagrange-Gauss reduced, so the closest lattice point is among
        the 3 x 3 integer neighbours of the rounded fractional coordinates. For
        fringes a shift along the fringes maps them onto themselves as well, but the
        correlation does not hop along them, so only ``m1 a1`` is offered and the
        distance includes the component along the fringes.

        Examples
        --------
        >>> lat = Lattice((64, 64), np.zeros((0, 2)), np.zeros(0),
        ...               np.array([0, 0.1]), np.array([0.1, 0]),
        ...               np.array([0.0, 10.0]), np.array([10.0, 0.0]))
        >>> t, d = lat.nearest_translation(np.array([[-9.6, 10.3]]))
        >>> t.tolist(), round(float(d[0]), 2)
        ([[-10.0, 10.0]], 0.5)
        """
        v = np.asarray(v, dtype=np.float64)
        translation, distance = nearest_translation(v.reshape(-1, 2), self.basis)
        return translation.reshape(v.shape), distance.reshape(v.shape[:-1])


def nearest_translation(vectors: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lattice translation ``m1 a1 + m2 a2`` (integers ``m``) nearest each vector.

    Parameters
    ----------
    vectors : ndarray, shape (P, 2)
        ``(y, x)`` vectors in pixels.
    basis : ndarray, shape (B, 2)
        Lattice translations ``a1`` (and ``a2``) as rows, ``(y, x)`` in pixels; with one
        row the lattice is one-dimensional (fringes).

    Returns
    -------
    translation : ndarray, shape (P, 2)
    distance : ndarray, shape (P,)
        ``|vector - translation|``.
    """
    vectors = np.asarray(vectors, dtype=np.float64).reshape(-1, 2)
    basis = np.asarray(basis, dtype=np.float64).reshape(-1, 2)
    coords = np.linalg.lstsq(basis.T, vectors.T, rcond=None)[0].T  # (P, B)
    base = np.floor(coords)
    # The nearest lattice point is among the corners of the cell holding the vector,
    # and their neighbours for an oblique basis.
    steps = np.array(np.meshgrid(*([np.arange(-1, 3)] * basis.shape[0]), indexing="ij"))
    steps = steps.reshape(basis.shape[0], -1).T  # (S, B)
    candidates = (base[:, None, :] + steps[None]) @ basis  # (P, S, 2)
    distance = np.linalg.norm(vectors[:, None, :] - candidates, axis=-1)
    best = distance.argmin(axis=1)
    rows = np.arange(len(vectors))
    # + 0.0: no negative zeros in the output.
    return candidates[rows, best] + 0.0, distance[rows, best]


def power_spectrum(
    frames: np.ndarray, *, scale: float = 1.0, index: np.ndarray | None = None
) -> np.ndarray:
    """Mean power spectrum of Hann-windowed, mean-subtracted frames.

    Parameters
    ----------
    frames : ndarray, shape (F, ny, nx) or (ny, nx)
        A sample of the series' frames (e.g. up to 16 spread over it); any real
        dtype (float32, float64, unsigned or signed integers). Frames with NaN or
        infinite pixels are left out.
    scale : float, default 1
        Divide the frames by it first (the series' scale,
        :func:`daskreg.kernels.detector.series_scale`): the single-precision transform
        and its squares then neither overflow nor underflow.
    index : sequence of int, optional
        Only these frames of ``frames`` (default all), read where they are.

    Returns
    -------
    ndarray of float64, shape (ny, nx // 2 + 1)
        ``mean_f |rfft2(w * (frame_f - mean(frame_f)) / scale)|**2`` over the finite
        frames, in the half-plane layout of :func:`numpy.fft.rfft2` (DC at ``[0, 0]``),
        ``w`` the separable Hann window the correlations use
        (:func:`daskreg.kernels.correlate.hann_window`); zeros when no frame is finite.
        A frame without contrast adds zeros (which :func:`find_lattice`, judging power
        against its median, does not see).

    Notes
    -----
    Averaging power (not spectra) keeps each frame's reflections whatever the drift:
    a shift changes only the phase. The window suppresses the leakage of the frame
    edges that would otherwise draw streaks through the reflections.

    Examples
    --------
    >>> from daskreg.synthetic import lattice_series
    >>> power_spectrum(lattice_series(4, (64, 80), seed=0).stack).shape
    (64, 41)
    """
    frames = np.asarray(frames)
    frames, (ny, nx) = frames.reshape(-1, *frames.shape[-2:]), frames.shape[-2:]
    as_is = frames.dtype in (np.float32, np.float64)
    # Single precision halves the transforms' cost; the reflections' power is far above
    # its rounding (1e-7 of the frame's total power). One frame at a time through the
    # same buffers: fresh arrays for the whole sample cost more in page faults.
    window = (hann_window((ny, nx)) / scale).astype(np.float32)
    data = np.empty((1, ny, nx), np.float32)
    spectrum = np.empty((1, ny, nx // 2 + 1), np.complex64)
    total = np.zeros((ny, nx // 2 + 1))
    used = 0
    for k in range(len(frames)) if index is None else index:
        frame = frames[k] if as_is else frames[k].astype(np.float32)
        centre_and_window(frame[None], window, data)
        # A NaN or infinite pixel makes the mean, and so every centred pixel, NaN.
        if np.isfinite(data.sum(dtype=np.float64)):
            _add_power(rfft2_into(data, spectrum)[0], total)
            used += 1
    return total / max(used, 1)


def find_lattice(power: np.ndarray, shape: tuple[int, int]) -> Lattice | None:
    """Find the Bragg reflections and the lattice of a mean power spectrum.

    Parameters
    ----------
    power : ndarray, shape (ny, nx // 2 + 1)
        Output of :func:`power_spectrum`.
    shape : tuple of int
        Frame shape ``(ny, nx)`` (the half-plane width does not tell odd from even
        ``nx``).

    Returns
    -------
    Lattice or None
        The lattice, or None when no reflection is significant (noise, amorphous or
        featureless images, lattices repeating fewer than 4 times across the frame).

    Notes
    -----
    *Reflections.* The background at each frequency is the median power over the
    annulus of the same radius (one frequency step wide). A reflection is a 5 x 5
    local maximum at least 4 cycles per frame from DC whose power over that
    background exceeds both 4 and the level that noise reaches with probability
    1e-3 over the whole spectrum. The noise level is taken from a gamma law whose
    shape is fitted to the 50th and 99th percentiles of the power/background
    ratios, so it adapts to the number of frames averaged and to static speckle
    (amorphous material and vacancies do not average out over frames). The basis is
    built only from reflections twice that level and at least 1 % of the strongest;
    weaker ones are kept where they index on it. Peak positions are refined by a
    three-point Gaussian (parabola of the log power) per axis.

    *Basis.* ``g1``, ``g2`` start as the shortest reflection and the shortest one
    not collinear with it; a reflection with non-integer indices on that basis adds
    its finer lattice and the basis is recomputed, so a missing short reflection
    is recovered from a longer one. The basis is then fitted by least squares to all
    indexed reflections (the far ones fix it best) and reduced in real space. With
    one row of reflections only (fringes) ``g2`` and ``a2`` are None.

    *Near-symmetries.* A perovskite projection has a weaker B column at the cell
    centre, so the half-cell translation ``(a/2, a/2)`` is almost a symmetry: it is
    broken only by the (1, 0)-type reflections (structure factor ``f_A - f_B``),
    while the (1, 1)-type ones (``f_A + f_B``) belong to both cells. When the
    (1, 0)-type reflections are significant the basis is the true primitive cell.
    When they are not (very low dose, or nearly equal columns) the data cannot tell
    the two cells apart and the returned lattice is the centred half-cell one,
    ``a1 = (a/2, a/2)``, ``spacing_min = a / sqrt(2)``: :meth:`Lattice.nearest_translation`
    then also offers half-cell hops, which at that dose are as likely as whole-cell
    ones. The same holds for the centred rectangular (``"anisotropic"``) cell, whose
    superlattice reflections along the long axis can also fall below 4 cycles per
    frame (e.g. b = 50 px on 256 px: the centred cell is returned).

    References
    ----------
    .. [1] B. H. Savitzky et al., "Image registration of low signal-to-noise
       cryo-STEM data", Ultramicroscopy 191, 56-65 (2018),
       DOI 10.1016/j.ultramic.2018.04.008.
    .. [2] F. J. Harris, "On the use of windows for harmonic analysis with the
       discrete Fourier transform", Proc. IEEE 66, 51-83 (1978) (Hann main lobe).

    Examples
    --------
    >>> from daskreg.synthetic import lattice_series
    >>> s = lattice_series(4, (128, 128), lattice="hexagonal", spacing=12, dose=5)
    >>> lat = find_lattice(power_spectrum(s.stack), (128, 128))
    >>> round(lat.spacing_min, 1)
    12.0
    """
    ny, nx = shape
    full = _centred_full_plane(power, shape)
    cy, cx = ny // 2, nx // 2
    rings = _rings(shape)
    annulus = np.maximum(_annulus_median(full, rings), np.finfo(np.float64).tiny)
    ratio = full / annulus
    level = _significance_level(ratio[rings.search], n_tests=rings.n_search)
    above = np.flatnonzero((ratio.ravel() > level) & rings.search_half)
    hits = np.stack(np.unravel_index(above, shape), axis=1)
    hits = hits[_local_maxima(full, hits)]
    strengths = ratio[hits[:, 0], hits[:, 1]]
    if len(hits) == 0:
        return None
    # Static speckle (vacancies, amorphous material) does not average out over frames
    # and can pass the test here and there; the basis is built from the reflections
    # far above it, and weaker ones are kept only where they index on that basis.
    confident = strengths >= max(_CONFIDENT * level, _RELATIVE * strengths.max())
    positions = np.array([_refine(full, iy, ix) for iy, ix in hits]) - (cy, cx)
    g = positions / (ny, nx)
    order = np.argsort(np.hypot(*g.T), kind="stable")
    positions, strengths, g, confident = (x[order] for x in (positions, strengths, g, confident))

    basis = reciprocal_basis(g[confident], g[confident]) if confident.any() else None
    if basis is None:
        return None
    on = indexed(g, basis)
    positions, strengths, g = positions[on], strengths[on], g[on]
    if len(basis) == 1:
        g1 = fit_basis(g, basis)[0]
        a1 = g1 / (g1 @ g1)
        return Lattice(shape, positions, strengths, g1, None, a1, None)
    recip = fit_basis(g, basis)
    real = reduce_basis(np.linalg.inv(recip).T)
    dual = np.linalg.inv(real).T
    return Lattice(shape, positions, strengths, dual[0], dual[1], real[0], real[1])


@numba.njit(cache=True, nogil=True)
def _add_power(spectrum, total):  # pragma: no cover - compiled
    """``total += |spectrum|**2``, squared in the spectrum's precision, added in total's."""
    for y in range(spectrum.shape[0]):
        for x in range(spectrum.shape[1]):
            value = spectrum[y, x]
            total[y, x] += value.real * value.real + value.imag * value.imag


def _centred_full_plane(power: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The full ``(ny, nx)`` power plane, DC at ``(ny // 2, nx // 2)``, from its half."""
    ny, nx = shape
    half = power.shape[1]
    full = np.empty((ny, nx), dtype=np.float64)
    full[:, :half] = power
    # P(-k) = P(k): column nx - kx of the full plane is column kx at row -ky.
    # Rows -ky: row 0, then the others reversed; columns nx - half down to 1.
    full[:1, half:] = power[:1, nx - half : 0 : -1]
    full[1:, half:] = power[:0:-1, nx - half : 0 : -1]
    return np.fft.fftshift(full)


@dataclass(frozen=True)
class _Rings:
    """What :func:`find_lattice` needs of a frame shape's centred frequency plane.

    Attributes
    ----------
    order : ndarray of int
        Flat pixel indices sorted by annulus (one frequency step wide).
    starts : ndarray of int
        Where each annulus begins in ``order`` (and its end: the next start).
    ring : ndarray of int
        Annulus index of each annulus run in ``starts``.
    bins : ndarray of int, shape (ny, nx)
        Annulus of each pixel.
    search : ndarray of bool, shape (ny, nx)
        At least ``_MIN_CYCLES`` cycles per frame from DC.
    search_half : ndarray of bool, shape (ny * nx,)
        ``search`` on one half of the plane (a reflection and its Friedel mate once).
    n_search : int
    """

    order: np.ndarray
    starts: np.ndarray
    ring: np.ndarray
    bins: np.ndarray
    search: np.ndarray
    search_half: np.ndarray
    n_search: int


@lru_cache(maxsize=4)
def _rings(shape: tuple[int, int]) -> _Rings:
    """The annuli and search region of ``shape``.

    Computed once per shape: the sort cost more than the rest of :func:`find_lattice`.
    """
    ny, nx = shape
    ky = np.arange(ny)[:, None] - ny // 2
    kx = np.arange(nx)[None, :] - nx // 2
    radius = np.hypot(ky / ny, kx / nx)  # cycles per pixel
    bins = np.floor(radius * min(shape)).astype(np.int64)
    order = np.argsort(bins, axis=None, kind="stable")
    sorted_bins = bins.ravel()[order]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_bins) > 0])
    search = np.hypot(ky, kx) >= _MIN_CYCLES
    half = (kx > 0) | ((kx == 0) & (ky > 0))
    return _Rings(
        order,
        np.r_[starts, len(order)],
        sorted_bins[starts],
        bins,
        search,
        (search & half).ravel(),
        int(search.sum()),
    )


def _annulus_median(full: np.ndarray, rings: _Rings) -> np.ndarray:
    """Median power over annuli one frequency step wide, evaluated at every pixel."""
    medians = np.zeros(rings.ring[-1] + 1)
    medians[rings.ring] = _segment_medians(full.ravel()[rings.order], rings.starts)
    return medians[rings.bins]


@numba.njit(cache=True, nogil=True)
def _segment_medians(values, starts):  # pragma: no cover - compiled
    """``np.median`` of each run ``values[starts[k]:starts[k + 1]]``.

    One compiled loop: a Python loop of ``np.median`` calls cost 10 ms at 512^2 (360
    annuli).
    """
    out = np.empty(len(starts) - 1)
    for k in range(len(starts) - 1):
        out[k] = np.median(values[starts[k] : starts[k + 1]])
    return out


def _local_maxima(full: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Which ``hits`` (rows ``(y, x)``) are maxima of their ``_PEAK_BOX`` box (periodic).

    Only the pixels above the significance level are asked about: a few hundred of a
    plane's ``ny * nx``, where a maximum filter of the whole plane cost 12 ms at 512^2.
    """
    ny, nx = full.shape
    offsets = np.arange(_PEAK_BOX) - _PEAK_BOX // 2
    rows = (hits[:, 0, None, None] + offsets[None, :, None]) % ny
    cols = (hits[:, 1, None, None] + offsets[None, None, :]) % nx
    box = full[rows, cols].reshape(len(hits), _PEAK_BOX**2)
    return full[hits[:, 0], hits[:, 1]] >= box.max(axis=1)


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
    """Gamma shapes and their _TAIL/50th percentile ratios (decreasing in shape)."""
    shapes = np.geomspace(0.3, 1000.0, 200)
    # Unit-scale gamma quantiles from scipy.special, the functions scipy.stats.gamma
    # calls: the same values, without the 0.8 s import of scipy.stats every process pays.
    ratios = scipy.special.gammaincinv(shapes, _TAIL) / scipy.special.gammaincinv(shapes, 0.5)
    return shapes, ratios


def _significance_level(ratios: np.ndarray, *, n_tests: int) -> float:
    """Power/background ratio that noise exceeds with probability _FALSE_ALARM overall.

    The background is a median, so the ratios have median 1; the spread of their upper
    tail gives the shape of the gamma law they follow there (the mean of F exponential
    powers has shape F; static speckle, the same in every frame, has shape 1 whatever
    F, and shows in the tail first).
    """
    p50, tail = np.percentile(ratios, [50, 100 * _TAIL])
    shapes, table = _gamma_table()
    spread = tail / max(p50, np.finfo(float).tiny)
    shape = float(np.interp(-spread, -table, shapes))
    level = scipy.special.gammainccinv(shape, _FALSE_ALARM / max(n_tests, 1))
    return max(_MIN_RATIO, float(level / scipy.special.gammaincinv(shape, 0.5)) * p50)


def _refine(full: np.ndarray, iy: int, ix: int) -> tuple[float, float]:
    """Sub-pixel peak position: a parabola through the log power of 3 pixels per axis."""
    ny, nx = full.shape
    centre = np.log(full[iy, ix])

    def offset(minus: float, plus: float) -> float:
        lo, hi = np.log(max(minus, 1e-300)), np.log(max(plus, 1e-300))
        curvature = lo - 2 * centre + hi
        return 0.0 if curvature >= 0 else float(np.clip(0.5 * (lo - hi) / curvature, -0.5, 0.5))

    dy = offset(full[(iy - 1) % ny, ix], full[(iy + 1) % ny, ix])
    dx = offset(full[iy, (ix - 1) % nx], full[iy, (ix + 1) % nx])
    return iy + dy, ix + dx
