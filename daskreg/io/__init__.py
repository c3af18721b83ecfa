"""Reading STEM image stacks into lazy, calibrated DataArrays, and ingesting them into Zarr.

:func:`open_stack` reads, lazily wherever the format allows:

- ``.dm3``/``.dm4`` (Gatan), ``.ser``/``.emi`` (FEI TIA), ``.emd`` (Berkeley and Velox),
  ``.hspy`` through RosettaSciIO plugins;
- ``.tif``/``.tiff`` (ImageJ, OME, plain) through tifffile as a Zarr view;
- ``.zarr`` stores, ``.nc`` files through zarr/xarray;
- several files of one or a few frames each as one stack: a folder, a glob pattern or a
  list of paths (natural order, calibration from the first file);
- numpy and dask arrays, xarray DataArrays and HyperSpy signals.

:func:`ingest` writes a stack to a Zarr v3 store: a group whose array ``stack`` has
dimension names ``(…, frame, y, x)``, is chunked along frames only and carries the
calibration attributes, beside 1-D coordinate arrays ``frame``, ``y``, ``x``
(``xarray.open_zarr(store)["stack"]`` reads it too); a store ending in ``.ome.zarr`` is
also an OME-Zarr (NGFF 0.5) image (:mod:`daskreg.io.ome_zarr`), and :func:`open_stack`
opens any OME-Zarr image. :func:`read_frame_shifts` reads the per-frame shifts a ``.zarr``
result records as NGFF transformations.
"""

from daskreg.io._files import natural_key
from daskreg.io._ingest import ingest
from daskreg.io._open import SUPPORTED_EXTENSIONS, open_stack
from daskreg.io.ome_zarr import read_frame_shifts

__all__ = ["SUPPORTED_EXTENSIONS", "ingest", "natural_key", "open_stack", "read_frame_shifts"]
