"""Panels every figure is built from: an image with its scale bar, a spectrum, a correlation.

matplotlib is imported inside the functions (as ``xarray/plot/utils.py`` does), so
importing daskreg never pulls in a plotting backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from daskreg.errors import ParameterError
from daskreg.kernels.correlate import hann_window

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "Calibration",
    "calibration_of",
    "panel_grid",
    "robust_limits",
    "show_image",
    "log_power",
    "spectrum_limit",
    "show_spectrum",
    "overlay_mask",
    "show_correlation",
    "image_and_spectrum",
]

# Display contrast from percentiles: a few hot or dead pixels must not set the grey scale.
IMAGE_CLIP = (0.5, 99.5)
# Most of a spectrum is noise floor; starting the scale at its median lets the lattice
# reflections and the low-frequency structure stand out.
SPECTRUM_CLIP = (50.0, 99.95)
# The correlation's floor is uninformative; its peaks are what the reader compares.
CORRELATION_CLIP = (1.0, 100.0)
# Lattice reflections stand this many robust standard deviations of log power above
# the noise floor; shot noise (exponential power) practically never does.
REFLECTION_SIGMAS = 6.0
# Show twice the reach of the strong reflections, so that weaker higher orders and the
# noise floor beyond them stay in view, but never less than an eighth of the spectrum.
SPECTRUM_REACH_FACTOR = 2.0
MIN_SPECTRUM_FRACTION = 1 / 8
# Correlation maps are shown this close to zero shift by default (px), or an eighth of
# the frame if larger: a few unit cells, enough to judge how unique the peak is.
CORRELATION_HALF_WIDTH = 32
# A scale bar about a fifth of the image wide is readable without hiding the image.
SCALE_BAR_FRACTION = 0.2
# Units that mean "no physical calibration".
_UNCALIBRATED = frozenset({"", "px", "pixel", "pixels"})
MASK_COLOUR = (1.0, 0.55, 0.0)
PEAK_COLOUR = "cyan"


class Calibration(NamedTuple):
    """Physical pixel size of a frame, or ``(None, None)`` for pixel units only.

    Attributes
    ----------
    pixel_size : tuple of float or None
        ``(py, px)``, size of one pixel along y and x in ``unit``.
    unit : str or None
        Length unit of ``pixel_size`` (e.g. ``"nm"``).
    """

    pixel_size: tuple[float, float] | None
    unit: str | None

    @property
    def calibrated(self) -> bool:
        """True when lengths can be given in a physical unit."""
        return self.pixel_size is not None


def calibration_of(attrs: Mapping[str, Any]) -> Calibration:
    """The calibration stored in the ``pixel_size``/``unit`` attrs of a stack or result."""
    size = attrs.get("pixel_size")
    unit = attrs.get("unit")
    if size is None or unit is None or str(unit) in _UNCALIBRATED:
        return Calibration(None, None)
    py, px = np.broadcast_to(np.asarray(size, dtype=float), (2,))
    return Calibration((float(py), float(px)), str(unit))


def panel_grid(
    axes: Any,
    nrows: int,
    ncols: int,
    *,
    figsize: tuple[float, float],
    name: str,
    title: str | None = None,
) -> tuple[Figure, np.ndarray]:
    """The figure and a ``(nrows, ncols)`` array of axes: the caller's, or new ones.

    A new figure gets ``title`` as its suptitle; the caller's figure is left untitled
    (it may hold other panels).

    Raises
    ------
    ParameterError
        ``axes`` holds a different number of axes than the figure draws.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        fig, grid = plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", squeeze=False)
        if title:
            fig.suptitle(title)
        return fig, grid
    flat = np.asarray(axes, dtype=object).ravel()
    if flat.size != nrows * ncols:
        raise ParameterError(
            f"{name} draws {nrows * ncols} panel(s) but got {flat.size} axes; pass "
            f"{nrows * ncols} axes (e.g. plt.subplots({nrows}, {ncols})[1]) or axes=None"
        )
    return flat[0].figure, flat.reshape(nrows, ncols)


def robust_limits(values: np.ndarray, clip: tuple[float, float]) -> tuple[float, float]:
    """Colour limits at the ``clip`` percentiles of the finite values (never equal)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, clip)
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def _edges(centres: np.ndarray) -> tuple[float, float]:
    step = centres[1] - centres[0] if len(centres) > 1 else 1.0
    return float(centres[0] - step / 2), float(centres[-1] + step / 2)


def _extent(y: np.ndarray, x: np.ndarray) -> tuple[float, float, float, float]:
    """Extent for ``imshow`` with pixel centres at ``x``/``y``, row 0 at the top."""
    x0, x1 = _edges(x)
    y0, y1 = _edges(y)
    return (x0, x1, y1, y0)


def _nice_length(target: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``target``."""
    power = 10.0 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target)


def _add_scale_bar(ax: Axes, width_px: int, cal: Calibration) -> None:
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    px = cal.pixel_size[1]
    length = _nice_length(SCALE_BAR_FRACTION * width_px * px)
    bar = AnchoredSizeBar(
        ax.transData,
        length / px,
        f"{length:g} {cal.unit}",
        "lower right",
        pad=0.3,
        sep=3,
        color="white",
        size_vertical=max(1.0, width_px / 120),
        fontproperties=FontProperties(size=9),
    )
    # A dark box keeps the white bar readable over bright columns.
    bar.patch.set(facecolor="black", alpha=0.55, edgecolor="none")
    bar.set_gid("scale_bar")
    ax.add_artist(bar)


def show_image(ax: Axes, image: np.ndarray, cal: Calibration, *, title: str) -> None:
    """A frame in grey, axes in pixels, a scale bar in ``cal.unit`` when calibrated."""
    ny, nx = image.shape
    vmin, vmax = robust_limits(image, IMAGE_CLIP)
    ax.imshow(
        image,
        cmap="gray",
        vmin=vmin,
        vmax=vmax,
        extent=_extent(np.arange(ny), np.arange(nx)),
    )
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax.set_title(title)
    if cal.calibrated:
        _add_scale_bar(ax, nx, cal)


def log_power(image: np.ndarray) -> np.ndarray:
    """Centred ``log10`` power spectrum of a frame, as the registration sees it.

    The frame is mean-subtracted and Hann-windowed like the spectra that are correlated,
    which also removes the cross of streaks that the frame edges would add.
    """
    windowed = (image - image.mean()) * hann_window(image.shape)
    power = np.abs(np.fft.fftshift(np.fft.fft2(windowed))) ** 2
    return np.log10(power + np.finfo(float).tiny)


def _frequencies(shape: tuple[int, int], cal: Calibration) -> tuple[np.ndarray, np.ndarray, str]:
    """Centred frequency coordinates (ky, kx) in cycles per frame or 1/unit, and the unit."""
    ny, nx = shape
    ky = np.arange(ny) - ny // 2
    kx = np.arange(nx) - nx // 2
    if not cal.calibrated:
        return ky.astype(float), kx.astype(float), "cycles per frame"
    py, px = cal.pixel_size
    return ky / (ny * py), kx / (nx * px), f"1/{cal.unit}"


def spectrum_limit(spectrum: np.ndarray) -> tuple[float, float]:
    """Frequencies ``(|ky|, |kx|)`` in cycles per frame worth showing of a centred log spectrum.

    The limit is twice the reach of the strong lattice reflections (local maxima
    :data:`REFLECTION_SIGMAS` robust deviations above the median, away from zero
    frequency), clipped to between an eighth of the spectrum and all of it.
    """
    from scipy import ndimage

    ny, nx = spectrum.shape
    floor = np.median(spectrum)
    spread = 1.4826 * np.median(np.abs(spectrum - floor))
    ky = np.abs(np.arange(ny) - ny // 2)[:, None]
    kx = np.abs(np.arange(nx) - nx // 2)[None, :]
    reflections = (
        (spectrum == ndimage.maximum_filter(spectrum, size=5))
        & (spectrum > floor + REFLECTION_SIGMAS * spread)
        & ((ky > 2) | (kx > 2))
    )
    reach = max(int((ky * reflections).max()), int((kx * reflections).max()))
    return tuple(
        float(np.clip(SPECTRUM_REACH_FACTOR * reach + 2, MIN_SPECTRUM_FRACTION * n, n / 2))
        for n in (ny, nx)
    )


def show_spectrum(
    ax: Axes,
    spectrum: np.ndarray,
    cal: Calibration,
    *,
    title: str,
    limit: tuple[float, float] | None = None,
) -> None:
    """A centred log spectrum on frequency axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    spectrum : ndarray, shape (ny, nx)
        Centred values (e.g. :func:`log_power`); NaN shows as black.
    cal : Calibration
        Axes in 1/unit when calibrated, else in cycles per frame.
    title : str
    limit : tuple of float, optional
        Show only ``|ky| <= limit[0]``, ``|kx| <= limit[1]`` (cycles per frame).
    """
    import matplotlib as mpl

    ky, kx, unit = _frequencies(spectrum.shape, cal)
    vmin, vmax = robust_limits(spectrum, SPECTRUM_CLIP)
    cmap = mpl.colormaps["gray"].with_extremes(bad="black")
    ax.imshow(spectrum, cmap=cmap, vmin=vmin, vmax=vmax, extent=_extent(ky, kx))
    ax.set_xlabel(f"$k_x$ ({unit})")
    ax.set_ylabel(f"$k_y$ ({unit})")
    ax.set_title(title)
    if limit is not None:
        ny, nx = spectrum.shape
        y_scale = abs(ky[1] - ky[0]) if ny > 1 else 1.0
        x_scale = abs(kx[1] - kx[0]) if nx > 1 else 1.0
        ax.set_xlim(-limit[1] * x_scale, limit[1] * x_scale)
        ax.set_ylim(limit[0] * y_scale, -limit[0] * y_scale)


def overlay_mask(ax: Axes, mask: np.ndarray, cal: Calibration) -> None:
    """Tint a spectrum panel by a centred Fourier mask (opacity = weight)."""
    ky, kx, _ = _frequencies(mask.shape, cal)
    rgba = np.zeros((*mask.shape, 4))
    rgba[..., :3] = MASK_COLOUR
    rgba[..., 3] = 0.5 * np.clip(np.abs(mask) / max(np.abs(mask).max(), 1e-12), 0, 1)
    ax.imshow(rgba, extent=_extent(ky, kx), gid="fourier_mask")


def show_correlation(
    ax: Axes,
    correlation: np.ndarray,
    peak: Sequence[float],
    *,
    title: str,
    colorbar: bool = True,
    half_width: float | None = None,
) -> None:
    """A centred correlation map on shift axes (px) with its found maximum marked.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    correlation : ndarray, shape (ny, nx)
        Centred so that zero shift is at ``(ny // 2, nx // 2)``.
    peak : (dy, dx)
        The shift found, in pixels.
    title : str
    colorbar : bool
        Add a colour bar of the correlation values.
    half_width : float, optional
        Show shifts within this many pixels of zero (and always the peak); default
        :data:`CORRELATION_HALF_WIDTH` or an eighth of the frame, whichever is larger.
        ``numpy.inf`` shows the whole map.
    """
    ny, nx = correlation.shape
    sy = np.arange(ny) - ny // 2
    sx = np.arange(nx) - nx // 2
    vmin, vmax = robust_limits(correlation, CORRELATION_CLIP)
    image = ax.imshow(correlation, cmap="magma", vmin=vmin, vmax=vmax, extent=_extent(sy, sx))
    dy, dx = (float(v) for v in peak)
    ax.plot(
        dx,
        dy,
        "+",
        color=PEAK_COLOUR,
        ms=16,
        mew=1.5,
        gid="peak",
        label=f"maximum ({dy:.2f}, {dx:.2f}) px",
    )
    ax.plot(dx, dy, "o", mfc="none", mec=PEAK_COLOUR, ms=16, mew=1.0)
    ax.set_xlabel("shift x (px)")
    ax.set_ylabel("shift y (px)")
    ax.set_title(title)
    if half_width is None:
        half_width = max(CORRELATION_HALF_WIDTH, max(ny, nx) / 8)
    reach = max(half_width, 1.3 * abs(dy), 1.3 * abs(dx))
    ax.set_xlim(max(-reach, sx[0] - 0.5), min(reach, sx[-1] + 0.5))
    ax.set_ylim(min(reach, sy[-1] + 0.5), max(-reach, sy[0] - 0.5))
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="correlation (a.u.)", shrink=0.85)


def image_and_spectrum(
    ax_image: Axes,
    ax_spectrum: Axes,
    image: np.ndarray,
    cal: Calibration,
    *,
    title: str,
    limit: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """The panel pair used everywhere: an image and its log power spectrum.

    The spectrum is zoomed to ``limit`` (cycles per frame), by default to
    :func:`spectrum_limit`; the limit used is returned so that another spectrum can be
    shown on the same scale.
    """
    show_image(ax_image, image, cal, title=title)
    spectrum = log_power(image)
    limit = spectrum_limit(spectrum) if limit is None else limit
    show_spectrum(ax_spectrum, spectrum, cal, title="its power spectrum (log)", limit=limit)
    return limit
