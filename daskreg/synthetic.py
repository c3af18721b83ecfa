"""Synthetic atomic-resolution STEM image series with known ground-truth drift.

:func:`lattice_series` renders a stack of HAADF-like lattice images (Gaussian atomic
columns, Z-contrast-like intensities, vacancies, Poisson shot noise, read noise) that
drift frame to frame by a known sub-pixel amount, optionally with bad frames. It is the
reference data for tests and benchmarks of the registration.

Sign convention
---------------
Frame ``i`` shows the specimen displaced by ``+shifts[i]``::

    stack[i][y, x] ≈ L(y - shifts[i, 0], x - shifts[i, 1])

where ``L`` is the continuous, noise-free lattice image. Shifting frame ``i`` by
``-shifts[i]`` (for example ``scipy.ndimage.shift(frame, -shifts[i])``) aligns it with
``L``, and frame ``k`` equals frame ``j`` shifted by ``shifts[k] - shifts[j]``, i.e.
``stack[k][y, x] ≈ stack[j][y - d_y, x - d_x]`` with ``d = shifts[k] - shifts[j]``.
``shifts[0]`` is a random sub-pixel offset, not zero.

Every frame is rendered by sampling the shifted continuous lattice at the integer pixel
centres, not by Fourier-shifting one periodic image, so edges and sub-pixel positions are
exact (:mod:`daskreg.synthetic_imaging`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

from daskreg.errors import ParameterError
from daskreg.synthetic_imaging import CUTOFF_SIGMA, add_noise, render

__all__ = ["SyntheticSeries", "lattice_basis", "lattice_series"]

LatticeKind = Literal["perovskite", "hexagonal", "anisotropic"]
BadFrameKind = Literal["blank", "torn"]

# Unit-cell motif per lattice: (fractional coordinate along a1, along a2, intensity).
# Intensities mimic HAADF Z-contrast: a heavy A site and a lighter B site.
_MOTIFS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "perovskite": ((0.0, 0.0, 1.0), (0.5, 0.5, 0.45)),
    "hexagonal": ((0.0, 0.0, 1.0),),
    "anisotropic": ((0.0, 0.0, 1.0), (0.5, 0.5, 0.35)),
}
_BAD_FRAME_KINDS = ("blank", "torn")
# Radius of the vacancy cluster in lattice constants: removes a handful of neighbours.
_CLUSTER_RADIUS = 1.2
# Below two pixels per lattice period the lattice is not representable (Nyquist) and the
# number of columns to render explodes.
_MIN_SPACING = 2.0


@dataclass(frozen=True)
class SyntheticSeries:
    """A synthetic image series and its ground truth.

    Attributes
    ----------
    stack : numpy.ndarray
        float32, shape ``(n_frames, ny, nx)``, frames on axis 0, in counts (or in units
        of ``dose`` when ``dose`` is infinite).
    shifts : numpy.ndarray
        float64, shape ``(n_frames, 2)``: true displacement ``(dy, dx)`` in pixels of each
        frame, see the module docstring for the sign convention. Bad frames keep the
        value they would have had.
    bad_frames : tuple of int
        Sorted indices of the frames rendered blank or torn.
    params : dict
        Every generation parameter as plain, JSON-serialisable Python types, including
        the resolved ``column_sigma`` and, under ``"tears"``, the row and extra jump of
        each torn frame. ``dose`` is ``None`` when no shot noise was applied.
    """

    stack: np.ndarray
    shifts: np.ndarray
    bad_frames: tuple[int, ...]
    params: dict

    def to_xarray(self) -> xr.DataArray:
        """Return the stack as a labelled DataArray with a calibrated pixel grid.

        Returns
        -------
        xarray.DataArray
            Dims ``("frame", "y", "x")``; ``y``/``x`` coordinates in nm. Attributes are
            JSON-friendly: ``pixel_size`` ``(py, px)``, ``unit``, ``source`` and the
            generation parameters as a JSON string under ``synthetic_params``. The data
            is not copied.
        """
        n_frames, ny, nx = self.stack.shape
        pixel_size = float(self.params["pixel_size"])
        return xr.DataArray(
            self.stack,
            dims=("frame", "y", "x"),
            coords={
                "frame": np.arange(n_frames),
                "y": np.arange(ny) * pixel_size,
                "x": np.arange(nx) * pixel_size,
            },
            attrs={
                "pixel_size": (pixel_size, pixel_size),
                "unit": "nm",
                "source": "daskreg.synthetic",
                "synthetic_params": json.dumps(self.params),
            },
        )


def lattice_series(
    n_frames: int = 20,
    shape: tuple[int, int] = (512, 512),
    *,
    lattice: LatticeKind = "perovskite",
    spacing: float = 16.0,
    aspect: float = 2.5,
    rotation: float = 0.0,
    column_sigma: float | None = None,
    dose: float = 50.0,
    background: float = 0.05,
    read_noise: float = 0.0,
    vacancy_fraction: float = 0.02,
    drift_step: tuple[float, float] = (0.83, -0.57),
    drift_jitter: float = 0.25,
    bad_frames: Mapping[int, BadFrameKind] | None = None,
    seed: int = 0,
    pixel_size: float = 0.0391,
) -> SyntheticSeries:
    """Render a drifting series of noisy atomic-lattice images with known shifts.

    Parameters
    ----------
    n_frames : int
        Number of frames, at least 1.
    shape : tuple of int
        Frame shape ``(ny, nx)``; any positive sizes, square or not, odd or even.
    lattice : {"perovskite", "hexagonal", "anisotropic"}
        ``"perovskite"``: square lattice, A column at the cell corner (intensity 1) and a
        weaker B column at the cell centre (0.45). ``"hexagonal"``: triangular lattice
        of one column type. ``"anisotropic"``: rectangular ``a x b`` cell with a weak
        column at its centre, giving a strongly anisotropic spectrum.
    spacing : float
        Lattice constant ``a`` in pixels, at least 2.
    aspect : float
        ``b / a`` of the ``"anisotropic"`` lattice; ignored otherwise.
    rotation : float
        Angle in degrees of the first lattice vector from the +x axis towards +y.
    column_sigma : float, optional
        Standard deviation in pixels of the Gaussian columns; default ``spacing / 8``.
    dose : float
        Expected counts above background at the centre of the brightest column type.
        ``numpy.inf`` disables shot noise and returns the expected image in units of
        dose (column peak 1, background ``background``).
    background : float
        Background level as a fraction of ``dose``; keeps the Poisson mean positive
        between columns.
    read_noise : float
        Standard deviation in counts of additive Gaussian read noise.
    vacancy_fraction : float
        Fraction of columns removed at random, in ``[0, 1)``. When positive, one small
        cluster of vacancies is removed as well. Vacancies are part of the specimen, so
        they are at the same place in every frame and break the periodicity, which makes
        whole-unit-cell registration errors visible.
    drift_step : tuple of float
        Linear drift per frame ``(dy, dx)`` in pixels.
    drift_jitter : float
        Standard deviation in pixels of the random-walk step added per frame and axis.
    bad_frames : mapping of int to {"blank", "torn"}, optional
        Frames to spoil. ``"blank"``: beam blanked, only background and noise.
        ``"torn"``: the rows below a random row between 30 % and 70 % of the height show
        the lattice displaced by an extra jump of roughly a third of a lattice constant.
    seed : int
        Seed of :func:`numpy.random.default_rng`; equal seeds give identical series.
    pixel_size : float
        Calibration in nm per pixel, used by :meth:`SyntheticSeries.to_xarray`.

    Returns
    -------
    SyntheticSeries
        The stack, the true shifts, the bad-frame indices and the parameters.

    Raises
    ------
    daskreg.errors.ParameterError
        If a parameter is out of range, unknown, or a bad-frame index is outside the
        series.

    Notes
    -----
    ``shifts[0]`` is uniform in ``[0, 1)`` per axis and ``shifts[i] = shifts[i - 1] +
    drift_step + drift_jitter * N(0, 1)``. The specimen, the drift, the bad frames and the
    noise draw from independent random streams, so changing e.g. ``dose`` or
    ``bad_frames`` leaves the geometry of the other frames unchanged.
    """
    ny, nx = _check_shape(shape)
    n_frames = _check_int("n_frames", n_frames, minimum=1, fix="pass at least 1 frame")
    seed = _check_int("seed", seed, minimum=0, fix="pass a non-negative integer seed")
    if lattice not in _MOTIFS:
        raise ParameterError(
            f"lattice={lattice!r} is unknown; use one of {', '.join(map(repr, _MOTIFS))}."
        )
    if not (math.isfinite(spacing) and spacing >= _MIN_SPACING):
        raise ParameterError(
            f"spacing={spacing!r} px is not resolvable; pass a finite lattice constant of "
            f"at least {_MIN_SPACING} px."
        )
    _check_positive_finite("aspect", aspect)
    _check_finite("rotation", rotation)
    sigma = spacing / 8.0 if column_sigma is None else column_sigma
    _check_positive_finite("column_sigma", sigma)
    if not (dose > 0):  # written so that NaN is rejected too
        raise ParameterError(f"dose={dose!r} must be > 0 counts; use numpy.inf for no noise.")
    _check_non_negative_finite("background", background)
    _check_non_negative_finite("read_noise", read_noise)
    _check_non_negative_finite("drift_jitter", drift_jitter)
    if not (0.0 <= vacancy_fraction < 1.0):
        raise ParameterError(
            f"vacancy_fraction={vacancy_fraction!r} is outside [0, 1); pass a fraction "
            "such as 0.02."
        )
    step = _check_drift_step(drift_step)
    _check_positive_finite("pixel_size", pixel_size)
    bad = _check_bad_frames(bad_frames, n_frames)

    specimen_rng, drift_rng, bad_rng, noise_rng = np.random.default_rng(seed).spawn(4)
    shifts = _drift_trajectory(n_frames, drift_step=step, drift_jitter=drift_jitter, rng=drift_rng)
    tears = _draw_tears(bad, ny, spacing, bad_rng)

    # The specimen must cover every frame under every displacement it is rendered with.
    displacements = np.vstack([shifts, *(shifts[i] + jump for i, (_, jump) in tears.items())])
    margin = CUTOFF_SIGMA * sigma + 1.0
    y_range = (-margin - displacements[:, 0].max(), ny - 1 + margin - displacements[:, 0].min())
    x_range = (-margin - displacements[:, 1].max(), nx - 1 + margin - displacements[:, 1].min())
    positions, amplitudes = _lattice_columns(
        lattice, spacing, aspect, rotation, y_range, x_range, specimen_rng
    )
    if vacancy_fraction > 0:
        centre = specimen_rng.uniform(0.25, 0.75, size=2) * (ny, nx) - shifts[0]
        keep = specimen_rng.random(len(amplitudes)) >= vacancy_fraction
        keep &= np.hypot(*(positions - centre).T) > _CLUSTER_RADIUS * spacing
        positions, amplitudes = positions[keep], amplitudes[keep]

    ys = np.arange(ny, dtype=np.float64)
    xs = np.arange(nx, dtype=np.float64)
    stack = np.empty((n_frames, ny, nx), dtype=np.float32)
    for i in range(n_frames):
        if bad.get(i) == "blank":
            expected = np.zeros((ny, nx), dtype=np.float32)
        elif i in tears:
            row, jump = tears[i]
            expected = np.vstack(
                [
                    render(positions + shifts[i], amplitudes, sigma, ys[:row], xs),
                    render(positions + shifts[i] + jump, amplitudes, sigma, ys[row:], xs),
                ]
            )
        else:
            expected = render(positions + shifts[i], amplitudes, sigma, ys, xs)
        expected += np.float32(background)
        stack[i] = add_noise(expected, dose, read_noise, noise_rng)

    params: dict[str, Any] = {
        "n_frames": n_frames,
        "shape": [ny, nx],
        "lattice": lattice,
        "spacing": float(spacing),
        "aspect": float(aspect),
        "rotation": float(rotation),
        "column_sigma": float(sigma),
        # None rather than inf: infinity is not valid JSON.
        "dose": float(dose) if math.isfinite(dose) else None,
        "background": float(background),
        "read_noise": float(read_noise),
        "vacancy_fraction": float(vacancy_fraction),
        "drift_step": [float(step[0]), float(step[1])],
        "drift_jitter": float(drift_jitter),
        # JSON object keys are strings; storing them so keeps params == json round trip.
        "bad_frames": {str(i): kind for i, kind in bad.items()},
        "seed": seed,
        "pixel_size": float(pixel_size),
        "tears": {
            str(i): {"row": row, "jump": [float(jump[0]), float(jump[1])]}
            for i, (row, jump) in tears.items()
        },
    }
    return SyntheticSeries(stack=stack, shifts=shifts, bad_frames=tuple(bad), params=params)


def _drift_trajectory(
    n_frames: int,
    *,
    drift_step: tuple[float, float],
    drift_jitter: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return ``(n_frames, 2)`` shifts: a random sub-pixel start plus a jittered linear walk."""
    start = rng.random(2)
    steps = np.asarray(drift_step) + drift_jitter * rng.standard_normal((n_frames - 1, 2))
    return np.vstack([start, start + np.cumsum(steps, axis=0)])


def _draw_tears(
    bad: Mapping[int, str], ny: int, spacing: float, rng: np.random.Generator
) -> dict[int, tuple[int, np.ndarray]]:
    """Draw the tear row and the extra ``(dy, dx)`` jump of every torn frame."""
    tears = {}
    for i, kind in bad.items():
        if kind != "torn":
            continue
        row = round(rng.uniform(0.3, 0.7) * ny)
        # Shorter than any lattice vector, so the jump cannot be mistaken for a whole
        # unit cell, yet several pixels so the tear is obvious.
        jump = spacing * np.array([rng.uniform(-0.1, 0.1), 0.35 + rng.uniform(-0.08, 0.08)])
        tears[i] = (row, jump)
    return tears


def lattice_basis(
    lattice: LatticeKind, spacing: float, *, aspect: float = 2.5, rotation: float = 0.0
) -> np.ndarray:
    """Return the two lattice vectors :func:`lattice_series` renders, in pixels.

    Parameters
    ----------
    lattice, spacing, aspect, rotation
        As for :func:`lattice_series` (``series.params`` holds them).

    Returns
    -------
    numpy.ndarray
        float64, shape ``(2, 2)``: rows ``a1`` and ``a2`` as ``(dy, dx)``. A frame
        displaced by an integer combination of them shows the same periodic lattice,
        which is what a unit-cell registration error ("hop") is.
    """
    theta = math.radians(rotation)
    gamma, length2 = {
        "perovskite": (90.0, spacing),
        "hexagonal": (60.0, spacing),
        "anisotropic": (90.0, aspect * spacing),
    }[lattice]
    phi = theta + math.radians(gamma)
    return np.array(
        [
            [spacing * math.sin(theta), spacing * math.cos(theta)],
            [length2 * math.sin(phi), length2 * math.cos(phi)],
        ]
    )


def _lattice_columns(
    lattice: str,
    spacing: float,
    aspect: float,
    rotation: float,
    y_range: tuple[float, float],
    x_range: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(n, 2)`` column positions ``(y, x)`` inside the box and their intensities.

    The lattice origin is a random point of the unit cell so the image is generic.
    """
    basis = lattice_basis(lattice, spacing, aspect=aspect, rotation=rotation)
    origin = rng.random(2) @ basis
    corners = np.array([[y, x] for y in y_range for x in x_range]) - origin
    frac = corners @ np.linalg.inv(basis)
    lo = np.floor(frac.min(axis=0)).astype(int) - 1
    hi = np.ceil(frac.max(axis=0)).astype(int) + 1
    n1, n2 = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
    cells = np.column_stack([n1.ravel(), n2.ravel()]).astype(np.float64)

    motif = np.array(_MOTIFS[lattice])
    positions = (cells[:, None, :] + motif[None, :, :2]) @ basis + origin
    amplitudes = np.broadcast_to(motif[:, 2], positions.shape[:2])
    positions = positions.reshape(-1, 2)
    amplitudes = amplitudes.reshape(-1)
    inside = (
        (positions[:, 0] >= y_range[0])
        & (positions[:, 0] <= y_range[1])
        & (positions[:, 1] >= x_range[0])
        & (positions[:, 1] <= x_range[1])
    )
    return positions[inside], amplitudes[inside].copy()


def _check_pair(name: str, value: Any, cast: type, what: str, fix: str) -> tuple[Any, Any]:
    """``value`` as two ``cast`` values; a :class:`ParameterError` if it is no such pair."""
    try:
        first, second = (cast(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}={value!r} is not a pair of {what}; pass {fix}.") from None
    return first, second


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    ny, nx = _check_pair("shape", shape, int, "integers", "(ny, nx), e.g. (512, 512)")
    if ny < 1 or nx < 1 or (ny, nx) != tuple(shape):
        raise ParameterError(
            f"shape={shape!r} must hold two positive integers; pass (ny, nx), e.g. (512, 512)."
        )
    return ny, nx


def _check_int(name: str, value: int, *, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ParameterError(f"{name}={value!r} must be an integer >= {minimum}; {fix}.")
    return int(value)


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ParameterError(f"{name}={value!r} is not finite; pass a finite number.")


def _check_positive_finite(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(f"{name}={value!r} must be a finite number > 0.")


def _check_non_negative_finite(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ParameterError(f"{name}={value!r} must be a finite number >= 0; use 0 to disable.")


def _check_drift_step(drift_step: Sequence[float]) -> tuple[float, float]:
    dy, dx = _check_pair("drift_step", drift_step, float, "numbers", "(dy, dx) in pixels")
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise ParameterError(f"drift_step={drift_step!r} is not finite; pass finite (dy, dx).")
    return dy, dx


def _check_bad_frames(bad_frames: Mapping[int, str] | None, n_frames: int) -> dict[int, str]:
    """Validate ``bad_frames`` and return it as a plain dict sorted by frame index."""
    if bad_frames is None:
        return {}
    if not isinstance(bad_frames, Mapping):
        raise ParameterError(
            f"bad_frames={bad_frames!r} is not a mapping; pass e.g. {{3: 'blank', 7: 'torn'}}."
        )
    for index, kind in bad_frames.items():
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise ParameterError(
                f"bad_frames key {index!r} is not an integer; use frame indices as keys."
            )
        if not 0 <= index < n_frames:
            raise ParameterError(
                f"bad frame index {index} is out of range for n_frames={n_frames}; "
                f"use indices 0 to {n_frames - 1}."
            )
        if kind not in _BAD_FRAME_KINDS:
            raise ParameterError(
                f"bad frame kind {kind!r} (frame {index}) is unknown; use 'blank' or 'torn'."
            )
    return {int(i): bad_frames[i] for i in sorted(bad_frames)}
