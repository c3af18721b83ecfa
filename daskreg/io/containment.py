"""Readers stay inside the input: no data from files the input only points to.

Some formats let a file name other files whose content is read as its own: HDF5 (``.nc``,
``.hspy``, ``.emd``) external storage (a dataset's bytes in a raw file), external links and
virtual datasets; an OME-TIFF whose OME-XML lists other files (tifffile reads them as one
series; Micro-Manager and NDTiff series likewise); a Zarr store whose chunk files or
arrays are symlinks. A file made to point at ``~/.ssh/id_rsa`` or at another user's data
would pull that file's bytes into the average and result, which are made to be shared.
:func:`check_inside` refuses any such reference that leaves the input's folder (the file's
folder, where a multi-file acquisition keeps its parts; a Zarr store's own directory),
after resolving symlinks, unless the caller allows it. It only reads metadata: no file
outside is opened before it is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from xml.etree import ElementTree

from daskreg.errors import ExternalDataError
from daskreg.io._raw import reading
from daskreg.io._zarr import is_zarr_store

__all__ = ["check_folder", "check_inside"]

# Suffixes of the formats daskreg reads that may be HDF5 (a .nc may also be netCDF-3).
_HDF5_SUFFIXES = frozenset({".nc", ".hspy", ".emd"})
_TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
# tifffile's series that gather pages from other files (the others read one file).
_MULTIFILE_SERIES = frozenset({"ome", "mmstack", "ndtiff"})
# Where the HDF5 library looks, besides the names themselves: these variables' folders.
_LINK_PREFIX = "HDF5_EXT_PREFIX"
_VDS_PREFIX = "HDF5_VDS_PREFIX"
_RAW_PREFIX = "HDF5_EXTFILE_PREFIX"


def check_inside(path: Path, *, allow_external: bool = False) -> None:
    """Refuse a file or Zarr store whose data would be read from outside its folder.

    Parameters
    ----------
    path : pathlib.Path
        Absolute path of an existing file or Zarr store, as given (a symlink to it is
        fine: references are resolved from the folder it was given in, as the readers
        resolve them).
    allow_external : bool
        True: skip the check (the user trusts the file).

    Raises
    ------
    ExternalDataError
        Naming the file, the reference and where it leads, and the fix.
    FileFormatError
        The file's metadata cannot be parsed (what its reader would raise too).
    """
    if allow_external:
        return
    store = is_zarr_store(path)
    folder = path if store else path.parent
    if store:
        references = _zarr_symlinks(path)
    elif path.suffix.lower() in _HDF5_SUFFIXES:
        references = _hdf5_references(path)
    elif path.suffix.lower() in _TIFF_SUFFIXES:
        references = _tiff_references(path)
    else:
        return
    for what, target in references:
        _refuse_outside(path, what, target, folder, "the store" if store else "its folder")


def check_folder(folder: Path, files: Sequence[Path], *, allow_external: bool = False) -> None:
    """Refuse the files of a folder input that are symlinks leading out of it.

    Parameters
    ----------
    folder : pathlib.Path
        The folder given as the input.
    files : sequence of pathlib.Path
        Its files that are read (each is then checked by :func:`check_inside`).
    allow_external : bool
        True: skip the check.

    Raises
    ------
    ExternalDataError
        Naming the file, where it leads, and the fix.
    """
    if allow_external:
        return
    for file in files:
        if file.is_symlink():
            _refuse_outside(file, "a symlink", file, folder, "the folder given")


def _refuse_outside(path: Path, what: str, target: Path, folder: Path, where: str) -> None:
    resolved = target.resolve()
    inside = folder.resolve()
    if resolved != inside and inside not in resolved.parents:
        raise ExternalDataError(
            f"{str(path)!r} reads data from {str(resolved)!r} ({what}), outside {where} "
            f"{str(folder)!r}; daskreg reads nothing the input only points to, so that no "
            "other file ends up in its outputs. If you trust this file, open it with "
            "daskreg.open_stack(source, allow_external=True); else copy the data it points "
            "to beside it"
        )


def _zarr_symlinks(store: Path) -> Iterator[tuple[str, Path]]:
    """Every symlink inside a Zarr store (file or directory), with where it points."""
    folders = [store]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                # DirEntry answers from the directory listing: no stat of each chunk.
                if entry.is_symlink():
                    relative = Path(entry.path).relative_to(store)
                    yield f"the symlink {str(relative)!r}", Path(entry.path)
                elif entry.is_dir():
                    folders.append(Path(entry.path))


def _tiff_references(path: Path) -> Iterator[tuple[str, Path]]:
    """Files a TIFF's series read pages from: OME-XML's file names, then every page's file."""
    import tifffile

    from daskreg.io._tiff import tifffile_errors

    # tifffile logs damage instead of raising: collected into the reader's own error
    # (else its log lines reach the terminal beside daskreg's one line).
    with tifffile_errors(path), reading(path, "TIFF"), tifffile.TiffFile(path) as tif:
        folder = Path(tif.filehandle.dirname)
        if tif.is_ome:
            # Before tif.series, which opens the files named.
            yield from _ome_file_names(tif.ome_metadata or "", folder)
        for series in tif.series:
            if series.kind not in _MULTIFILE_SERIES:
                continue
            for page in series.pages:
                if page is not None:
                    yield f"a page of its {series.kind} series", Path(page.parent.filehandle.path)


def _ome_file_names(xml: str, folder: Path) -> Iterator[tuple[str, Path]]:
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return  # tifffile cannot read it as OME either: no file is named
    for element in root.iter():
        name = element.attrib.get("FileName") if element.tag.endswith("UUID") else None
        if name:
            # tifffile's own resolution: os.path.join with the file's folder.
            yield f"the OME-XML file name {name!r}", Path(os.path.join(folder, name))


def _hdf5_references(path: Path) -> Iterator[tuple[str, Path]]:
    """External links, external storage and virtual dataset sources of an HDF5 file."""
    import h5py

    if not h5py.is_hdf5(path):
        return
    origin = path.parent
    found: list[tuple[str, Path]] = []

    def visit(name: str, link: object) -> None:
        if isinstance(link, h5py.ExternalLink):
            target = _found(link.filename, origin, _LINK_PREFIX, beside=True)
            if target is not None:
                found.append((f"the external link '/{name}'", target))
            return
        if not isinstance(link, h5py.HardLink):
            return  # a soft link names an object of this file
        node = file[name]
        if not isinstance(node, h5py.Dataset):
            return
        for entry in node.external or ():
            raw = os.fsdecode(entry[0])
            target = _found(raw, origin, _RAW_PREFIX, beside=False)
            if target is not None:
                found.append((f"the external storage of dataset '/{name}'", target))
        if node.is_virtual:
            for source in node.virtual_sources():
                if source.file_name != ".":
                    target = _found(source.file_name, origin, _VDS_PREFIX, beside=True)
                    if target is not None:
                        found.append((f"the virtual dataset '/{name}'", target))

    with reading(path, "HDF5"), h5py.File(path, "r") as file:
        # Visits every link once without following external ones (or looping).
        file.visititems_links(visit)
    yield from found


def _found(name: str, origin: Path, variable: str, *, beside: bool) -> Path | None:
    """The file HDF5 opens for a name another file gives, or None if none exists.

    HDF5 tries an absolute name as is, then (for links and virtual datasets, with only the
    file part of an absolute name) the folders of ``$variable`` (``${ORIGIN}``: the
    file's folder), the file's folder, and the working directory; external storage
    takes a relative name from ``$HDF5_EXTFILE_PREFIX``, else the working directory.
    The first that exists is read; if none does, nothing is read from outside.
    """
    given = Path(name)
    prefixes = [
        Path(prefix.replace("${ORIGIN}", str(origin)))
        for prefix in os.environ.get(variable, "").split(os.pathsep)
        if prefix
    ]
    candidates = [given] if given.is_absolute() else []
    if beside:
        part = Path(given.name) if given.is_absolute() else given
        candidates += [*(p / part for p in prefixes), origin / part, Path.cwd() / part]
    elif not given.is_absolute():
        candidates += [p / given for p in prefixes] or [Path.cwd() / given]
    return next((c for c in candidates if c.exists()), None)
