"""Every example in the package's docstrings runs and shows what it says.

Run as ``pytest --doctest-modules daskreg`` in a subprocess, so the examples see the
project's pytest configuration (warnings from daskreg are errors) and a new example
anywhere in the package is picked up without a list to keep.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Modules whose examples need an optional dependency: left out where it is missing.
OPTIONAL = {
    "hyperspy": (
        "daskreg/io/hyperspy_out.py",
        "daskreg/hyperspy.py",
        "daskreg/_hyperspy_signals.py",
    ),
    "napari": ("daskreg/napari/_widget.py",),
}


def test_docstring_examples_run():
    ignore = [
        f"--ignore={path}"
        for package, paths in OPTIONAL.items()
        if importlib.util.find_spec(package) is None
        for path in paths
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # The figures' examples draw without a screen, as in CI, whatever the caller's backend.
    env["MPLBACKEND"] = "Agg"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--doctest-modules"]
        + ignore
        + ["daskreg"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-5000:]
    # Examples exist in a dozen modules (the API, results, figures, I/O, kernels): a
    # run that collects none means the examples are no longer seen, not that they pass.
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 20, done.stdout[-2000:]
