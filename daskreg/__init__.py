"""daskreg: rigid registration of atomic-resolution STEM image series."""

# Registers the xarray accessors DataArray.reg and Dataset.reg.
from daskreg import accessor as accessor
from daskreg._version import __version__ as __version__
from daskreg.api import register, register_series
from daskreg.apply import align_stack, apply_shifts
from daskreg.io import ingest, open_stack
from daskreg.io.average_tif import read_average_tif
from daskreg.kernels.masks import fourier_grids
from daskreg.live import LiveRegistration
from daskreg.parallel.fourd import register_4dstem
from daskreg.planning import RegistrationPlan, plan
from daskreg.registration import Registration
from daskreg.result import RegistrationResult, load_result, save_result

__all__ = [
    "LiveRegistration",
    "Registration",
    "RegistrationPlan",
    "RegistrationResult",
    "align_stack",
    "apply_shifts",
    "fourier_grids",
    "ingest",
    "load_result",
    "open_stack",
    "plan",
    "read_average_tif",
    "register",
    "register_4dstem",
    "register_series",
    "save_result",
]
