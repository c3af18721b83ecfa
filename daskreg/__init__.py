"""daskreg: rigid registration of atomic-resolution STEM image series."""

__version__ = "0.1.0"

from daskreg.api import Registration, register
from daskreg.io.average_tif import read_average_tif
from daskreg.kernels.masks import fourier_grids
from daskreg.result import RegistrationResult

__all__ = [
    "Registration",
    "RegistrationResult",
    "fourier_grids",
    "read_average_tif",
    "register",
]
