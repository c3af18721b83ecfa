"""Damaged files of every format: opening and reading them fails only as FileFormatError.

Small valid files are written here (tif, zarr, nc, hspy) or copied from the shared real
data (dm3, dm4, ser, emd), then truncated or overwritten at offsets hypothesis picks.
``open_stack`` and computing the pixels must either work (the damage hit bytes that do
not matter) or raise a :class:`~daskreg.errors.DaskregError`; never a reader's own
exception. The examples are derandomised, so CI sees the same files every run.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from daskreg.errors import DaskregError, FileFormatError
from daskreg.io import ingest, open_stack

# Bytes where the formats keep their headers, tag tables and superblocks.
HEADER_BYTES = 1024
# Above this the damaged header may claim an absurd size: read one corner of the last
# frame only, which still reaches past the end of a truncated file.
FULL_READ_BYTES = 16 * 2**20
FRAMES = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16)


def _tif(folder: Path) -> Path:
    path = folder / "stack.tif"
    tifffile.imwrite(path, FRAMES, imagej=True, metadata={"axes": "TYX", "unit": "nm"})
    return path


def _zarr(folder: Path) -> Path:
    ingest(FRAMES, folder / "stack.zarr", chunks=2)
    return folder / "stack.zarr"


def _netcdf(folder: Path) -> Path:
    path = folder / "stack.nc"
    stack = xr.DataArray(FRAMES, dims=("frame", "y", "x"), name="stack")
    # Compressed, so that damaged chunks fail in the decompressor too.
    stack.to_netcdf(path, engine="h5netcdf", encoding={"stack": {"zlib": True}})
    return path


def _hspy(folder: Path) -> Path:
    from rsciio.hspy import file_writer

    path = folder / "stack.hspy"
    axes = [
        {"name": name, "size": size, "scale": 0.1, "offset": 0.0, "units": "nm",
         "navigate": name == "frame"}
        for name, size in zip(("frame", "y", "x"), FRAMES.shape, strict=True)
    ]  # fmt: skip
    file_writer(
        str(path),
        {
            "data": FRAMES,
            "axes": axes,
            "metadata": {"General": {"title": "fuzz"}, "Signal": {"signal_type": ""}},
            "original_metadata": {},
            "attributes": {"_lazy": False},
            "tmp_parameters": {},
            "learning_results": {},
            "models": {},
            "package_info": {"name": "hyperspy", "version": "2.0"},
        },
    )
    return path


WRITERS: dict[str, Callable[[Path], Path]] = {
    "tif": _tif,
    "zarr": _zarr,
    "nc": _netcdf,
    "hspy": _hspy,
}
# Formats written only by vendor software: small real files, copied from ../shared/data.
REAL_FILES = {
    "dm3": "multi_signal.dm3",
    "dm4": "dmTest_3D_int16_64x65x66.dm4",
    "ser": "03_Scanning_Preview_1.ser",
    "emd-velox": "velox_STEM_HAADF_Diffraction_Micro.emd",
    "emd-berkeley": "Acquisition_18.emd",
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory, request) -> Callable[[str], Path]:
    """The valid file of a format, made once per module (only copies are damaged)."""
    folder = tmp_path_factory.mktemp("valid")
    made: dict[str, Path] = {}

    def source(kind: str) -> Path:
        if kind not in made:
            if kind in REAL_FILES:
                # Skips the test when the shared data are absent.
                real = request.getfixturevalue("data_dir") / REAL_FILES[kind]
                made[kind] = Path(shutil.copy(real, folder / real.name))
            else:
                (folder / kind).mkdir()
                made[kind] = WRITERS[kind](folder / kind)
        return made[kind]

    return source


# One damage: ("truncate", fraction of the size) or ("overwrite", where, fraction, bytes)
# with where "header" (first HEADER_BYTES) or "anywhere"; fractions map to offsets once
# the size of the file damaged is known. ``pick`` selects the file of a Zarr store.
DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0, exclude_max=True)),
    st.tuples(
        st.just("overwrite"),
        st.sampled_from(["header", "anywhere"]),
        st.floats(0.0, 1.0, exclude_max=True),
        st.binary(min_size=1, max_size=16),
    ),
)


def _damage(path: Path, damage: tuple) -> None:
    content = bytearray(path.read_bytes())
    if damage[0] == "truncate":
        path.write_bytes(content[: int(damage[1] * len(content))])
        return
    _, where, fraction, new = damage
    region = min(len(content), HEADER_BYTES) if where == "header" else len(content)
    start = int(fraction * region)
    content[start : start + len(new)] = new
    path.write_bytes(bytes(content))


def _read_all(path: Path) -> None:
    stack = open_stack(path)
    if stack.nbytes <= FULL_READ_BYTES:
        stack.values  # noqa: B018 - computing the pixels is the point
    else:
        stack[..., -1, -8:, -8:].values  # noqa: B018


# h5netcdf's File.__del__ fails on a file it could not open; that is h5netcdf's noise.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("kind", [*WRITERS, *REAL_FILES])
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(damage=DAMAGE, pick=st.integers(min_value=0))
def test_damaged_file_reads_or_raises_a_daskreg_error(sources, kind: str, damage, pick: int):
    valid = sources(kind)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / valid.name
        if valid.is_dir():
            shutil.copytree(valid, path)
            files = sorted(p for p in path.rglob("*") if p.is_file())
            _damage(files[pick % len(files)], damage)
        else:
            shutil.copy(valid, path)
            _damage(path, damage)
        # A damaged file may still be read with warnings (e.g. a guessed calibration);
        # only exceptions matter here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                _read_all(path)
            except FileFormatError as error:
                assert str(path) in str(error)
            except DaskregError:
                pass
