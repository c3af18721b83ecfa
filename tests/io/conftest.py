"""Shared fixtures of the daskreg.io tests."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from daskreg.errors import RegistrationWarning

#: The shared real-data folder, beside the repository.
DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real-data folder; skips the test when it is absent."""
    if not DATA_DIR.is_dir():
        pytest.skip("../shared/data not present")
    return DATA_DIR


@pytest.fixture
def truncated_copy(data_dir: Path, tmp_path: Path):
    """Write the first part of a real file to tmp_path (the original is never touched)."""

    def make(name: str, fraction: float = 2 / 3, rename: str | None = None) -> Path:
        content = (data_dir / name).read_bytes()
        target = tmp_path / (rename or name)
        target.write_bytes(content[: int(len(content) * fraction)])
        return target

    return make


@contextmanager
def no_registration_warning() -> Iterator[None]:
    """Fail if a RegistrationWarning is emitted inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegistrationWarning)
        yield


@pytest.fixture
def quiet():
    """Context manager factory: the block must not emit a RegistrationWarning."""
    return no_registration_warning
