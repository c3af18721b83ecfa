"""The reference package's ``imstack`` interface on top of daskreg.

An existing rigidregistration notebook runs by changing its import::

    from daskreg.compat import imstack      # was: from rigidregistration import stackregistration
    s = imstack(stack)                       # (rows, cols, frames), as the reference takes it
    s.getFFTs()
    s.makeFourierMask(mask="bandpass", n=4)
    s.findImageShifts(correlationType="cc", findMaxima="gf")
    s.get_outliers(threshold=10)
    s.make_corrected_Rij()
    s.get_averaged_image()
    s.save("average.tif")

Names follow the reference: its axis 0 (rows) is called "x", so ``X_ij`` and
``shifts_x`` are ROW shifts (daskreg's y) and ``Y_ij``/``shifts_y`` column shifts.
``shifts_x``/``shifts_y`` keep the reference's sign: the correction applied to each
frame (row mean of the corrected matrix), i.e. minus daskreg's displacement. The
computations are daskreg's, with the reference's defects fixed (see METHOD.md).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from daskreg.kernels.correlate import hann_window
from daskreg.params import REFERENCE
from daskreg.registration import Registration
from daskreg.result import RegistrationResult

__all__ = ["imstack"]


class imstack:  # noqa: N801 - the reference's class name, kept so notebooks run unchanged
    """A stack of frames with the reference's methods.

    Parameters
    ----------
    image_stack : ndarray, shape (nx, ny, nz)
        Frames on the LAST axis (rows, columns, frames), as the reference takes them.
    """

    def __init__(self, image_stack: np.ndarray) -> None:
        image_stack = np.asarray(image_stack)
        self.imstack = image_stack
        self.nx, self.ny, self.nz = image_stack.shape
        self.nz_min, self.nz_max = 0, self.nz
        self._reg = Registration(
            np.moveaxis(image_stack, -1, 0),
            # The reference's own defaults: nothing chosen from the data.
            **{**REFERENCE, "find_maxima": "pixel", "outliers": None},
        )
        self._result: RegistrationResult | None = None
        self.bad_images: list[int] = []

    # -- spectra and masks ---------------------------------------------------------------
    def getFFTs(self) -> None:
        """Compute the frame spectra (done lazily by daskreg; kept for the call order)."""
        frames = self._reg.frames
        self.fftstack = np.moveaxis(
            np.fft.fft2(
                (frames - frames.mean(axis=(1, 2), keepdims=True))
                * hann_window((self.nx, self.ny))
            ),
            0,
            -1,
        )

    def makeFourierMask(self, mask: str = "bandpass", n: float = 4) -> None:
        """Radial mask: bandpass, lowpass, hann, hamming, blackman, gaussian or none."""
        self.mask_params = {"masktype": mask, "n": n}
        self._reg.set_mask(mask, n)

    def makeFourierMask_eg(self, n1: float, n2: float, theta: float) -> None:
        """Elliptical Gaussian mask; ``theta`` (radians) from the row axis, as the reference."""
        self.mask_params = {
            "masktype": "elliptical gaussian", "n1": n1, "n2": n2, "theta": np.degrees(theta)
        }
        # The reference measures theta from its first axis (rows = daskreg's y) towards
        # columns; daskreg measures from x towards y: the mirror angle.
        self._reg.set_mask("elliptical", n1=n1, n2=n2, theta=math.pi / 2 - theta)

    def makeUserDefinedFourierMask(self, mask: np.ndarray) -> None:
        """User mask with zero frequency at the array centre, shape (nx, ny)."""
        self.mask_params = {"masktype": "User defined"}
        self._reg.set_mask(np.asarray(mask))

    @property
    def mask_fourierspace(self) -> np.ndarray:
        """The mask in FFT order (zero frequency at [0, 0]), as the reference stores it."""
        return np.fft.ifftshift(self._reg.fourier_mask.values)

    # -- shifts --------------------------------------------------------------------------
    def setGaussianFitParams(
        self, num_peaks: int = 5, sigma_guess: float = 2, window_radius: int = 6
    ) -> None:
        """Parameters of the ``gf`` maximum finder."""
        self._reg.set_params(
            num_peaks=num_peaks, sigma_guess=sigma_guess, window_radius=window_radius
        )

    def setCoMParams(self, num_iter: int = 2, min_window_frac: float = 3) -> None:
        """Parameters of the ``com`` maximum finder."""
        self._reg.set_params(num_iter=num_iter, min_window_frac=min_window_frac)

    def findImageShifts(
        self, correlationType: str = "cc", findMaxima: str = "pixel", verbose: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correlate all pairs; returns ``(X_ij, Y_ij)`` (row and column shift matrices)."""
        self.correlation_type = correlationType
        self.find_maxima_method = findMaxima
        matrix = self._reg.find_shifts(correlation=correlationType, find_maxima=findMaxima)
        if verbose:
            print(f"Correlated {self.nz * (self.nz - 1) // 2} image pairs")
        self.X_ij = matrix.values[..., 0].copy()
        self.Y_ij = matrix.values[..., 1].copy()
        return self.X_ij, self.Y_ij

    def set_nz(self, nz_min: int, nz_max: int) -> None:
        """Use frames ``nz_min <= i < nz_max`` only."""
        self.nz_min, self.nz_max = nz_min, nz_max
        self._reg.set_frames(nz_min, nz_max)

    def set_bad_images(self, bad_images: list[int]) -> None:
        """Leave these frames out of the average."""
        self.bad_images = list(bad_images)
        self._reg.set_bad_frames(self.bad_images)

    def get_outliers(self, threshold: float, maxpaths: int = 5) -> None:
        """Outliers by transitivity: pairs scoring ``threshold`` pixels or more."""
        self._reg.find_outliers("transitivity", threshold=threshold, maxpaths=maxpaths)
        self._sync_masks()

    def get_outliers_NN(self, max_shift: float) -> None:
        """Outliers by nearest-neighbour smoothness of the shift matrices."""
        self.max_shift = max_shift
        self._reg.find_outliers("nn", max_shift=max_shift)
        self._sync_masks()

    def _sync_masks(self) -> None:
        analysis = self._reg.analysis
        self.outlier_mask = ~analysis.outliers
        self.Rij_mask = analysis.valid.copy()

    def make_corrected_Rij(self) -> None:
        """Refill outliers from transitivity (always terminates)."""
        corrected = self._reg.correct().values
        self.X_ij_c, self.Y_ij_c = corrected[..., 0].copy(), corrected[..., 1].copy()
        used = self._reg.analysis.used
        self.Rij_mask_c = np.outer(used, used)

    def get_imshifts(self) -> None:
        """Per-frame corrections ``shifts_x`` (rows) and ``shifts_y`` (columns)."""
        analysis = self._reg.analysis
        self.shifts_x = -analysis.shifts[:, 0]
        self.shifts_y = -analysis.shifts[:, 1]
        self.bad_images = sorted(int(k) for k in np.flatnonzero(~analysis.used))

    def get_averaged_image(self, get_shifts: bool = True, correct_Rij: bool = True) -> None:
        """Shift, average and crop; sets ``average_image`` and ``cropped_image``."""
        if correct_Rij:
            self.make_corrected_Rij()
        if get_shifts:
            self.get_imshifts()
        self._result = self._reg.average()
        self.average_image = self._result.average_full.values
        self.crop_image()

    def crop_image(self) -> None:
        """Set ``xmin, xmax`` (rows) and ``ymin, ymax`` (columns); positive slice ends."""
        bounds = self._result.crop
        self.xmin, self.xmax = bounds.ymin, bounds.ymax
        self.ymin, self.ymax = bounds.xmin, bounds.xmax
        self.cropped_image = self.average_image[self.xmin : self.xmax, self.ymin : self.ymax]

    @property
    def result(self) -> RegistrationResult:
        """The daskreg result behind this object (after :meth:`get_averaged_image`)."""
        if self._result is None:
            self.get_averaged_image()
        return self._result

    # -- outputs -------------------------------------------------------------------------
    def save(self, fout: str | os.PathLike, crop: bool = True) -> None:
        """Save the average as float32 TIFF (``.tif`` appended if missing)."""
        if crop != bool(self.result.dataset.attrs["crop"]):
            self._reg.set_params(crop=crop)
            self._result = self._reg.average()
        self.result.save_tif(fout)

    def save_report(self, fout: str | os.PathLike) -> None:
        """Save the PDF report (``.pdf`` appended if missing)."""
        path = str(fout) if str(fout).lower().endswith(".pdf") else f"{fout}.pdf"
        self.result.save_report(path)

    # -- figures (daskreg.plot); each returns its Figure --------------------------------
    def show(self, crop: bool = True, returnfig: bool = True) -> Any:
        """The average and its FFT beside a frame and its FFT."""
        from daskreg.plot import plot_average

        return plot_average(self.result)

    def show_Fourier_mask(self, i: int = 0, j: int = 1, returnfig: bool = True) -> Any:
        """The mask over frame ``i``'s FFT, the masked FFT and the correlation of (i, j)."""
        from daskreg.plot import plot_fourier_mask

        return plot_fourier_mask(self._reg, i, j)

    def show_Fourier_mask_simple(self, i: int = 0, returnfig: bool = True) -> Any:
        """The mask over frame ``i``'s FFT (with the correlation of ``i`` and the next)."""
        return self.show_Fourier_mask(i, (i + 1) % self.nz)

    def show_Rij(self, Xmax: Any = None, Ymax: Any = None, mask: bool = True,
                 returnfig: bool = True) -> Any:
        """The raw shift matrices, outlier pairs painted over."""
        return self._matrices(corrected=False)

    def show_Rij_c(self, Xmax: Any = None, Ymax: Any = None, mask: bool = True,
                   returnfig: bool = True) -> Any:
        """The corrected shift matrices, refilled pairs marked."""
        return self._matrices(corrected=True)

    def _matrices(self, corrected: bool) -> Any:
        from daskreg.plot import plot_shift_matrices

        return plot_shift_matrices(self._reg, corrected=corrected)

    def show_report(self) -> list:
        """The reference report's figures: average, raw and corrected matrices."""
        return [self.show(), self.show_Rij(), self.show_Rij_c()]
