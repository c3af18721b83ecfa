"""The HyperSpy route: daskreg.hyperspy.register / align2D and the "STEM_series" extension.

Stacks from the shared real files, each keeping that file's axes and metadata: the real
5-frame TIA series as it is, and series with known integer drift cut from the real
SrTiO3 images (.emi, .hspy) and from the calibration of the .dm4 (its test pattern has
nothing to register, so a synthetic lattice of its frame size takes its place).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tomllib

import daskreg
import daskreg.hyperspy as dh
from daskreg.errors import ParameterError, RegistrationWarning, StackShapeError
from daskreg.kernels.shift import frame_coverage
from daskreg.synthetic import lattice_series

hs = pytest.importorskip("hyperspy.api", reason="HyperSpy is optional; these tests need it")

ROOT = Path(__file__).resolve().parents[2]
N_FRAMES = 8


def _drift(n: int, seed: int) -> np.ndarray:
    """Integer (dy, dx) per frame: a slow drift with jitter, up to about 6 px."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(-1, 2, size=(n, 2)) + np.array([1, -1]) * (np.arange(n)[:, None] % 2)
    return np.cumsum(steps, axis=0) - steps[0]


def _windows(image: np.ndarray, shifts: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Frames of ``size``^2 cut from ``image``: frame i shows it displaced by +shifts[i].

    Cut, not rolled, so that no frame has wrapped-around content; noise at 3 % of the
    image's spread makes each frame its own realisation.
    """
    y0 = (image.shape[0] - size) // 2
    x0 = (image.shape[1] - size) // 2
    rng = np.random.default_rng(seed)
    noise = 0.03 * float(image.std())
    frames = [
        image[y0 - dy : y0 - dy + size, x0 - dx : x0 - dx + size]
        + rng.normal(0, noise, (size, size))
        for dy, dx in shifts
    ]
    return np.stack(frames).astype(np.float32)


def _stack_of(source, frames: np.ndarray):
    """A Signal2D of ``frames`` with the signal axes, metadata and original metadata of
    ``source`` (offsets moved to the frames' window)."""
    nav = source.axes_manager.navigation_axes
    frame_axis = (
        nav[0].get_axis_dictionary() if nav else {"name": "frame", "scale": 1.0, "units": "s"}
    )
    frame_axis = {**frame_axis, "size": len(frames), "navigate": True}
    frame_axis.pop("_type", None)
    image_axes = [
        {**axis.get_axis_dictionary(), "size": size, "navigate": False}
        for axis, size in zip(
            reversed(source.axes_manager.signal_axes), frames.shape[1:], strict=True
        )
    ]
    for axis in image_axes:
        axis.pop("_type", None)
    return hs.signals.Signal2D(
        frames,
        axes=[frame_axis, *image_axes],
        metadata=source.metadata.as_dictionary(),
        original_metadata=source.original_metadata.as_dictionary(),
    )


def _case(name: str, data_dir: Path):
    """(signal, true shifts or None) for one shared file."""
    if name == "emi_series":
        return hs.load(data_dir / "03_Scanning_Preview.emi"), None
    if name == "dm4_axes":
        source = hs.load(data_dir / "dmTest_3D_int16_64x65x66.dm4")
        ny, nx = source.data.shape[1:]
        series = lattice_series(N_FRAMES, (ny, nx), dose=400, seed=5)
        return _stack_of(source, series.stack.astype(np.float32)), series.shifts
    shifts = _drift(N_FRAMES, seed=len(name))
    file, size = {
        "emi_sto": ("16_STOimage.emi", 256),
        "hspy_adf": ("atomap_STO_ADF_cropped.hspy", 192),
    }[name]
    source = hs.load(data_dir / file)
    image = np.asarray(source.data, dtype=np.float64)
    return _stack_of(source, _windows(image, shifts, size, seed=7)), shifts


CASES = ["emi_series", "emi_sto", "hspy_adf", "dm4_axes"]


@pytest.fixture(scope="module", params=CASES)
def routed(request, data_dir):
    """One case registered by the HyperSpy route and by daskreg.register."""
    signal, truth = _case(request.param, data_dir)
    before = {
        "axes": [a.get_axis_dictionary() for a in signal.axes_manager._axes],
        "metadata": signal.metadata.as_dictionary(),
        "original_metadata": signal.original_metadata.as_dictionary(),
    }
    aligned = dh.register(signal, progress=False)
    expected = daskreg.register(np.asarray(signal.data), progress=False)
    return request.param, signal, truth, before, aligned, expected


@pytest.mark.realdata
def test_the_route_gives_register_s_shifts_on_the_same_data(routed):
    _, signal, _, _, aligned, expected = routed
    record = aligned.metadata.daskreg
    # The same frames through the same method in the same process: equal to rounding.
    np.testing.assert_allclose(record.shifts, expected.shifts.values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        record.shift_uncertainty, expected.shift_uncertainty.values, rtol=0, atol=1e-9
    )
    np.testing.assert_array_equal(record.bad_frames, np.flatnonzero(expected.bad_frames))
    assert json.loads(record.parameters) == json.loads(expected.dataset.attrs["params"])
    # The caller's signal is untouched: a new signal is returned.
    assert "daskreg" not in signal.metadata


@pytest.mark.realdata
def test_the_shifts_are_the_true_drift_with_hyperspy_s_sign(routed):
    name, _, truth, _, aligned, _ = routed
    if truth is None:
        # The TIA preview has no drift (shared/data/README.md: below 0.1 px).
        assert np.abs(aligned.metadata.daskreg.shifts).max() < 0.2
        return
    relative = truth - truth.mean(axis=0)
    # Integer drift of real SrTiO3 (3 % noise) or a lattice at 400 counts: daskreg's
    # errors there are a few hundredths of a pixel; 0.1 px is far below any sign error.
    np.testing.assert_allclose(aligned.metadata.daskreg.shifts, relative, rtol=0, atol=0.1)


@pytest.mark.realdata
def test_axes_keep_scale_and_units_and_follow_the_crop(routed):
    _, signal, _, before, aligned, expected = routed
    attrs = expected.dataset.attrs
    axes = aligned.axes_manager._axes
    old = before["axes"]
    # Array order: frame, y, x.
    assert axes[0].get_axis_dictionary() == old[0]
    for axis, previous, low, high in zip(
        axes[1:],
        old[1:],
        (attrs["ymin"], attrs["xmin"]),
        (attrs["ymax"], attrs["xmax"]),
        strict=True,
    ):
        now = axis.get_axis_dictionary()
        assert (now["name"], now["units"], now["scale"]) == tuple(
            previous[key] for key in ("name", "units", "scale")
        )
        assert axis.size == high - low
        assert axis.offset == pytest.approx(previous["offset"] + low * previous["scale"])
    # The used frames' mean is daskreg's (cropped) average.
    used = np.flatnonzero(~expected.bad_frames.values)
    np.testing.assert_allclose(
        np.asarray(aligned.data)[used].mean(axis=0),
        expected.average.values,
        rtol=1e-6,
        atol=1e-6 * float(np.abs(expected.average).max()),
    )


@pytest.mark.realdata
def test_metadata_and_original_metadata_are_kept(routed, tmp_path):
    _, _, _, before, aligned, _ = routed
    metadata = aligned.metadata.as_dictionary()
    record = metadata.pop("daskreg")
    np.testing.assert_equal(metadata, before["metadata"])  # nested, with arrays
    np.testing.assert_equal(aligned.original_metadata.as_dictionary(), before["original_metadata"])
    assert record["shifts"].shape == (aligned.axes_manager.navigation_size, 2)
    assert set(record) >= {"shift_uncertainty", "bad_frames", "parameters", "crop", "reference"}
    # Saved and read back by HyperSpy, the record is intact.
    aligned.save(tmp_path / "aligned.hspy")
    back = hs.load(tmp_path / "aligned.hspy")
    np.testing.assert_array_equal(back.metadata.daskreg.shifts, record["shifts"])
    assert back.metadata.daskreg.parameters == record["parameters"]


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["emi_series", "emi_sto"])
def test_a_lazy_signal_is_registered_and_aligned_lazily(name, data_dir, tmp_path):
    if name == "emi_series":
        path = data_dir / "03_Scanning_Preview.emi"
    else:
        path = tmp_path / "series.hspy"
        _case(name, data_dir)[0].save(path)
    lazy = hs.load(path, lazy=True)
    aligned = dh.register(lazy, progress=False)
    assert aligned._lazy and type(aligned).__name__ == "LazySignal2D"
    eager = dh.register(hs.load(path), progress=False)
    np.testing.assert_allclose(
        aligned.metadata.daskreg.shifts, eager.metadata.daskreg.shifts, rtol=0, atol=1e-9
    )
    for ours, theirs in zip(aligned.axes_manager._axes, eager.axes_manager._axes, strict=True):
        assert ours.get_axis_dictionary() == theirs.get_axis_dictionary()
    # Fourier shifts of the same frames, chunk by chunk or at once: equal to rounding.
    np.testing.assert_allclose(aligned.data.compute(), eager.data, rtol=1e-9, atol=1e-6)


@pytest.fixture(scope="module")
def sto(data_dir):
    """The .emi SrTiO3 case: a Signal2D stack with known integer drift."""
    return _case("emi_sto", data_dir)


@pytest.mark.realdata
def test_align2d_shifts_have_hyperspy_s_sign_and_reference(sto):
    signal, truth = sto
    theirs = signal.deepcopy().estimate_shift2D(sub_pixel_factor=10, show_progressbar=False)
    signal = signal.deepcopy()
    signal.axes_manager.indices = (3,)
    ours = dh.align2D(signal, progress=False)
    # HyperSpy's default reference is the current frame; integer drift of a real image:
    # both within HyperSpy's 0.1 px sub-pixel step of the truth.
    np.testing.assert_allclose(ours, truth - truth[3], rtol=0, atol=0.1)
    np.testing.assert_allclose(theirs, truth - truth[0], rtol=0, atol=0.1)
    np.testing.assert_allclose(ours - ours[0], theirs, rtol=0, atol=0.15)
    assert signal.metadata.daskreg.reference == "frame 3"
    np.testing.assert_array_equal(signal.metadata.daskreg.shifts, ours)
    # In place and cropped: the current frame is where it was.
    first = signal.axes_manager.signal_axes
    assert first[0].size < 256 and first[1].size < 256


@pytest.mark.realdata
def test_align2d_measures_on_the_roi_and_aligns_the_whole_frames(sto):
    signal, truth = sto
    expected = dh.register(signal.isig[40:200, 60:220], progress=False).metadata.daskreg.shifts
    signal = signal.deepcopy()
    x, y = signal.axes_manager.signal_axes
    # HyperSpy's roi: (left, right, top, bottom); floats are axis values.
    roi = (x.index2value(40), x.index2value(200), y.index2value(60), y.index2value(220))
    shifts = dh.align2D(signal, roi=roi, crop=False, progress=False)
    np.testing.assert_allclose(shifts, expected - expected[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(shifts, truth - truth[0], rtol=0, atol=0.1)
    assert signal.axes_manager.signal_shape == (256, 256)


@pytest.mark.realdata
def test_align2d_expand_keeps_every_frame_whole(sto):
    signal, truth = sto
    frames = np.asarray(signal.data, dtype=np.float64)
    shifts = (truth - truth[0]).astype(float)  # integers: the moved frames are exact
    dh.align2D(signal.deepcopy(), shifts=shifts, expand=True)  # the caller's copy only
    expanded = signal.deepcopy()
    assert dh.align2D(expanded, shifts=shifts, expand=True) is None
    before = np.ceil(np.maximum(0, shifts.max(axis=0))).astype(int)
    after = np.ceil(np.maximum(0, -shifts.min(axis=0))).astype(int)
    y_axis, x_axis = expanded.axes_manager.signal_axes[1], expanded.axes_manager.signal_axes[0]
    assert (y_axis.size, x_axis.size) == tuple(256 + before + after)
    old_y = signal.axes_manager.signal_axes[1]
    assert y_axis.offset == pytest.approx(old_y.offset - before[0] * old_y.scale)
    data = np.asarray(expanded.data)
    for k, (dy, dx) in enumerate(shifts.astype(int)):
        top, left = before[0] - dy, before[1] - dx
        # An integer Fourier shift moves pixels exactly (to rounding): the frame, whole.
        np.testing.assert_allclose(
            data[k, top : top + 256, left : left + 256], frames[k], rtol=0, atol=1e-3
        )
        outside = np.ones(data.shape[1:], bool)
        outside[top : top + 256, left : left + 256] = False
        assert np.isnan(data[k][outside]).all()


def test_align2d_without_crop_fills_what_a_frame_does_not_cover():
    series = lattice_series(6, (64, 80), seed=4)
    signal = hs.signals.Signal2D(series.stack)
    shifts = series.shifts - series.shifts.mean(axis=0)
    shifts[2] = np.nan  # a bad frame
    assert dh.align2D(signal, shifts=shifts, crop=False, fill_value=-1.0) is None
    assert signal.data.shape == series.stack.shape
    rows, cols = frame_coverage(shifts, (64, 80))
    for k in range(6):
        covered = rows[k][:, None] & cols[k][None, :]
        assert (signal.data[k][~covered] == -1).all()
        assert (signal.data[k][covered] != -1).all() or k == 2
    assert (signal.data[2] == -1).all()


def test_align2d_with_an_interpolation_order_is_hyperspy_s_own_shift():
    series = lattice_series(5, (64, 64), seed=6)
    shifts = series.shifts - series.shifts[0]
    # Copies: HyperSpy's align2D writes into the array it was given.
    ours = hs.signals.Signal2D(series.stack.copy())
    theirs = hs.signals.Signal2D(series.stack.copy())
    dh.align2D(ours, shifts=shifts, interpolation_order=1)
    theirs.align2D(shifts=shifts, interpolation_order=1, show_progressbar=False)
    np.testing.assert_array_equal(ours.data, theirs.data)
    assert ours.axes_manager.signal_shape == theirs.axes_manager.signal_shape


def test_hyperspy_only_options_are_ignored_with_a_warning_and_bad_input_refused():
    series = lattice_series(6, (64, 64), seed=2)
    signal = hs.signals.Signal2D(series.stack)
    with pytest.warns(RegistrationWarning, match=r"\['medfilter', 'sobel'\] are ignored"):
        dh.align2D(signal, sobel=False, medfilter=True, reference="stat", progress=False)
    assert signal.metadata.daskreg.reference == "mean position of the used frames"
    with pytest.raises(ParameterError, match=r"shape \(5, 2\) for 6 frames"):
        dh.align2D(hs.signals.Signal2D(series.stack), shifts=np.zeros((5, 2)))
    with pytest.raises(ParameterError, match="reference='first'"):
        dh.align2D(hs.signals.Signal2D(series.stack), reference="first")
    with pytest.raises(StackShapeError, match=r"one navigation axis \(the frames\)"):
        dh.register(hs.signals.Signal2D(series.stack[0]))
    with pytest.raises(StackShapeError, match="expected a HyperSpy Signal2D"):
        dh.register(series.stack)


# -- the extension: entry point, yaml, signal type -------------------------------------


def _declared_entry_points() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["entry-points"]["hyperspy.extensions"]


def test_pyproject_declares_the_extension_and_ships_its_yaml():
    assert _declared_entry_points() == {"daskreg": "daskreg"}
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "hyperspy_extension.yaml" in tool["package-data"]["daskreg"]
    assert (ROOT / "daskreg" / "hyperspy_extension.yaml").is_file()


def test_hyperspy_discovers_the_extension_and_the_signal_type_resolves(tmp_path):
    # HyperSpy reads its extensions once, at import: a fresh interpreter, with the entry
    # points as pyproject.toml declares them (the installed metadata may predate them).
    info = tmp_path / "daskreg_probe-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: daskreg-probe\nVersion: 0\n")
    lines = [f"{k} = {v}" for k, v in _declared_entry_points().items()]
    (info / "entry_points.txt").write_text("[hyperspy.extensions]\n" + "\n".join(lines) + "\n")
    script = textwrap.dedent(
        f"""
        import importlib.metadata, numpy as np
        import hyperspy.api as hs
        from hyperspy.extensions import ALL_EXTENSIONS
        names = [e.name for e in importlib.metadata.entry_points(group="hyperspy.extensions")]
        assert "daskreg" in names, names
        assert ALL_EXTENSIONS["signals"]["STEMSeries"]["signal_type"] == "STEM_series"
        from daskreg.synthetic import lattice_series
        s = hs.signals.Signal2D(lattice_series(6, (64, 64), seed=1).stack)
        s.set_signal_type("STEM_series")
        assert type(s).__name__ == "STEMSeries", type(s)
        aligned = s.register(progress=False)
        assert type(aligned).__name__ == "STEMSeries"
        assert aligned.metadata.daskreg.shifts.shape == (6, 2)
        lazy = s.as_lazy()
        assert type(lazy).__name__ == "LazySTEMSeries", type(lazy)
        assert lazy.register(progress=False)._lazy
        s.save({str(tmp_path / "s.hspy")!r})
        assert type(hs.load({str(tmp_path / "s.hspy")!r})).__name__ == "STEMSeries"
        plain = hs.signals.Signal2D(np.zeros((3, 8, 8)))
        plain.set_signal_type("image_series")
        assert type(plain).__name__ == "STEMSeries"
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_the_installed_daskreg_lists_the_entry_point():
    # The installed record, not the build's daskreg.egg-info that setuptools leaves in
    # the checkout (found first from the repository root, and without direct_url.json).
    installed = [
        d
        for d in importlib.metadata.distributions(name="daskreg")
        if d.read_text("direct_url.json")
    ]
    dist = installed[0] if installed else importlib.metadata.distribution("daskreg")
    origin = dist.read_text("direct_url.json")
    url = json.loads(origin)["url"] if origin else ""
    if url.removeprefix("file://").rstrip("/") != str(ROOT):
        pytest.skip(f"the installed daskreg is not this tree ({url or 'no direct_url'})")
    names = [e.name for e in dist.entry_points if e.group == "hyperspy.extensions"]
    assert names == ["daskreg"], "installed metadata predates pyproject: pip install -e ."


def test_daskreg_and_its_hyperspy_module_import_without_hyperspy():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["hyperspy"] = None  # as if not installed
        import daskreg, daskreg.hyperspy
        try:
            import daskreg._hyperspy_signals  # the classes subclass HyperSpy's
        except ImportError:
            print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.stdout.strip() == "ok", done.stderr[-3000:]
