"""Processing parameters of a registration, validated once, with the reference's names.

:class:`RegistrationParams` is what the API, the command line (``--config params.toml``)
and the saved outputs share: every run records it in full.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from daskreg.errors import ParameterError
from daskreg.kernels.correlate import CORRELATION_KINDS, WINDOWS, CorrelationKind, WindowKind
from daskreg.kernels.masks import MASK_KINDS
from daskreg.kernels.peaks import FIND_MAXIMA, FindMaxima

__all__ = [
    "RegistrationParams",
    "OutlierMethod",
    "Solver",
    "MEASURE_PARAMS",
    "DEFAULT_N",
    "REFERENCE",
]

OutlierMethod = Literal["robust", "transitivity", "nn"]
Solver = Literal["robust", "mean", "lstsq"]
_MASK_NAMES = (*MASK_KINDS, "elliptical", "auto")
#: Parameters that change the measured shift matrix; the others change only its analysis
#: (so a measured matrix, or a checkpoint of one, stays valid when only they change).
MEASURE_PARAMS = frozenset(
    {
        "mask", "n", "n1", "n2", "theta", "correlation", "find_maxima", "window", "num_peaks",
        "sigma_guess", "window_radius", "num_iter", "min_window_frac", "band", "precision",
    }
)
# What None stands for, for the parameters where it is a valid choice.
#: Mask cutoff of a mask kind given without ``n`` (the reference package's default).
DEFAULT_N = 4.0
#: The reference package's choices, where daskreg's defaults choose from the data: for
#: reproducing it, and for kernels that need concrete values.
REFERENCE = {
    "mask": "bandpass",
    "n": DEFAULT_N,
    "sigma_guess": 2.0,
    "window_radius": 6,
    "outliers": "transitivity",
    "solver": "mean",
    "refine": False,
}
_NONE_MEANS = {
    "n": "chosen from the lattice with mask='auto', else 4",
    "threshold": "chosen from the data",
    "band": "correlate all pairs",
    "sigma_guess": "chosen from the lattice",
    "window_radius": "chosen from the lattice",
}


@dataclass(frozen=True, eq=False)
class RegistrationParams:
    """Every parameter of the method (see :func:`daskreg.register` for their meaning)."""

    mask: str | np.ndarray = "auto"
    n: float | None = None
    n1: float | None = None
    n2: float | None = None
    theta: float = 0.0
    correlation: CorrelationKind = "cc"
    find_maxima: FindMaxima = "gf"
    window: WindowKind | None = "hann"
    num_peaks: int = 5
    sigma_guess: float | None = None
    window_radius: int | None = None
    num_iter: int = 2
    min_window_frac: float = 3.0
    outliers: OutlierMethod | None = "robust"
    threshold: float | None = None
    maxpaths: int = 5
    max_shift: float = 1.0
    bad_frames: tuple[int, ...] = ()
    frames: tuple[int, int] | None = None
    crop: bool = True
    solver: Solver = "robust"
    refine: bool = True
    band: int | None = None
    detect_bad_frames: bool = True
    precision: Literal["single", "double"] = "single"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("correlation", self.correlation, CORRELATION_KINDS)
        _check_choice("find_maxima", self.find_maxima, FIND_MAXIMA)
        _check_choice("window", self.window, WINDOWS)
        _check_choice("outliers", self.outliers, (*get_args(OutlierMethod), None))
        _check_choice("solver", self.solver, get_args(Solver))
        _check_choice("precision", self.precision, ("single", "double"))
        if isinstance(self.mask, str):
            _check_choice("mask", self.mask, _MASK_NAMES)
            if self.mask == "elliptical":
                if self.n1 is None or self.n2 is None:
                    raise ParameterError(
                        "mask='elliptical' needs both n1 and n2 (feature sizes in pixels along "
                        f"the two axes); got n1={self.n1}, n2={self.n2}"
                    )
                _check_positive("n1", self.n1)
                _check_positive("n2", self.n2)
            elif self.mask != "none" and self.n is not None:
                _check_positive("n", self.n)
        else:
            mask = np.asarray(self.mask)
            if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.number):
                raise ParameterError(
                    f"a user mask must be a 2-D numeric array on the centred Fourier grid; got "
                    f"shape {mask.shape}, dtype {mask.dtype}. Build one with "
                    "daskreg.fourier_grids(frame_shape)."
                )
            object.__setattr__(self, "mask", mask)
        for name in ("num_peaks", "maxpaths", "num_iter"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.window_radius is not None:
            _check_int("window_radius", self.window_radius, minimum=1)
        if self.sigma_guess is not None:
            _check_positive("sigma_guess", self.sigma_guess)
        _check_positive("max_shift", self.max_shift)
        _check_positive("min_window_frac", self.min_window_frac)
        if self.threshold is not None:
            _check_positive("threshold", self.threshold)
        if self.band is not None:
            _check_int("band", self.band, minimum=1)
        object.__setattr__(self, "bad_frames", tuple(sorted({int(b) for b in self.bad_frames})))
        if self.frames is not None:
            start, stop = (int(v) for v in self.frames)
            if stop <= start:
                raise ParameterError(
                    f"frames=({start}, {stop}) is empty; pass a half-open range (start, stop) "
                    "with stop > start, e.g. frames=(0, 20)"
                )
            object.__setattr__(self, "frames", (start, stop))

    @classmethod
    def reference(cls, **changes: Any) -> RegistrationParams:
        """The reference package's parameters (:data:`REFERENCE`), with ``changes``.

        Nothing is chosen from the data: bandpass mask with ``n=4``, ``gf`` starting at
        width 2 in windows of radius 6, transitivity outliers, row-mean shifts.
        """
        return cls(**{**REFERENCE, **changes})

    @property
    def cutoff(self) -> float:
        """The mask cutoff ``n`` in force (:data:`DEFAULT_N` when none was given)."""
        return DEFAULT_N if self.n is None else float(self.n)

    @property
    def spectrum_dtype(self) -> type:
        """Complex dtype of the frame spectra."""
        return np.complex64 if self.precision == "single" else np.complex128

    def replace(self, **changes: Any) -> RegistrationParams:
        """A copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every parameter (a user mask is summarised, not stored)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = f"user array {value.shape}"
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        if out["mask"] == "elliptical":
            out["theta_degrees"] = float(np.degrees(self.theta))
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RegistrationParams:
        """Parameters from a dict (e.g. a saved description or a TOML config).

        Unknown keys raise :class:`~daskreg.errors.ParameterError` naming them.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k != "theta_degrees"}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) {unknown}; valid names are {sorted(names - {'extra'})}"
            )
        if isinstance(values.get("mask"), str) and values["mask"].startswith("user array"):
            raise ParameterError(
                "these parameters used a user-defined mask array, which is not stored; pass "
                "the array again as mask=..."
            )
        for key in ("bad_frames", "frames"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ParameterError(f"{name}={value!r} is not one of {list(choices)}; pick one of those")


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
        raise ParameterError(
            f"{name} must be a positive number; got {value!r}. {_default_hint(name)}"
        )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ParameterError(
            f"{name} must be an integer >= {minimum}; got {value!r}. {_default_hint(name)}"
        )


def _default_hint(name: str) -> str:
    # The default, when there is one, is always valid, so it is the fix to suggest.
    default = RegistrationParams.__dataclass_fields__[name].default
    if name in _NONE_MEANS:
        return f"Pass another value, or {name}=None ({_NONE_MEANS[name]}, the default)"
    if default is None:
        return f"Pass a positive size in pixels, e.g. {name}=4"
    return f"Pass another value, or leave it out ({name}={default!r}, the default)"
