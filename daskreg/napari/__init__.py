"""The napari plugin: open daskreg results, averages and registered stacks; register.

An npe2 plugin (manifest ``napari.yaml`` beside this file, entry point
``napari.manifest``), installed with ``pip install "daskreg[napari]"``:

- a reader (:func:`daskreg.napari._reader.get_reader`) for result stores
  (``*.result.zarr``, ``.zarr`` or ``.nc`` written by
  :meth:`daskreg.RegistrationResult.save`), averages (``.tif`` written by
  :meth:`~daskreg.RegistrationResult.save_tif`) and stacks (``save_stack`` stores,
  :func:`daskreg.ingest` stores): the average with its pixel size, the aligned stack
  (lazy), the shift track as points and tracks, bad frames marked;
- a widget (:class:`daskreg.napari._widget.RegisterWidget`) that previews the Fourier
  mask and one pair's correlation for the chosen mask, cutoff ``n`` and threshold on a
  loaded stack, and registers it in a worker thread with progress.

Nothing here imports napari until the widget is created: the reader's modules need
only daskreg's own dependencies.
"""
