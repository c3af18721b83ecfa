"""Readers stay inside the input: hostile files pointing at a secret elsewhere are refused.

Each case builds, in tmp_path, an input in ``in/`` whose format lets it name another file,
pointed at a "secret" in ``elsewhere/`` (values 42, which the input's own data never
holds): HDF5 external storage (.nc), external links (.hspy, .emd), a virtual dataset, a
multi-file OME-TIFF, Zarr chunk and array symlinks. Without ``allow_external`` every one
is refused, naming the file, the secret and the fix (CLI: exit 2, one line); with it, the
secret's values are read, which proves the file really reaches the secret and that only
the check stops it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import xarray as xr

from daskreg import cli
from daskreg.errors import ExternalDataError
from daskreg.io import SUPPORTED_EXTENSIONS, open_stack
from daskreg.io.containment import check_inside

from .io.conftest import DATA_DIR

SECRET = 42
SHAPE = (3, 32, 32)
OWN = np.arange(np.prod(SHAPE), dtype=np.uint16).reshape(SHAPE) % 40  # never 42


def _chunked_secret(path: Path, shape: tuple[int, ...]) -> Path:
    # Chunked: RosettaSciIO reads HDF5 lazily through the dataset's chunks.
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.full(shape, SECRET, np.uint16), chunks=(*shape[:-1], 1))
    return path


def _signal_dict() -> dict:
    axes = [
        {"name": name, "size": n, "navigate": name == "frame", "offset": 0.0, "scale": 1.0,
         "units": ""}
        for name, n in zip(("frame", "y", "x"), SHAPE, strict=True)
    ]  # fmt: skip
    return {
        "data": OWN,
        "axes": axes,
        "metadata": {"General": {"title": "own"}, "Signal": {"signal_type": ""}},
        "original_metadata": {},
        "tmp_parameters": {},
        "attributes": {"_lazy": False},
        "learning_results": {},
        "models": {},
        "package_info": {"name": "hyperspy", "version": "2.0"},
    }


def _link_data_to(path: Path, secret_folder: Path) -> None:
    """Replace the image dataset of an HDF5 file by an external link to a secret."""
    with h5py.File(path, "r+") as f:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if getattr(o, "ndim", 0) == 3 else None)
        (name,) = (n for n in names if n.endswith("data") or n.endswith("Data"))
        shape = f[name].shape
        del f[name]
        secret = _chunked_secret(secret_folder / "secret.h5", shape)
        f[name] = h5py.ExternalLink(str(secret), "/data")


def nc_external_storage(folder: Path, secret_folder: Path) -> Path:
    import h5netcdf

    raw = secret_folder / "secret.raw"
    np.full(SHAPE, SECRET, np.uint16).tofile(raw)
    path = folder / "stack.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = dict(zip(("frame", "y", "x"), SHAPE, strict=True))
        external = [(str(raw), 0, raw.stat().st_size)]
        f.create_variable("stack", ("frame", "y", "x"), np.uint16, external=external)
    return path


def nc_virtual_dataset(folder: Path, secret_folder: Path) -> Path:
    import h5netcdf

    secret = _chunked_secret(secret_folder / "secret.h5", SHAPE)
    path = folder / "stack.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = dict(zip(("frame", "y", "x"), SHAPE, strict=True))
        f.create_variable("stack", ("frame", "y", "x"), np.uint16)
    with h5py.File(path, "r+") as f:
        layout = h5py.VirtualLayout(shape=SHAPE, dtype=np.uint16)
        layout[...] = h5py.VirtualSource(str(secret), "data", shape=SHAPE)
        del f["stack"]
        f.create_virtual_dataset("stack", layout)
    return path


def hspy_external_link(folder: Path, secret_folder: Path) -> Path:
    from rsciio import hspy

    path = folder / "stack.hspy"
    hspy.file_writer(str(path), _signal_dict())
    _link_data_to(path, secret_folder)
    return path


def emd_external_link(folder: Path, secret_folder: Path) -> Path:
    # A real Velox file (RosettaSciIO's Berkeley reader does not follow links).
    velox = DATA_DIR / "velox_STEM_HAADF_Diffraction_Micro.emd"
    if not velox.is_file():
        pytest.skip("../shared/data not present")
    path = folder / "stack.emd"
    shutil.copyfile(velox, path)
    _link_data_to(path, secret_folder)
    return path


_OME = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="urn:uuid:{own}">
<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16"
 SizeX="{x}" SizeY="{y}" SizeZ="1" SizeC="1" SizeT="{t}">
<Channel ID="Channel:0:0" SamplesPerPixel="1"/>
<TiffData FirstT="0" IFD="0" PlaneCount="{n}">
<UUID FileName="{name}">urn:uuid:{own}</UUID></TiffData>
<TiffData FirstT="{n}" IFD="0" PlaneCount="{n}">
<UUID FileName="{part}">urn:uuid:part</UUID></TiffData>
</Pixels></Image></OME>"""


def _ome_pair(folder: Path, part: Path, part_name: str) -> Path:
    """A two-file OME-TIFF: frames 0, 1 in the file, 2, 3 in ``part`` (named as given)."""
    n = 2
    tifffile.imwrite(
        part, np.full((n, *SHAPE[1:]), SECRET, np.uint16),
        description='<?xml version="1.0"?><OME UUID="urn:uuid:part"/>', metadata=None,
    )  # fmt: skip
    path = folder / "stack.ome.tif"
    xml = _OME.format(
        own="own", x=SHAPE[2], y=SHAPE[1], t=2 * n, n=n, name=path.name, part=part_name
    )
    tifffile.imwrite(path, OWN[:n], description=xml, metadata=None)
    return path


def ome_multifile(folder: Path, secret_folder: Path) -> Path:
    return _ome_pair(folder, secret_folder / "part.ome.tif", "../elsewhere/part.ome.tif")


def _store(path: Path, data: np.ndarray) -> Path:
    xr.DataArray(data, dims=("frame", "y", "x")).chunk({"frame": 1}).to_dataset(
        name="stack"
    ).to_zarr(path, zarr_format=3, consolidated=False)
    return path


def zarr_chunk_symlink(folder: Path, secret_folder: Path) -> Path:
    path = _store(folder / "stack.zarr", OWN)
    secret = _store(secret_folder / "secret.zarr", np.full(SHAPE, SECRET, np.uint16))
    chunk = Path("stack", "c", "1", "0", "0")
    (path / chunk).unlink()
    (path / chunk).symlink_to(secret / chunk)
    return path


def zarr_array_symlink(folder: Path, secret_folder: Path) -> Path:
    path = _store(folder / "stack.zarr", OWN)
    secret = _store(secret_folder / "secret.zarr", np.full(SHAPE, SECRET, np.uint16))
    shutil.rmtree(path / "stack")
    (path / "stack").symlink_to(secret / "stack", target_is_directory=True)
    return path


HOSTILE: list[Callable[[Path, Path], Path]] = [
    nc_external_storage,
    nc_virtual_dataset,
    hspy_external_link,
    emd_external_link,
    ome_multifile,
    zarr_chunk_symlink,
    zarr_array_symlink,
]


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    inside, outside = tmp_path / "in", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    return inside, outside


@pytest.fixture(params=HOSTILE, ids=lambda f: f.__name__)
def hostile(request, folders) -> Path:
    return request.param(*folders)


def test_refused_by_the_api(hostile: Path, folders) -> None:
    with pytest.raises(ExternalDataError) as caught:
        open_stack(hostile)
    message = str(caught.value)
    assert repr(str(hostile)) in message
    assert str(folders[1].resolve()) in message  # where the secret lies
    assert "allow_external=True" in message
    assert "\n" not in message


def test_read_when_allowed(hostile: Path) -> None:
    # The hostile file does reach the secret: only the check stops it.
    values = open_stack(hostile, allow_external=True).values
    assert (values == SECRET).any()


def test_refused_by_the_cli_and_read_with_the_flag(hostile: Path, folders, capsys) -> None:
    store = folders[0].parent / "copy.zarr"
    assert cli.main(["ingest", str(hostile), str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(hostile) in err and str(folders[1].resolve()) in err
    assert "--allow-external-files" in err and "allow_external" not in err
    assert not store.exists()
    assert cli.main(["ingest", str(hostile), str(store), "--allow-external-files"]) == 0
    assert (open_stack(store).values == SECRET).any()


def test_register_refuses_before_writing_anything(folders, capsys) -> None:
    path = zarr_chunk_symlink(*folders)
    out = folders[0].parent / "out"
    out.mkdir()
    code = cli.main(["register", str(path), "-o", str(out / "avg.tif"), "--engine", "dask",
                     "--no-progress"])  # fmt: skip
    assert code == 2
    assert "--allow-external-files" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # no checkpoint, no lock, no output


def test_several_files_checked_one_by_one(folders) -> None:
    # A folder of frames where one file is a symlink leading out of it.
    inside, outside = folders
    for k in range(3):
        tifffile.imwrite(inside / f"f{k}.tif", OWN[k])
    tifffile.imwrite(outside / "secret.tif", np.full(SHAPE[1:], SECRET, np.uint16))
    (inside / "f1.tif").unlink()
    (inside / "f1.tif").symlink_to(outside / "secret.tif")
    with pytest.raises(ExternalDataError, match="f1.tif"):
        open_stack(inside)
    assert (open_stack(inside, allow_external=True).values[1] == SECRET).all()


def test_references_inside_the_folder_are_read(folders) -> None:
    inside, _ = folders
    # A multi-file OME-TIFF with its part beside it, as microscopes write them.
    ome = _ome_pair(inside, inside / "part.ome.tif", "part.ome.tif")
    assert open_stack(ome).shape == (4, *SHAPE[1:])
    # An HDF5 external link to a sibling file, by relative name.
    sibling = _chunked_secret(inside / "sibling.h5", SHAPE)
    linked = inside / "linked.nc"
    with h5py.File(linked, "w") as f:
        f["stack"] = h5py.ExternalLink(sibling.name, "/data")
    check_inside(linked)
    # A Zarr store with a symlink inside it to another of its own chunks.
    store = _store(inside / "own.zarr", OWN)
    chunk = store / "stack" / "c" / "2" / "0" / "0"
    chunk.unlink()
    chunk.symlink_to(store / "stack" / "c" / "0" / "0" / "0")
    np.testing.assert_array_equal(open_stack(store).values[2], OWN[0])


def test_relative_external_storage_is_taken_from_the_working_directory(folders, monkeypatch):
    # HDF5 reads a relative external file from the working directory, not the file's
    # folder: run from elsewhere, the name leads there.
    inside, outside = folders
    path = inside / "stack.nc"
    np.full(SHAPE, SECRET, np.uint16).tofile(outside / "data.raw")
    with h5py.File(path, "w") as f:
        external = [("data.raw", 0, OWN.nbytes)]
        f.create_dataset("stack", shape=SHAPE, dtype=np.uint16, external=external)
    monkeypatch.chdir(outside)
    with pytest.raises(ExternalDataError, match="data.raw"):
        check_inside(path)
    monkeypatch.chdir(inside)
    check_inside(path)  # nothing named data.raw there: nothing is read from outside


@pytest.mark.realdata
def test_real_files_pass() -> None:
    if not DATA_DIR.is_dir():
        pytest.skip("../shared/data not present")
    names = sorted(p for p in os.listdir(DATA_DIR) if Path(p).suffix in SUPPORTED_EXTENSIONS)
    assert names
    for name in names:
        check_inside(DATA_DIR / name)
        assert open_stack(DATA_DIR / name).size > 0
