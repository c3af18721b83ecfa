"""The compiled kernels against their pure-Python source (``NUMBA_DISABLE_JIT=1``).

numba compiles the Python source of each kernel; a kernel that relies on numba's
typing (integer overflow, float32 accumulators, in-place aliasing) can compute
something else than the code reads. Run once without compilation, in a subprocess
(the switch is read at import), on small inputs, the kernels must give the same
results. Coverage tools see only this pure-Python path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest

import daskreg
from daskreg.kernels import gaussfit
from daskreg.synthetic import lattice_series
from tests.conftest import gaussian_windows

ROOT = Path(__file__).resolve().parents[2]
FIND_MAXIMA = ("gf", "upsampled", "com", "pixel")


def _results() -> dict[str, np.ndarray]:
    """Results of the compiled kernels on small inputs: the Gaussian fit alone (a
    warm-started block) and whole registrations, which run every kernel of the
    correlation, the peak search and the fits, full and banded."""
    out = {}
    params, ok = gaussfit.fit_gaussians(
        gaussian_windows(4 * gaussfit.WARM_SAMPLE + 8, seed=11, noise=0.1, radius=4)[0], 2.0
    )
    out["fit_params"], out["fit_ok"] = params, ok
    series = lattice_series(5, (64, 64), seed=1)
    with warnings.catch_warnings():
        # A 5-frame series may flag frames or pairs: the same on both paths.
        warnings.simplefilter("ignore")
        for method in FIND_MAXIMA:
            for band in (None, 2):
                result = daskreg.register(series.stack, find_maxima=method, band=band)
                out[f"{method}_{band}_shifts"] = result.shifts.values
                out[f"{method}_{band}_matrix"] = result.shift_matrix.values
    return out


def _dump(path: str) -> None:
    """Entry point of the subprocess: the kernels must not be compiled there."""
    if not numba.config.DISABLE_JIT or hasattr(gaussfit._levenberg_marquardt, "signatures"):
        raise SystemExit("NUMBA_DISABLE_JIT did not take effect")
    np.savez(path, **_results())


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_pure_python_kernels_give_the_compiled_results(tmp_path):
    path = tmp_path / "pure.npz"
    code = f"from tests.kernels.test_pure_python import _dump; _dump({str(path)!r})"
    done = _run(["-c", code])
    assert done.returncode == 0, done.stderr[-3000:]
    pure = np.load(path)
    compiled = _results()
    assert set(pure.files) == set(compiled)
    np.testing.assert_array_equal(pure["fit_ok"], compiled["fit_ok"])
    for name, value in compiled.items():
        # Compiled and interpreted exp round differently in the last bit; the fits
        # then stop at the same minimum a little apart (measured: 2e-9 for the fit
        # parameters, 7e-8 px for the shifts; the other methods agree exactly). A real
        # difference of the paths (a wrong type, a wrong loop) is far larger.
        np.testing.assert_allclose(pure[name], value, rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("module", ["test_gaussfit.py", "test_maxima.py"])
def test_kernel_tests_pass_without_compilation(module):
    # Not test_correlate_peaks.py: interpreted, frame_spectra of float32 frames sums in
    # float32 (NumPy 2 keeps float32 + Python float in float32; numba types the sum
    # float64), 1e-3 off, and a fit's overflowing exp warns where compiled it is inf.
    done = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/kernels/{module}"])
    assert done.returncode == 0, done.stdout[-3000:]
