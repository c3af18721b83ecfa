"""Load daskreg's compiled kernels before the work that needs them.

numba compiles a kernel at its first call and keeps it in its cache (``cache=True``):
the first registration on a machine compiles for seconds, later ones load the cache.
A Dask worker that compiles inside its tasks grows by ~115 MiB while they run, and one
that loads the cache by ~60 MiB (measured, 2 workers, 6 frames of 64^2); both are
memory the worker's limit must hold beside the tasks. :func:`warm_kernels` runs a tiny
registration, so that the kernels are in the cache (and in this process) before the
memory is measured or the tasks start.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["warm_kernels"]

_warm = False


def warm_kernels() -> None:
    """Compile (or load from numba's cache) the kernels every registration calls.

    Registrations of 17 synthetic 64^2 frames, all pairs and a band, in this process:
    the pair measurement, the solve, the refinement and the average. Once per process.
    """
    global _warm
    if _warm:
        return
    from daskreg.registration import Registration
    from daskreg.synthetic import lattice_series

    # 17 frames: 136 pairs, enough for the Gaussian fits' warm start (4 x WARM_SAMPLE
    # windows in a block); float32 and float64 frames, as stores and arrays come.
    frames = lattice_series(17, (64, 64), dose=50, seed=0).stack
    with warnings.catch_warnings():
        # A tiny series draws warnings about itself that nobody asked for.
        warnings.simplefilter("ignore")
        for dtype, band in ((np.float32, None), (np.float64, 3)):
            Registration(frames.astype(dtype), band=band).run()
    _warm = True
