"""Figures of a registration: what a microscopist looks at to choose parameters and judge it.

Every function returns a :class:`matplotlib.figure.Figure` and draws into the caller's
axes when given ``ax``/``axes``; matplotlib is imported only when a figure is drawn.
Images carry axes in pixels and, when the data are calibrated (``pixel_size`` and
``unit`` attrs), a scale bar in that unit; spectra are in 1/unit or in cycles per frame.

==========================  ==========================================================
:func:`plot_frame`           a frame and its power spectrum
:func:`plot_fourier_mask`    the mask over a frame's FFT, the masked FFT, a correlation
:func:`plot_parameter_sweep` one pair's correlation for several masks / cutoffs
:func:`plot_shift_matrices`  raw (outliers overlaid) or corrected shift matrices
:func:`plot_transitivity`    histogram of transitivity scores with the threshold
:func:`plot_shifts`          final shifts vs frame with uncertainties and bad frames
:func:`plot_average`         the average and its FFT beside a frame and its FFT
==========================  ==========================================================
"""

from daskreg.plot.images import plot_average, plot_fourier_mask, plot_frame, plot_parameter_sweep
from daskreg.plot.matrices import plot_shift_matrices, plot_shifts, plot_transitivity

__all__ = [
    "plot_average",
    "plot_fourier_mask",
    "plot_frame",
    "plot_parameter_sweep",
    "plot_shift_matrices",
    "plot_shifts",
    "plot_transitivity",
]
