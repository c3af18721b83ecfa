"""Array kernels of the registration method (no dask, no I/O).

numpy and scipy throughout; the two loops that numpy cannot express without many passes
over the data (the local-maxima search, :mod:`~daskreg.kernels.maxima`, and the Gaussian
fits, :mod:`~daskreg.kernels.gaussfit`) are compiled with numba. Every kernel takes and
returns numpy arrays.

Each kernel works on one block of frames or one block of pairs, so the Dask
engine in :mod:`daskreg.parallel` calls them unchanged.
"""
