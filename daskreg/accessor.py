"""xarray accessors: daskreg called from the DataArray or Dataset an analyst holds.

Registered when :mod:`daskreg` is imported, following xarray's extension conventions
("Extending xarray": accessors, not subclasses):

- ``stack.reg.register(**params)`` is :func:`daskreg.register` ``(stack, **params)``;
- ``other.reg.apply(result)`` aligns and averages another channel recorded with the
  registered frames (:meth:`daskreg.RegistrationResult.apply`);
- ``dataset.reg.report(path)`` writes the PDF report of a result's dataset
  (``result.dataset``, or a result opened with ``xarray.open_zarr`` /
  ``xarray.open_dataset``); ``dataset.reg.result`` is the
  :class:`~daskreg.RegistrationResult` around it.

The name ``reg`` is not an attribute of xarray's classes (checked for xarray 2024.6 to
2026.9 by ``tests/test_accessor.py``). Should another package register an accessor
``reg`` too, xarray warns (``AccessorRegistrationWarning``) and the one imported last
wins; ``daskreg.register(stack)`` and the other functions work whatever the accessor.

References
----------
B. H. Savitzky, I. El Baggari, C. B. Clement, et al., "Image registration of low
signal-to-noise cryo-STEM data", Ultramicroscopy 191, 56-65 (2018).
DOI 10.1016/j.ultramic.2018.04.008
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import xarray as xr

from daskreg.api import register
from daskreg.errors import ParameterError
from daskreg.io.results import decode_dataset, is_encoded
from daskreg.result import RegistrationResult, load_result
from daskreg.signatures import forwards_options
from daskreg.summary import RESULT_VARIABLES

__all__ = ["ACCESSOR_NAME", "RegDataArrayAccessor", "RegDatasetAccessor"]

#: Name of the accessors on :class:`xarray.DataArray` and :class:`xarray.Dataset`.
ACCESSOR_NAME = "reg"

ResultSource = RegistrationResult | xr.Dataset | str | os.PathLike


@xr.register_dataarray_accessor(ACCESSOR_NAME)
class RegDataArrayAccessor:
    """``DataArray.reg``: register this stack, or align it with a result's shifts.

    Examples
    --------
    >>> import daskreg
    >>> from daskreg.synthetic import lattice_series
    >>> stack = lattice_series(5, (64, 64), seed=1).to_xarray()
    >>> result = stack.reg.register(mask="hann", n=4, window_radius=4)
    >>> stack.reg.apply(result).dims
    ('y', 'x')
    """

    def __init__(self, xarray_obj: xr.DataArray) -> None:
        self._obj = xarray_obj

    def register(self, **params: Any) -> RegistrationResult:
        """Register this stack: ``daskreg.register(stack, **params)``.

        Parameters
        ----------
        **params
            Any parameter of :func:`daskreg.register` (``help(daskreg.register)``).

        Returns
        -------
        RegistrationResult

        Raises
        ------
        ParameterError
            A misspelt parameter, naming the closest valid one.
        DaskregError
            As :func:`daskreg.register`.
        """
        return register(self._obj, **params)

    @forwards_options(RegistrationResult.apply)
    def apply(self, result: ResultSource, **options: Any) -> xr.DataArray:
        """Align this array with a registration's shifts and average its used frames.

        Parameters
        ----------
        result : RegistrationResult, xarray.Dataset or path
            The registration: a result, its dataset (also as ``xarray.open_zarr`` or
            ``xarray.open_dataset`` read it from a saved result), or the path of a
            result saved as ``.zarr`` or ``.nc``.
        average, frame_axis, scan_axes, crop, save_stack
            As for :meth:`daskreg.RegistrationResult.apply`.

        Returns
        -------
        xarray.DataArray
            As :meth:`daskreg.RegistrationResult.apply`: applied to the registered
            stack, the average equals ``result.average``.

        Raises
        ------
        ParameterError
            ``result`` is none of these, or a dataset that is not a daskreg result; an
            unknown option (naming the closest valid one).
        DaskregError
            As :func:`daskreg.apply_shifts`.
        """
        return as_result(result).apply(self._obj, **options)


@xr.register_dataset_accessor(ACCESSOR_NAME)
class RegDatasetAccessor:
    """``Dataset.reg`` on a registration result's dataset: its result and report.

    Examples
    --------
    A result saved earlier, opened by xarray:

    >>> import tempfile, daskreg, xarray as xr
    >>> from daskreg.synthetic import lattice_series
    >>> result = daskreg.register(lattice_series(5, (64, 64), seed=1).stack, window_radius=4)
    >>> saved = result.save(f"{tempfile.mkdtemp()}/run.zarr")
    >>> xr.open_zarr(saved).reg.result.summary().n_used
    5
    """

    def __init__(self, xarray_obj: xr.Dataset) -> None:
        self._obj = xarray_obj

    @property
    def result(self) -> RegistrationResult:
        """The :class:`~daskreg.RegistrationResult` of this dataset.

        Raises
        ------
        ParameterError
            The dataset is not a daskreg result.
        """
        return as_result(self._obj)

    @forwards_options(RegistrationResult.save_report)
    def report(self, path: str | os.PathLike, **options: Any) -> Path:
        """Write the registration's PDF report (:func:`daskreg.report.save_report`).

        Parameters
        ----------
        path : path-like
            The PDF to write.
        png_dir : path-like, optional
            Also write one PNG per page into this folder.
        stack : array_like or xarray.DataArray, optional
            The registered frames, for the parameter-sweep page.

        Returns
        -------
        pathlib.Path
            ``path``, once the PDF is complete.

        Raises
        ------
        ParameterError
            The dataset is not a daskreg result.
        OutputPathError
            ``path`` cannot be written.
        """
        return self.result.save_report(path, **options)


def as_result(source: ResultSource) -> RegistrationResult:
    """A :class:`~daskreg.RegistrationResult` from a result, its dataset or its file.

    Parameters
    ----------
    source : RegistrationResult, xarray.Dataset or path
        A dataset as ``xarray.open_zarr``/``open_dataset`` read a saved result is
        decoded as :func:`daskreg.load_result` does (without the checksum test, which
        needs the file: pass the path for it).

    Returns
    -------
    RegistrationResult
        ``source`` itself, the result read from the file, or one around the dataset
        (decoded if it was read from a file, else as it is, not copied).

    Raises
    ------
    ParameterError
        ``source`` is of another type, or a dataset without a result's variables.
    """
    if isinstance(source, RegistrationResult):
        return source
    if isinstance(source, str | os.PathLike):
        return load_result(source)
    if not isinstance(source, xr.Dataset):
        raise ParameterError(
            f"expected a registration result, got a {type(source).__name__}; pass the "
            "RegistrationResult of daskreg.register, its .dataset, or the path of a result "
            "saved with result.save('run.zarr')"
        )
    missing = [name for name in RESULT_VARIABLES if name not in source]
    if "params" not in source.attrs:
        missing.append("attrs['params']")
    if missing:
        raise ParameterError(
            f"this Dataset is not a daskreg result: it lacks {missing} (it has "
            f"{sorted(map(str, source.data_vars))[:8]}); call .reg on result.dataset, or on "
            "a saved result opened whole (daskreg.load_result(path).dataset)"
        )
    return RegistrationResult(decode_dataset(source) if is_encoded(source) else source)
