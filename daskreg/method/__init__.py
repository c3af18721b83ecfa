"""The steps of the method on in-memory arrays, shared by every engine.

The numpy engine (:mod:`daskreg.method.local`, behind :class:`daskreg.Registration`)
and the Dask engine (:mod:`daskreg.parallel`) both call these; nothing here knows
where the frames come from. One job per module:

- :mod:`~daskreg.method.masks`: the Fourier mask of the parameters.
- :mod:`~daskreg.method.screening`: frames that cannot be correlated, the series'
  scale and hot pixels, the frames every engine correlates.
- :mod:`~daskreg.method.pairs`: which pairs, their spectra and shifts, split halves.
- :mod:`~daskreg.method.measurements`: the pair stage's outcome as matrices.
- :mod:`~daskreg.method.bad_frames`: statistics that find bad frames.
- :mod:`~daskreg.method.analyse`: outliers, bad frames and the final shifts.
- :mod:`~daskreg.method.local`: the numpy engine, the whole stack in memory.

This package imports none of its modules: import them by name.
"""
