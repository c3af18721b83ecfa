"""What a figure can be drawn from: a result, a step-by-step Registration, or a stack.

Results and registrations are recognised by what they hold (:class:`ResultLike`,
:class:`RegistrationLike`), not by their class: the figures sit above the result and
the API in the import order, and importing either from here would close a circle
through ``RegistrationResult.save_report``.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from daskreg.errors import ParameterError
from daskreg.params import RegistrationParams
from daskreg.stack import as_stack
from daskreg.summary import EXAMPLE_VARIABLES, ResultSummary, layout_of

__all__ = [
    "EXAMPLE_VARIABLES",
    "RegistrationLike",
    "ResultLike",
    "Source",
    "as_result",
    "as_stack_and_params",
    "example_pair",
    "frame_image",
    "has_examples",
    "layout_of",
]


@runtime_checkable
class ResultLike(Protocol):
    """Anything holding a registration's outcome, as :class:`daskreg.RegistrationResult`."""

    @property
    def dataset(self) -> xr.Dataset:
        """The labelled variables and attrs of the result."""

    @property
    def average(self) -> xr.DataArray:
        """The (cropped) average."""

    def summary(self) -> ResultSummary:
        """The registration in numbers."""


@runtime_checkable
class RegistrationLike(Protocol):
    """Anything with ``.stack``, ``.params`` and ``.average()``: a :class:`daskreg.Registration`."""

    stack: xr.DataArray
    params: RegistrationParams

    def average(self) -> ResultLike:
        """Run the remaining steps and return the result."""


# What every figure of a registration takes.
Source = ResultLike | RegistrationLike


def as_result(source: Source) -> ResultLike:
    """The result itself, or a Registration's (running its remaining steps)."""
    # A result is tested first: it has .params and .average too, but no .stack.
    if isinstance(source, ResultLike):
        return source
    if isinstance(source, RegistrationLike):
        return source.average()
    raise ParameterError(
        f"expected a RegistrationResult (from daskreg.register) or a daskreg.Registration; "
        f"got {type(source).__name__}"
    )


def as_stack_and_params(
    source: Any, params: RegistrationParams | None = None
) -> tuple[xr.DataArray, RegistrationParams]:
    """The frames and parameters of a Registration, or of a stack with ``params``."""
    if isinstance(source, ResultLike):
        raise ParameterError(
            "a RegistrationResult holds no frames; pass the stack it was registered from "
            "(array, DataArray or path) or a daskreg.Registration"
        )
    if isinstance(source, RegistrationLike):
        return source.stack, params if params is not None else source.params
    return as_stack(source), params if params is not None else RegistrationParams()


def has_examples(result: ResultLike) -> bool:
    """True when the result stores the example frame, mask and correlation."""
    return all(name in result.dataset for name in EXAMPLE_VARIABLES)


def example_pair(result: ResultLike) -> tuple[int, int]:
    """The frames ``(i, j)`` whose correlation the result stores.

    Raises
    ------
    ParameterError
        The result was built without example views.
    """
    if not has_examples(result):
        missing = [name for name in EXAMPLE_VARIABLES if name not in result.dataset]
        raise ParameterError(
            f"this result does not store {missing}: the engine that made it kept no example "
            "views; draw them from the frames instead, e.g. plot_fourier_mask(Registration(stack))"
        )
    i, j = json.loads(result.dataset.attrs["example_pair"])
    return int(i), int(j)


def frame_image(stack: xr.DataArray, frame: int) -> np.ndarray:
    """One frame as float64, with a clear error for an index out of range."""
    n_frames = stack.sizes["frame"]
    if not -n_frames <= frame < n_frames:
        raise ParameterError(
            f"frame {frame} is out of range for a stack of {n_frames} frames; "
            f"pick 0..{n_frames - 1}"
        )
    return np.asarray(stack.isel(frame=frame).values, dtype=np.float64)
