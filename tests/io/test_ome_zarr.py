"""OME-Zarr (NGFF 0.5): stacks and results daskreg writes validate and read back calibrated.

The validator is ome-zarr-models (its ``v05`` models check the NGFF 0.5 rules: axes
types, order and uniqueness, ``dimension_names`` equal to the axes' names, scale and
translation of the right length, every dataset path an array of the axes' rank).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import daskreg
from daskreg.errors import DaskregError, FileFormatError, StackShapeError
from daskreg.io import ingest, open_stack, read_frame_shifts
from daskreg.io.ome_zarr import FRAME_TRANSFORMATIONS
from daskreg.synthetic import lattice_series

ome_zarr_models_v05 = pytest.importorskip("ome_zarr_models.v05")

# Physical calibration of the synthetic series: pixel size and origin in the source's
# unit, frame interval in seconds; what NGFF must carry is this converted to nm.
UNITS_TO_NM = {"nm": 1.0, "Å": 0.1, "µm": 1e3}


def calibrated_series(unit: str = "Å", *, seconds: float | None = 0.25) -> xr.DataArray:
    series = lattice_series(5, (40, 36), seed=3)
    coords = {
        "y": ("y", 1.5 + 0.391 * np.arange(40), {"units": unit}),
        "x": ("x", -0.25 + 0.391 * np.arange(36), {"units": unit}),
    }
    if seconds is not None:
        coords["frame"] = ("frame", 10.0 + seconds * np.arange(5), {"units": "s"})
    return xr.DataArray(series.stack.astype(np.float32), dims=("frame", "y", "x"), coords=coords)


def validated_image(path: Path):
    """The ome-zarr-models model of the image group at ``path`` (raises if not valid)."""
    return ome_zarr_models_v05.Image.from_zarr(zarr.open_group(str(path), mode="r"))


def level0(image) -> tuple[list, list]:
    scale, translation = image.ome_attributes.multiscales[0].datasets[0].coordinateTransformations
    return list(scale.scale), list(translation.translation)


@pytest.mark.parametrize("unit", ["nm", "Å", "µm"])
@pytest.mark.parametrize("seconds", [0.25, None])
def test_ingested_ome_zarr_validates_and_reopens_calibrated(
    tmp_path: Path, unit: str, seconds: float | None
) -> None:
    source = calibrated_series(unit, seconds=seconds)
    store = tmp_path / "series.ome.zarr"
    ingest(source, store)

    image = validated_image(store)
    axes = image.ome_attributes.multiscales[0].axes
    assert [(a.name, a.type) for a in axes] == [("frame", "time"), ("y", "space"), ("x", "space")]
    assert [a.unit for a in axes] == ["second" if seconds else None, "nanometer", "nanometer"]
    nm = UNITS_TO_NM[unit]
    scale, translation = level0(image)
    # 1e-9 relative: the scale is the mean coordinate step, exact up to float rounding.
    np.testing.assert_allclose(scale, [seconds or 1.0, 0.391 * nm, 0.391 * nm], rtol=1e-9)
    np.testing.assert_allclose(
        translation, [10.0 if seconds else 0.0, 1.5 * nm, -0.25 * nm], rtol=1e-9
    )

    reopened = open_stack(store)
    np.testing.assert_array_equal(reopened.values, source.values)
    assert reopened.attrs["unit"] == "nm"
    np.testing.assert_allclose(reopened.attrs["pixel_size"], (0.391 * nm, 0.391 * nm), rtol=1e-9)
    np.testing.assert_allclose(reopened.y, source.y * nm, rtol=1e-9)
    np.testing.assert_allclose(reopened.x, source.x * nm, rtol=1e-9, atol=1e-12)
    if seconds:
        np.testing.assert_allclose(reopened.frame, source.frame)
        assert reopened.frame.attrs["units"] == "s"
    else:
        np.testing.assert_array_equal(reopened.frame, np.arange(5))


def test_ome_zarr_is_still_the_daskreg_store(tmp_path: Path) -> None:
    store = tmp_path / "series.ome.zarr"
    stack = ingest(calibrated_series(), store, chunks=2)
    # xarray reads the same array, with its coordinates, as from a plain daskreg store.
    plain = xr.open_zarr(store, consolidated=False)["stack"]
    np.testing.assert_array_equal(plain.values, stack.values)
    np.testing.assert_allclose(plain.y, stack.y)
    assert zarr.open_array(str(store / "stack"), mode="r").chunks == (2, 40, 36)


@pytest.mark.parametrize(
    ("path", "ome_zarr", "expected"),
    [
        ("s.ome.zarr", None, True),
        ("s.zarr", None, False),
        ("s.zarr", True, True),
        ("s.OME.ZARR", None, True),
        ("s.ome.zarr", False, False),
    ],
)
def test_ome_metadata_follows_the_suffix_unless_asked(
    tmp_path: Path, path: str, ome_zarr: bool | None, expected: bool
) -> None:
    ingest(calibrated_series(), tmp_path / path, ome_zarr=ome_zarr)
    assert ("ome" in zarr.open_group(str(tmp_path / path), mode="r").attrs) is expected


def foreign_image(path: Path, *, zarr_format: int = 3) -> np.ndarray:
    """An NGFF image as other tools write it: level "0" of two, axes t/c/y/x in µm."""
    data = np.random.default_rng(0).random((4, 2, 24, 20)).astype(np.float32)
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    names = ("t", "c", "y", "x")
    for level, factor in (("0", 1), ("1", 2)):
        kwargs = {"dimension_names": names} if zarr_format == 3 else {}
        array = group.create_array(
            level, shape=(4, 2, 24 // factor, 20 // factor), dtype="f4", **kwargs
        )
        array[...] = data[:, :, ::factor, ::factor]
    axes = [
        {"name": "t", "type": "time", "unit": "millisecond"},
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    multiscale = {
        "axes": axes,
        "datasets": [
            {
                "path": level,
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, 1.0, 0.5 * factor, 0.25 * factor]},
                    {"type": "translation", "translation": [0.0, 0.0, 3.0, 1.0]},
                ],
            }
            for level, factor in (("0", 1), ("1", 2))
        ],
        # The image-level transformation applies after each dataset's.
        "coordinateTransformations": [
            {"type": "scale", "scale": [40.0, 1.0, 2.0, 2.0]},
            {"type": "translation", "translation": [100.0, 0.0, 0.0, 0.5]},
        ],
    }
    if zarr_format == 3:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    else:
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    return data


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_any_ngff_image_opens_as_calibrated_stack(tmp_path: Path, zarr_format: int) -> None:
    store = tmp_path / "foreign.zarr"
    data = foreign_image(store, zarr_format=zarr_format)
    if zarr_format == 3:
        validated_image(store)
    stack = open_stack(store)
    # Level 0; the channel is a leading dim before (frame, y, x).
    assert stack.dims == ("c", "frame", "y", "x")
    np.testing.assert_array_equal(stack.values, data.transpose(1, 0, 2, 3))
    # y: (i * 0.5 + 3) * 2 µm; x: (i * 0.25 + 1) * 2 + 0.5 µm; frames: i * 40 + 100 ms.
    assert stack.attrs["unit"] == "nm"
    np.testing.assert_allclose(stack.attrs["pixel_size"], (1000.0, 500.0))
    np.testing.assert_allclose(stack.y[:2], [6000.0, 7000.0])
    np.testing.assert_allclose(stack.x[:2], [2500.0, 3000.0])
    np.testing.assert_allclose(stack.frame, [100.0, 140.0, 180.0, 220.0])
    assert stack.frame.attrs["units"] == "ms"


def registered(tmp_path: Path):
    series = lattice_series(8, (128, 128), seed=5, dose=2000.0, bad_frames={3: "blank"})
    stack = xr.DataArray(
        series.stack,
        dims=("frame", "y", "x"),
        coords={
            "y": ("y", 2.0 + 0.0391 * np.arange(128), {"units": "nm"}),
            "x": ("x", 0.0391 * np.arange(128), {"units": "nm"}),
        },
    )
    with pytest.warns(daskreg.errors.RegistrationWarning):
        result = daskreg.register(open_stack(stack), window_radius=4)
    return series, stack, result


def test_result_store_records_frame_shifts_as_ngff_translations(tmp_path: Path) -> None:
    series, _, result = registered(tmp_path)
    store = result.save(tmp_path / "run.zarr")

    image = validated_image(store)
    scale, origin = level0(image)
    np.testing.assert_allclose(scale, [0.0391, 0.0391], rtol=1e-9)
    np.testing.assert_allclose(origin, [2.0, 0.0], atol=1e-12)

    # Read back from the NGFF transformations: the result's shifts, NaN for the blank
    # frame (1e-12 px: only the float rounding of origin - shift * scale and back).
    shifts = read_frame_shifts(store)
    np.testing.assert_allclose(shifts, result.shifts.values, atol=1e-12)
    assert np.isnan(shifts[3]).all()

    # Against the truth: each frame's translation puts its specimen at the same place,
    # so translation differences are minus the true shift differences times the pixel
    # size (0.05 px: the registration's error on this 128^2 dose-2000 series is 0.013 px;
    # 64^2 frames are not used, their shifts come out 2.5 % too large, ~0.15 px).
    entries = zarr.open_group(str(store), mode="r").attrs[FRAME_TRANSFORMATIONS]
    used = [i for i in range(8) if i != 3]
    translations = np.array(
        [entries[i]["coordinateTransformations"][1]["translation"] for i in used]
    )
    truth = series.shifts[used]
    np.testing.assert_allclose(
        (translations - translations[0]) / 0.0391, -(truth - truth[0]), atol=0.05
    )
    # The NGFF attributes are not part of the result: it loads back identical.
    loaded = daskreg.load_result(store)
    assert "ome" not in loaded.dataset.attrs
    assert FRAME_TRANSFORMATIONS not in loaded.dataset.attrs
    xr.testing.assert_identical(loaded.dataset, result.dataset)


def test_aligned_stack_saved_as_ome_zarr_matches_the_average(tmp_path: Path) -> None:
    _, stack, result = registered(tmp_path)
    result.apply(open_stack(stack), save_stack=tmp_path / "aligned.ome.zarr")
    validated_image(tmp_path / "aligned.ome.zarr")
    aligned = open_stack(tmp_path / "aligned.ome.zarr")
    # The cropped region's origin and the used frames' mean (float32 store: 1e-5).
    np.testing.assert_allclose(aligned.y, result.average.y, rtol=1e-9)
    np.testing.assert_allclose(aligned.x, result.average.x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(aligned.mean("frame"), result.average, rtol=1e-5, atol=1e-5)


def test_series_stack_is_refused_for_ome_zarr_and_nothing_is_left(tmp_path: Path) -> None:
    four_d = np.zeros((2, 3, 16, 16), dtype=np.float32)
    with pytest.raises(StackShapeError, match=r"\('series', 'frame', 'y', 'x'\).*signal=k"):
        ingest(four_d, tmp_path / "s.ome.zarr")
    assert list(tmp_path.iterdir()) == []


def test_damaged_ngff_metadata_is_a_file_format_error(tmp_path: Path) -> None:
    store = tmp_path / "bad.ome.zarr"
    ingest(calibrated_series(), store)
    group = zarr.open_group(str(store), mode="r+")
    ome = group.attrs["ome"]
    ome["multiscales"][0]["axes"] = ome["multiscales"][0]["axes"][1:]
    group.attrs["ome"] = ome
    with pytest.raises(FileFormatError, match=r"lists 2 axes for the 3-D array 'stack'.*ingest"):
        open_stack(store)
    ome["multiscales"][0]["axes"] = [{"name": n, "type": "time"} for n in ("frame", "y", "x")]
    group.attrs["ome"] = ome
    with pytest.raises(FileFormatError, match="fewer than two of type 'space'"):
        open_stack(store)


def test_frame_shifts_of_a_store_without_them_are_refused(tmp_path: Path) -> None:
    ingest(calibrated_series(), tmp_path / "s.ome.zarr")
    with pytest.raises(DaskregError, match=r"s\.ome\.zarr.*load_result\(path\)\.shifts"):
        read_frame_shifts(tmp_path / "s.ome.zarr")
    with pytest.raises(FileNotFoundError, match="no such result store"):
        read_frame_shifts(tmp_path / "missing.zarr")


def test_frame_transformations_are_plain_json(tmp_path: Path) -> None:
    _, _, result = registered(tmp_path)
    store = result.save(tmp_path / "run.zarr")
    text = (store / "zarr.json").read_text()
    attributes = json.loads(text)["attributes"]
    assert attributes["ome"]["version"] == "0.5"
    assert attributes[FRAME_TRANSFORMATIONS][3] == {"frame": 3, "coordinateTransformations": None}


def test_dask_engine_save_stack_writes_ome_zarr(tmp_path: Path) -> None:
    _, stack, _ = registered(tmp_path)
    target = tmp_path / "aligned.ome.zarr"
    with pytest.warns(daskreg.errors.RegistrationWarning):
        result = daskreg.register(
            open_stack(stack),
            scheduler="threads",
            chunks=4,
            save_stack=str(target),
            window_radius=4,
            progress=False,
        )
    validated_image(target)
    aligned = open_stack(target)
    # Uncropped, every frame (NaN where unused), on the input's physical grid.
    np.testing.assert_allclose(aligned.y, stack.y, rtol=1e-9)
    used = ~result.bad_frames.values
    assert np.isnan(aligned.values[~used]).all()
    mean = aligned.values[used].mean(axis=0)
    # float32 storage: 1e-6 relative, as the plain store's test.
    np.testing.assert_allclose(mean, result.average_full.values, atol=1e-6 * np.abs(mean).max())


def test_dask_engine_refuses_an_ome_zarr_of_series_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    series = np.stack([lattice_series(4, (32, 32), seed=s).stack for s in (0, 1)])

    def no_work(*args, **kwargs):
        raise AssertionError("a cluster was opened before the store was checked")

    monkeypatch.setattr("daskreg.parallel.engine.cluster.open_client", no_work)
    with pytest.raises(StackShapeError, match="signal=k"):
        daskreg.register_series(
            series, scheduler="threads", save_stack=str(tmp_path / "a.ome.zarr"), progress=False
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "ending"), [("reg.ome.zarr", ".ome.zarr"), ("reg.zarr", ".zarr"), ("a.b.tif", ".tif")]
)
def test_cli_stages_an_ome_zarr_under_an_ome_zarr_name(
    tmp_path: Path, name: str, ending: str
) -> None:
    # daskreg register --save-stack reg.ome.zarr writes to the staged name first.
    from daskreg.cli.outputs import Transaction

    staged = Transaction({"stack": tmp_path / name}, overwrite=False).staged("stack")
    assert staged.parent == tmp_path and staged.name.startswith(".")
    assert staged.name.endswith(ending) and staged.name.count(ending) == 1
