"""What a registration result holds and what it says, each defined once.

:data:`RESULT_VARIABLES` and :data:`EXAMPLE_VARIABLES` list the variables of a result's
dataset (``RegistrationResult.dataset``): what identifies a saved result, what the
report and the figures need. :func:`summarize` reads a result's dataset into one
:class:`ResultSummary` (frames used and left out, outliers, drift, uncertainty,
threshold, crop, timings); the command line, the report and the result's ``repr`` all
print from it. This module knows datasets only, so that the I/O, the result class and
the figures can all use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from daskreg.kernels.layout import PairLayout, pair_layout
from daskreg.kernels.shift import CropBounds
from daskreg.params import RegistrationParams

__all__ = [
    "EXAMPLE_VARIABLES",
    "RESULT_VARIABLES",
    "STAGES",
    "TOTAL",
    "ResultSummary",
    "layout_of",
    "summarize",
]

#: Variables every result holds (see :class:`daskreg.RegistrationResult` for their dims).
RESULT_VARIABLES = (
    "shifts",
    "shift_uncertainty",
    "bad_frames",
    "shift_matrix",
    "shift_matrix_corrected",
    "outliers",
    "measured",
    "fit_ok",
    "transitivity_score",
    "correlation_quality",
    "average_full",
    "coverage",
)
#: Variables of the example views (one frame, its mask, one correlation), stored when
#: the engine kept them; the report's frame and mask pages need them.
EXAMPLE_VARIABLES = ("example_frame", "fourier_mask", "example_correlation")

#: The stages both engines time, in order (``attrs["timings"]`` of a result, seconds):
#: reading and screening the frames, measuring the pairs, the outlier test and shifts
#: (the solve), the registered average.
STAGES = ("load", "pairs", "solve", "average")
#: Key of the whole registration's wall time in ``attrs["timings"]``: each engine
#: records it once (the Dask engine's includes starting the cluster and building graphs,
#: so it exceeds the sum of the stages).
TOTAL = "total"
# Results saved before the stages had one set of names.
_OLD_NAMES = {"outliers_and_shifts": "solve"}


@dataclass(frozen=True)
class ResultSummary:
    """A registration in numbers.

    Attributes
    ----------
    n_frames : int
        Frames in the stack, used or not.
    frame_shape : (ny, nx)
    n_used : int
        Frames averaged.
    bad_frames : dict of int to str
        Frames left out for a reason (NaN, blank, listed, outlier-ridden, ...).
    outside_range : tuple of int
        Frames not used because they lie outside the ``frames`` range.
    frame_range : (start, stop)
        The frame range used (all frames when none was given).
    n_pairs : int
        Pairs measured, each unordered pair counted once.
    n_outliers : int
        Measured pairs rejected as outliers.
    n_failed_fits : int
        Measured pairs whose maximum could not be located (fit failed).
    outlier_test : str or None
        ``"robust"``, ``"transitivity"``, ``"nn"`` or None (no test).
    threshold : float or None
        Robust cut-off (for a pair of typical quality) or transitivity threshold used,
        pixels.
    threshold_chosen : bool
        True when the threshold was chosen from the data (``threshold=None``).
    hops_corrected : int
        Pairs found off by a lattice translation and corrected (robust solve).
    pair_scatter : float
        Per-axis scatter of the consistent pairs' residuals, pixels (NaN if unknown).
    reliable : bool
        False when the data could not support the registration (see the warning).
    shift_min, shift_max : (dy, dx)
        Extremes of the shifts of the used frames, pixels.
    uncertainty : (dy, dx)
        Median one-sigma shift uncertainty of the used frames, pixels (NaN if unknown).
    crop : CropBounds
        Region of the average every used frame covers.
    cropped : bool
        Whether the average is cut to ``crop`` (the ``crop`` parameter).
    timings : dict of str to float
        Seconds per stage of :data:`STAGES` recorded (``"load"``, ``"pairs"``,
        ``"solve"``, ``"average"``), in that order; empty when not recorded.
    total_seconds : float or None
        Wall time of the registration as the engine recorded it (:data:`TOTAL`), else
        the sum of the stages; not one of ``timings``.
    resumed : (int, int) or None
        Pair blocks reused from a checkpoint, of all blocks, for a resumed run.
    params : RegistrationParams
        The processing parameters.
    """

    n_frames: int
    frame_shape: tuple[int, int]
    n_used: int
    bad_frames: dict[int, str]
    outside_range: tuple[int, ...]
    frame_range: tuple[int, int]
    n_pairs: int
    n_outliers: int
    n_failed_fits: int
    outlier_test: str | None
    threshold: float | None
    threshold_chosen: bool
    hops_corrected: int
    pair_scatter: float
    reliable: bool
    shift_min: tuple[float, float]
    shift_max: tuple[float, float]
    uncertainty: tuple[float, float]
    crop: CropBounds
    cropped: bool
    timings: dict[str, float]
    total_seconds: float | None
    resumed: tuple[int, int] | None
    params: RegistrationParams

    @property
    def drift_range(self) -> tuple[float, float]:
        """Peak-to-peak shift of the used frames ``(dy, dx)``, pixels."""
        return (self.shift_max[0] - self.shift_min[0], self.shift_max[1] - self.shift_min[1])


def layout_of(dataset: xr.Dataset) -> PairLayout:
    """How a result stores its pair matrices.

    Dense, dims ``(frame_i, frame_j)``, or a band, dims ``(frame_i, offset)``.
    """
    n_frames = dataset.sizes["frame_i"]
    if "offset" in dataset.dims:
        return pair_layout(n_frames, int(dataset["offset"].values.max()))
    return pair_layout(n_frames)


def summarize(dataset: xr.Dataset) -> ResultSummary:
    """The summary of a result's dataset (``RegistrationResult.summary()``).

    Parameters
    ----------
    dataset : xarray.Dataset
        Holding :data:`RESULT_VARIABLES` and the attrs a registration writes.

    Returns
    -------
    ResultSummary
    """
    attrs = dataset.attrs
    params = RegistrationParams.from_dict(json.loads(attrs["params"]))
    bad = dataset["bad_frames"].values
    used = ~bad
    reasons = {int(k): v for k, v in json.loads(attrs["bad_frame_reasons"]).items()}
    upper = layout_of(dataset).upper()
    measured = dataset["measured"].values & upper
    shifts = dataset["shifts"].values[used]
    with np.errstate(all="ignore"):
        sigma = dataset["shift_uncertainty"].values[used]
        uncertainty = np.nanmedian(sigma, axis=0) if np.isfinite(sigma).any() else (np.nan,) * 2
    threshold = attrs.get("threshold_used")
    timings, total = _timings(json.loads(attrs.get("timings", "{}")))
    return ResultSummary(
        n_frames=int(bad.size),
        frame_shape=(int(dataset.sizes["y"]), int(dataset.sizes["x"])),
        n_used=int(used.sum()),
        bad_frames=dict(sorted(reasons.items())),
        outside_range=tuple(int(k) for k in np.flatnonzero(bad) if int(k) not in reasons),
        frame_range=tuple(params.frames) if params.frames else (0, int(bad.size)),
        n_pairs=int(measured.sum()),
        n_outliers=int((dataset["outliers"].values & upper).sum()),
        n_failed_fits=int((measured & ~dataset["fit_ok"].values).sum()),
        outlier_test=params.outliers,
        threshold=float(threshold) if _is_number(threshold) else None,
        threshold_chosen=params.threshold is None,
        hops_corrected=int(attrs.get("hops_corrected", 0)),
        pair_scatter=float(attrs.get("pair_scatter", np.nan)),
        reliable=bool(int(attrs.get("reliable", 1))),
        shift_min=_pair(shifts.min(axis=0)),
        shift_max=_pair(shifts.max(axis=0)),
        uncertainty=_pair(uncertainty),
        crop=CropBounds(*(int(attrs[k]) for k in CropBounds._fields)),
        cropped=bool(attrs.get("crop", 1)),
        timings=timings,
        total_seconds=total,
        resumed=(
            (int(attrs["pair_blocks_reused"]), int(attrs["pair_blocks"]))
            if "pair_blocks_reused" in attrs
            else None
        ),
        params=params,
    )


def _timings(recorded: dict[str, Any]) -> tuple[dict[str, float], float | None]:
    """The stages in :data:`STAGES` order, and the total (recorded once, else their sum)."""
    stages = {_OLD_NAMES.get(k, k): float(v) for k, v in recorded.items()}
    timings = {stage: stages[stage] for stage in STAGES if stage in stages}
    total = stages.get(TOTAL, sum(timings.values()) if timings else None)
    return timings, total


def _pair(values: Any) -> tuple[float, float]:
    return float(values[0]), float(values[1])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)
