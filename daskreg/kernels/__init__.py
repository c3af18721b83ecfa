"""Pure numpy kernels of the registration method (no dask, no I/O).

Each kernel works on one block of frames or one block of pairs, so the Dask
engine in :mod:`daskreg.parallel` calls them unchanged.
"""
