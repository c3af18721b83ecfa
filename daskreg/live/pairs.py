"""Where a live registration measures each new frame's pairs: here, or on a Dask cluster.

:class:`LocalPairs` keeps the spectra of the last ``band`` frames in a ring and
correlates the new frame with them in this process. :class:`ClusterPairs` keeps them on
the cluster instead: each new spectrum is scattered once, and the frame's pairs run as
one task (``live-pairs-<frame>`` on the dashboard) on the worker that holds the most of
them; only the peaks come back. Both call the pair stage's own
:func:`~daskreg.method.pairs.measure_pairs` on the same spectra in the same order, so
they give the same numbers.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from daskreg.kernels.peak_result import PeakResult
from daskreg.method.pairs import PairSetup, measure_pairs

__all__ = ["ClusterPairs", "LocalPairs", "pair_work"]


class LocalPairs:
    """The pairs of each new frame with the ``band`` frames before it, in this process."""

    def __init__(self, band: int, setup: PairSetup) -> None:
        self.band, self.setup = band, setup
        self._spectra: np.ndarray | None = None

    def measure(self, n: int, spectrum: np.ndarray) -> PeakResult:
        """Frame ``n``'s pairs with frames ``n - band ... n - 1`` (in that order).

        ``spectrum`` is frame ``n``'s, shape ``(1, ...)``; it is kept for later frames.
        """
        if self._spectra is None:
            self._spectra = np.empty((self.band, *spectrum.shape[1:]), spectrum.dtype)
        earlier = np.arange(max(0, n - self.band), n)
        found = (
            measure_pairs(
                self._spectra, spectrum, earlier % self.band, np.zeros(len(earlier), int),
                self.setup,
            )
            if len(earlier)
            else PeakResult.concatenate([])
        )  # fmt: skip
        self._spectra[n % self.band] = spectrum[0]
        return found


def _measure_task(spectrum: np.ndarray, setup: PairSetup, *earlier: np.ndarray) -> PeakResult:
    stacked = np.concatenate(earlier)
    k = len(stacked)
    return measure_pairs(stacked, spectrum, np.arange(k), np.zeros(k, int), setup)


class ClusterPairs:
    """:class:`LocalPairs` with the spectra and the pair work on a Dask cluster.

    Parameters
    ----------
    band : int
    setup : PairSetup
    client : distributed.Client
    """

    def __init__(self, band: int, setup: PairSetup, client: Any) -> None:
        self.band, self.client = band, client
        # Sent once to every worker, not with each task (its masks are the large part).
        self._setup = client.scatter(setup, broadcast=True, hash=False)
        self._spectra: deque[Any] = deque(maxlen=band)

    def measure(self, n: int, spectrum: np.ndarray) -> PeakResult:
        """As :meth:`LocalPairs.measure`; waits for the task's peaks."""
        new = self.client.scatter(spectrum, hash=False)
        found = PeakResult.concatenate([])
        if self._spectra:
            task = self.client.submit(
                _measure_task, new, self._setup, *self._spectra, key=f"live-pairs-{n}",
                pure=False,
            )  # fmt: skip
            found = task.result()
            del task
        self._spectra.append(new)
        return found

    def close(self) -> None:
        """Release the spectra held on the cluster."""
        self._spectra.clear()
        self._setup = None


def pair_work(band: int, setup: PairSetup, client: Any | None) -> LocalPairs | ClusterPairs:
    """:class:`ClusterPairs` on ``client``, or :class:`LocalPairs` without one."""
    return LocalPairs(band, setup) if client is None else ClusterPairs(band, setup, client)
