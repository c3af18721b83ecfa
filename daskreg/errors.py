"""Exceptions and warnings raised by daskreg.

Every error a user can cause derives from :class:`DaskregError`, which is also a
:class:`ValueError`, so ``except ValueError`` keeps working for callers that do not
know daskreg. Each message names the problem, the value seen and the fix.
"""

from __future__ import annotations

__all__ = [
    "DaskregError",
    "StackShapeError",
    "FrameAxisError",
    "TooFewFramesError",
    "StackDtypeError",
    "NonFiniteError",
    "ConstantFrameError",
    "ParameterError",
    "FileFormatError",
    "StackFileNotFoundError",
    "CalibrationError",
    "ExternalDataError",
    "OutputPathError",
    "OutputInUseError",
    "RegistrationWarning",
    "CheckpointError",
    "ClusterLostError",
    "WorkerMemoryError",
]


class DaskregError(ValueError):
    """Base class of every error daskreg raises for bad input or parameters."""


class StackShapeError(DaskregError):
    """The stack has the wrong number of dimensions or frames too small for the method."""


class FrameAxisError(DaskregError):
    """The frame axis cannot be told from the shape; pass ``frame_axis=``."""


class TooFewFramesError(DaskregError):
    """Registration needs at least three usable frames."""


class StackDtypeError(DaskregError):
    """The stack is not real-valued numeric data."""


class NonFiniteError(DaskregError):
    """The stack holds NaN or infinite pixels."""


class ConstantFrameError(DaskregError):
    """A frame has no contrast (all pixels equal), so it cannot be correlated."""


class ParameterError(DaskregError):
    """A processing parameter is out of range or inconsistent with the data."""


class FileFormatError(DaskregError):
    """A file cannot be read: unsupported extension, truncated or corrupt content."""


class StackFileNotFoundError(DaskregError, FileNotFoundError):
    """The input path does not exist."""


class CalibrationError(DaskregError):
    """Files read as one stack disagree on the pixel size or its unit."""


class ExternalDataError(DaskregError):
    """The input points to data outside its folder; refused unless ``allow_external=True``.

    HDF5 external links, external storage and virtual datasets, OME-TIFF file names and
    Zarr symlinks that lead out of the input's folder (:mod:`daskreg.io.containment`).
    """


class OutputPathError(DaskregError):
    """An output path cannot be written."""


class OutputInUseError(OutputPathError):
    """An output or checkpoint is held by another run (its lock file names the run)."""


class RegistrationWarning(UserWarning):
    """Something was excluded or could not be measured; the run went on without it."""


class CheckpointError(DaskregError):
    """A checkpoint cannot be resumed: it exists already, or was written for another run."""


class ClusterLostError(RuntimeError):
    """The Dask scheduler stopped, or could no longer be reached, during a run.

    Not a :class:`DaskregError`: nothing is wrong with the input or the parameters, and
    the run can be resumed from its checkpoint once the cluster runs again.
    """


class WorkerMemoryError(DaskregError):
    """The Dask workers have too little memory for a task, or stalled paused at their limit."""
