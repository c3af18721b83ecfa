"""The napari plugin (issue 21): manifest, reader and widget, headless.

Qt runs on its offscreen platform (set below, before any Qt import makes an application).
Reader and widget are tested on napari's ``ViewerModel`` (no canvas, so no OpenGL) and,
where an OpenGL context can be made, on napari's real viewer from ``make_napari_viewer``.
Qt's offscreen platform has OpenGL only through an X server: run under ``xvfb-run -a``
(``apt-get install xvfb``) on a machine without a display; without one those cases are
skipped, saying so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import tifffile

import daskreg
from daskreg.errors import RegistrationWarning
from daskreg.kernels.masks import fourier_mask
from daskreg.synthetic import lattice_series

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "daskreg" / "napari" / "napari.yaml"


def _importable(*names: str) -> bool:
    try:
        for name in names:
            import_module(name)
    except Exception:  # noqa: BLE001 - missing, or installed but broken (no Qt binding)
        return False
    return True


requires_napari = pytest.mark.skipif(
    not _importable("napari", "napari.qt", "pytestqt"),
    reason="napari (with a Qt binding) or pytest-qt not importable: pip install -e '.[test]'",
)
# The bad frame (a blank one) is marked in the track, and its warning reaches the widget.
BAD = 3
PARAMS = {"mask": "bandpass", "n": 5.0, "threshold": 3.0}


@pytest.fixture(scope="module")
def series():
    # Non-square, and a crop whose ymin and xmin differ (4 and 2): the placement of
    # every layer is checked axis by axis.
    return lattice_series(8, (96, 112), dose=100, seed=12, bad_frames={BAD: "blank"})


@pytest.fixture(scope="module")
def saved(series, tmp_path_factory):
    """A calibrated tif of the series, registered from its path, and everything saved."""
    folder = tmp_path_factory.mktemp("napari")
    stack = series.to_xarray()
    py, px = stack.attrs["pixel_size"]
    tif = folder / "series.tif"
    tifffile.imwrite(
        tif,
        series.stack.astype(np.float32),
        imagej=True,
        resolution=(1 / px, 1 / py),
        metadata={"unit": "nm", "axes": "TYX"},
    )
    with pytest.warns(RegistrationWarning, match=f"left out frames {BAD}"):
        result = daskreg.register(tif, progress=False, **PARAMS)
    frames = daskreg.open_stack(tif)
    saved_stack = folder / "aligned.zarr"
    result.apply(frames, average=False, save_stack=saved_stack)
    return {
        "result": result,
        "frames": frames,
        "zarr": result.save(folder / "run.result.zarr"),
        "nc": result.save(folder / "run.nc"),
        "tif": result.save_tif(folder / "run-average.tif"),
        "stack": saved_stack,
        "series_tif": tif,
        "folder": folder,
    }


def _by_name(layers):
    return {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in layers}


def _check_track(layers, result, prefix):
    """Points and tracks reproduce the result's shifts, bad frames marked."""
    points, kwargs, kind = layers[f"{prefix} shift track"]
    shifts = result.shifts.values
    bad = result.bad_frames.values
    used = ~bad
    assert kind == "points"
    assert np.array_equal(points[:, 0], np.arange(len(shifts)))
    # Every used frame's point is the same origin plus its shift: exactly the shifts
    # (1e-12 px: one addition and subtraction of numbers of order 50).
    origin = points[used, 1:] - shifts[used]
    np.testing.assert_allclose(origin, np.broadcast_to(origin[0], origin.shape), atol=1e-12)
    features = kwargs["features"]
    assert np.array_equal(features["bad"], bad) and bad[BAD] and bad.sum() == 1
    assert "contrast" in features["reason"][BAD] and features["reason"][0] == ""
    np.testing.assert_array_equal(features["dy"][used], shifts[used, 0])
    np.testing.assert_array_equal(features["sigma_x"], result.shift_uncertainty.values[:, 1])
    track, _, kind = layers[f"{prefix} drift"]
    assert kind == "tracks"
    assert np.array_equal(track[:, 1], np.flatnonzero(used))
    np.testing.assert_array_equal(track[:, 2:], points[used, 1:])


# -- manifest and base install ------------------------------------------------------------


@requires_napari
def test_manifest_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)  # npe2's schema: raises if invalid
    manifest.validate_imports()  # every command's python_name imports
    assert manifest.name == "daskreg"
    (reader,) = manifest.contributions.readers
    assert {"*.zarr", "*.nc", "*.tif"} <= set(reader.filename_patterns)
    assert reader.accepts_directories  # a .zarr store is a directory
    (widget,) = manifest.contributions.widgets
    assert widget.command == "daskreg.register_widget"
    # pyproject's entry point names this file as package data of daskreg.napari.
    text = (ROOT / "pyproject.toml").read_text()
    entry = re.search(r'\[project\.entry-points\."napari\.manifest"\]\s*daskreg = "(.*?)"', text)
    assert entry and entry.group(1) == "daskreg.napari:napari.yaml"
    assert re.search(r'"daskreg\.napari" = \["napari\.yaml"\]', text)


@requires_napari
def test_installed_entry_point_finds_the_manifest():
    from importlib.metadata import entry_points

    points = [p for p in entry_points(group="napari.manifest") if p.name == "daskreg"]
    if not points:
        pytest.skip("the installed daskreg predates its napari entry point: pip install -e .")
    from npe2 import PluginManifest

    assert PluginManifest.from_distribution("daskreg").name == "daskreg"


def test_base_install_imports_without_napari(tmp_path):
    """daskreg, its CLI and the reader's modules never import napari or Qt."""
    code = textwrap.dedent(
        """
        import sys
        BLOCKED = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide6", "magicgui", "npe2")
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{name} is blocked: not in the base install")
        sys.meta_path.insert(0, Block())
        import daskreg, daskreg.cli, daskreg.napari._reader
        print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


# -- reader -------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["zarr", "nc"])
def test_reader_gives_the_result_layers(saved, store):
    from daskreg.napari._reader import get_reader

    result = saved["result"]
    reader = get_reader(str(saved[store]))
    assert reader is not None
    layers = _by_name(reader(str(saved[store])))
    assert list(layers) == ["run average", "run aligned", "run shift track", "run drift"]
    average, kwargs, kind = layers["run average"]
    assert kind == "image"
    np.testing.assert_array_equal(average, result.average.values)
    pixel = tuple(result.dataset.attrs["pixel_size"])
    assert kwargs["scale"] == pixel and kwargs["units"] == ("nm", "nm")
    crop = result.crop
    assert crop.ymin != crop.xmin
    np.testing.assert_allclose(kwargs["translate"], (crop.ymin * pixel[0], crop.xmin * pixel[1]))
    aligned, kwargs, _ = layers["run aligned"]
    assert type(aligned).__module__.startswith("dask")  # lazy: nothing shifted yet
    frames = np.asarray(aligned)
    assert frames.shape == (8, *average.shape) and np.isnan(frames[BAD]).all()
    # Frame k is raw frame k shifted back by its shift and cropped: the Fourier shift
    # theorem on the half plane (so the Nyquist terms stay real, as in the method),
    # written here with numpy's FFT. float32 frames: within 1e-6 of the frame's range.
    raw = np.asarray(saved["frames"], dtype=np.float64)
    ny, nx = raw.shape[1:]
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    for k in (0, BAD + 1, 7):
        dy, dx = result.shifts.values[k]
        phase = np.exp(2j * np.pi * (ky * dy + kx * dx))
        back = np.fft.irfft2(np.fft.rfft2(raw[k]) * phase, s=(ny, nx))
        expected = back[crop.ymin : crop.ymax, crop.xmin : crop.xmax]
        np.testing.assert_allclose(frames[k], expected, atol=1e-6 * np.ptp(raw[k]))
    # And the used frames average to the result's average.
    mean = np.delete(frames, BAD, axis=0).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(mean, average, atol=1e-6 * np.ptp(average))
    _check_track(layers, result, "run")


def test_reader_opens_the_average_tif_and_stacks(saved):
    from daskreg.napari._reader import get_reader

    result = saved["result"]
    layers = _by_name(get_reader(str(saved["tif"]))(str(saved["tif"])))
    image, kwargs, _ = layers["run-average average"]
    np.testing.assert_array_equal(image, result.average.values.astype(np.float32))
    pixel = result.dataset.attrs["pixel_size"]
    np.testing.assert_allclose(kwargs["scale"], pixel, rtol=1e-6)  # TIFF stores 1/size
    crop = result.crop
    np.testing.assert_allclose(
        kwargs["translate"], (crop.ymin * pixel[0], crop.xmin * pixel[1]), rtol=1e-6
    )
    _check_track(layers, result, "run-average")
    ((data, kwargs, kind),) = get_reader(str(saved["stack"]))(str(saved["stack"]))
    assert kind == "image" and type(data).__module__.startswith("dask")
    expected = result.apply(saved["frames"], average=False).values.astype(np.float32)
    np.testing.assert_array_equal(np.asarray(data), expected)
    # Not daskreg's: the raw series, a Zarr group without a stack, a foreign NetCDF.
    empty = saved["folder"] / "other.zarr"
    import xarray as xr
    import zarr

    zarr.open_group(str(empty), mode="w")
    xr.Dataset({"a": ("t", [1.0])}).to_netcdf(saved["folder"] / "other.nc")
    for path in (saved["series_tif"], empty, saved["folder"] / "other.nc", "missing.zarr"):
        assert get_reader(str(path)) is None, path


# -- widget and viewer --------------------------------------------------------------------


def _opengl(qapp) -> bool:
    from qtpy.QtGui import QOffscreenSurface, QOpenGLContext

    context = QOpenGLContext()
    if not context.create():
        return False
    surface = QOffscreenSurface()
    surface.create()
    ok = context.makeCurrent(surface)
    context.doneCurrent()
    return ok


@pytest.fixture(params=["ViewerModel", "Viewer"])
def viewer(request, qapp):
    """napari's model (no canvas) and, where OpenGL is available, the real viewer."""
    if request.param == "ViewerModel":
        from napari.components import ViewerModel

        return ViewerModel()
    if not _opengl(qapp):
        pytest.skip(
            "no OpenGL context on Qt's offscreen platform without an X server: run the "
            "tests under xvfb-run -a (apt-get install xvfb)"
        )
    return request.getfixturevalue("make_napari_viewer")()


def _widget(viewer, stack, name="series"):
    from daskreg.napari._widget import RegisterWidget

    viewer.add_image(stack, name=name)
    widget = RegisterWidget(viewer)
    assert widget.stack_layer.value is viewer.layers[name]
    return widget


@requires_napari
def test_widget_register_button_gives_the_api_result(viewer, qtbot, series):
    from daskreg.napari._widget import STEPS

    widget = _widget(viewer, series.stack)
    widget.mask.value = "lowpass"  # a preview first: the registration must not reuse it
    widget.preview()
    widget.mask.value, widget.n.value, widget.threshold.value = (
        PARAMS["mask"],
        PARAMS["n"],
        PARAMS["threshold"],
    )
    widget.register_button.native.click()
    assert not widget.register_button.enabled  # busy while the worker runs
    qtbot.waitUntil(lambda: widget.register_button.enabled, timeout=120_000)
    with pytest.warns(RegistrationWarning, match=f"left out frames {BAD}"):
        expected = daskreg.register(series.stack, progress=False, **PARAMS)
    got = widget.result
    assert got is not None, widget.status.value
    assert got.params.to_dict() == expected.params.to_dict()
    # The same steps on the same frames: equal to rounding (1e-9 px, threads may sum in
    # another order); a parameter not passed through would move shifts by 0.01-1 px.
    np.testing.assert_allclose(got.shifts.values, expected.shifts.values, atol=1e-9)
    np.testing.assert_allclose(got.average.values, expected.average.values, atol=1e-9)
    np.testing.assert_array_equal(got.bad_frames.values, expected.bad_frames.values)
    assert widget.progress.value == len(STEPS)
    assert f"left out frames {BAD}" in widget.status.value  # the worker's warning shown
    for name in ("series average", "series aligned", "series shift track", "series drift"):
        assert name in viewer.layers
    np.testing.assert_allclose(
        viewer.layers["series average"].data, expected.average.values, atol=1e-9
    )


@requires_napari
@pytest.mark.parametrize(
    ("kind", "n"), [("bandpass", 4.0), ("hann", 6.5), ("gaussian", 3.0), ("auto", 0.0)]
)
def test_preview_matches_the_masks_module(qtbot, qapp, kind, n):
    from napari.components import ViewerModel

    from daskreg.napari._widget import CORRELATION_NAME, MASK_NAME

    # Non-square frames: the mask's per-axis frequencies are checked too.
    data = lattice_series(4, (64, 80), dose=200, seed=5)
    viewer = ViewerModel()
    widget = _widget(viewer, data.stack)
    widget.mask.value, widget.n.value = kind, n
    widget.pair_i.value, widget.pair_j.value = 0, 2
    views = widget.preview()
    if kind == "auto":
        expected = daskreg.Registration(data.stack).fourier_mask.values
    else:
        expected = fourier_mask((64, 80), kind, n, centred=True)
    np.testing.assert_array_equal(views.fourier_mask, expected)
    np.testing.assert_array_equal(viewer.layers[MASK_NAME].data, expected)
    # The correlation peaks at r_02 = s_2 - s_0 (zero shift at the centre): its brightest
    # pixel within one pixel (the Hann window's pull towards zero shift is divided out
    # only in the fit, not in the map), the fitted shift within 0.5 px (0.26 px is the
    # worst here, hann n=6.5 on 64x80 frames). A flipped sign would be 3.5 px off, the
    # pair (0, 1) 1.0 px.
    truth = data.shifts[2] - data.shifts[0]
    corr = viewer.layers[CORRELATION_NAME].data
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape)) - np.array([32, 40])
    assert np.abs(peak - truth).max() <= 1, (peak, truth)
    assert np.abs(views.shift - truth).max() < 0.5, (views.shift, truth)


@requires_napari
def test_widget_refuses_a_single_image(qtbot, qapp):
    from napari.components import ViewerModel

    from daskreg.napari._widget import RegisterWidget

    viewer = ViewerModel()
    viewer.add_image(np.zeros((32, 32)), name="one frame")
    widget = RegisterWidget(viewer)
    widget.register_button.native.click()
    assert widget.worker is None and "no (frame, y, x) image layer" in widget.status.value


@pytest.fixture(scope="session")
def plugin():
    """npe2's plugin manager with daskreg's manifest: the installed one (entry point), or
    this checkout's when the installed daskreg predates it. Registered once and kept:
    napari's application keeps a plugin's commands after npe2 unregisters it."""
    from npe2 import PluginManager, PluginManifest

    manager = PluginManager.instance()
    manager.discover()
    if "daskreg" not in {manifest.name for manifest in manager.iter_manifests()}:
        manager.register(PluginManifest.from_file(MANIFEST))
    return manager


@requires_napari
def test_viewer_opens_a_result_through_the_plugin(viewer, plugin, saved):
    from napari.components import ViewerModel

    # The manifest's file patterns offer daskreg's reader for each of its files.
    for kind in ("zarr", "nc", "tif", "stack"):
        readers = {r.plugin_name for r in plugin.iter_compatible_readers([str(saved[kind])])}
        assert "daskreg" in readers, (kind, readers)

    layers = viewer.open(str(saved["zarr"]), plugin="daskreg")
    assert [layer.name for layer in layers] == [
        "run average",
        "run aligned",
        "run shift track",
        "run drift",
    ]
    assert [type(layer).__name__ for layer in layers] == ["Image", "Image", "Points", "Tracks"]
    np.testing.assert_array_equal(layers[0].data, saved["result"].average.values)
    assert layers[2].features["bad"].tolist() == saved["result"].bad_frames.values.tolist()
    if not isinstance(viewer, ViewerModel):
        # The real viewer's window docks the manifest's widget.
        _, widget = viewer.window.add_plugin_dock_widget("daskreg", "Register stack")
        assert type(widget).__name__ == "RegisterWidget"
        assert widget.stack_layer.value is layers[1]  # the one (frame, y, x) image
