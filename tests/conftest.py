"""Shared test fixtures: the real-data folder and small synthetic series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daskreg.synthetic import lattice_series

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
requires_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data not present")


def rms_error(measured: np.ndarray, true: np.ndarray, used: np.ndarray | None = None) -> float:
    """RMS of the 2-D shift error over used frames after removing the common offset."""
    used = np.ones(len(true), dtype=bool) if used is None else used
    diff = measured[used] - true[used]
    diff = diff - diff.mean(axis=0)
    return float(np.sqrt((diff**2).sum(axis=1).mean()))


@pytest.fixture(scope="session")
def small_series():
    """Eight 96x96 frames, moderate dose: quick to register, lattice clearly visible."""
    return lattice_series(8, (96, 96), dose=100, seed=11)
