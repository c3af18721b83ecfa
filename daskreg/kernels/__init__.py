"""Array kernels of the registration method (no dask, no I/O).

numpy and scipy throughout; the loops that numpy cannot express without many passes over
the data are compiled with numba: the local-maxima search (:mod:`~daskreg.kernels.maxima`),
the Gaussian fits (:mod:`~daskreg.kernels.gaussfit`), the band windows
(:mod:`~daskreg.kernels.band`) and the band products of pairs
(:func:`~daskreg.kernels.correlate.pair_spectra`). The band path's inverse transforms run
on ducc0 where installed (:mod:`~daskreg.kernels._fft`). Every kernel takes and returns
numpy arrays.

Each kernel works on one block of frames or one block of pairs, so the Dask
engine in :mod:`daskreg.parallel` calls them unchanged.
"""
