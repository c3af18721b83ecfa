"""daskreg's HyperSpy signal classes, registered by ``hyperspy_extension.yaml``.

HyperSpy imports this module only when a signal of type ``"STEM_series"`` is made
(``s.set_signal_type("STEM_series")``, ``hs.load(path, signal_type="STEM_series")``); it
imports HyperSpy, so daskreg itself never imports it.
"""

from __future__ import annotations

from typing import Any

from hyperspy.signals import LazySignal2D, Signal2D

from daskreg import hyperspy as _route
from daskreg.signatures import forwards_options

__all__ = ["STEMSeries", "LazySTEMSeries"]


class STEMSeries(Signal2D):
    """A series of STEM images of one area (frames on the navigation axis).

    A ``Signal2D`` with a :meth:`register` method; every ``Signal2D`` method works as
    before. Made from any image stack by ``s.set_signal_type("STEM_series")``.
    """

    _signal_type = _route.SIGNAL_TYPE

    @forwards_options(_route.register)
    def register(self, **options: Any) -> Any:
        """Register the series with daskreg (:func:`daskreg.hyperspy.register`).

        Parameters
        ----------
        inplace, crop, fill_value, expand, **params
            As for :func:`daskreg.hyperspy.register`.

        Returns
        -------
        STEMSeries or LazySTEMSeries, or None
            The aligned series with the shifts in ``metadata.daskreg``; None with
            ``inplace=True``.
        """
        return _route.register(self, **options)


class LazySTEMSeries(STEMSeries, LazySignal2D):
    """A lazy :class:`STEMSeries` (data in a dask array)."""
