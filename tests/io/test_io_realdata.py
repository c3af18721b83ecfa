"""Contract of open_stack over every real file in ../shared/data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
from rsciio import digitalmicrograph, emd, hspy, tia

from daskreg.errors import ParameterError, RegistrationWarning, StackShapeError
from daskreg.io import open_stack

pytestmark = pytest.mark.realdata


@dataclass(frozen=True)
class Expected:
    name: str
    shape: tuple[int, int, int]
    dtype: str
    pixel_size: tuple[float, float]
    unit: str = "nm"
    warns: bool = False


# Pixel sizes as README.md gives them; the DM4 test pattern stores y in nm and x in pm.
CASES = [
    Expected("16_STOimage.emi", (1, 1024, 1024), "uint16", (0.010013, 0.010013)),
    Expected("16_STOimage_1.ser", (1, 1024, 1024), "uint16", (0.010013, 0.010013)),
    Expected("03_Scanning_Preview.emi", (5, 128, 128), "uint16", (0.38435, 0.38435)),
    Expected("03_Scanning_Preview_1.ser", (5, 128, 128), "uint16", (0.38435, 0.38435)),
    Expected("Acquisition_18.emd", (1, 1024, 1024), "uint16", (0.012247, 0.012247)),
    Expected("velox_STEM_HAADF_Diffraction_Micro.emd", (1, 128, 128), "uint16", (87.37, 87.37)),
    Expected("atomap_STO_ADF_cropped.hspy", (1, 400, 380), "float16", (0.009326, 0.009326)),
    Expected("atomap_STO_ABF_cropped.hspy", (1, 400, 380), "float16", (0.009326, 0.009326)),
    Expected("multi_signal.dm3", (1, 512, 512), "uint16", (0.017752, 0.017752), warns=True),
    Expected("dmTest_3D_int16_64x65x66.dm4", (66, 65, 64), "int16", (3.0, 0.002)),
    Expected("derived_STO_HAADF_drift_20x512.tif", (20, 512, 512), "uint16", (0.010013, 0.010013)),
]

_RSCIIO = {
    ".dm3": digitalmicrograph,
    ".dm4": digitalmicrograph,
    ".emd": emd,
    ".emi": tia,
    ".ser": tia,
    ".hspy": hspy,
}


def direct_read(path: Path) -> np.ndarray:
    """The file read eagerly by its own library, as a reference."""
    if path.suffix == ".tif":
        return tifffile.imread(path)
    return np.asarray(_RSCIIO[path.suffix].file_reader(str(path))[0]["data"])


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_open_stack_contract(case: Expected, data_dir: Path, quiet) -> None:
    path = data_dir / case.name
    if case.warns:
        with pytest.warns(RegistrationWarning, match=r"took \[0\] 'HAADF'.*signal="):
            stack = open_stack(path)
    else:
        with quiet():
            stack = open_stack(path)

    assert isinstance(stack.data, da.Array)
    assert stack.dims == ("frame", "y", "x")
    assert stack.shape == case.shape
    assert stack.dtype == np.dtype(case.dtype)
    assert stack.attrs["pixel_size"] == pytest.approx(case.pixel_size, rel=1e-4)
    assert stack.attrs["unit"] == case.unit
    assert stack.attrs["source"] == str(path)
    step = (float(stack.y[1] - stack.y[0]), float(stack.x[1] - stack.x[0]))
    assert step == pytest.approx(case.pixel_size, rel=1e-4)
    np.testing.assert_array_equal(stack.frame, np.arange(case.shape[0]))

    reference = direct_read(path).reshape(case.shape)
    frames = sorted({0, case.shape[0] - 1})
    np.testing.assert_array_equal(stack[frames, ::7, ::5].values, reference[frames, ::7, ::5])


def test_hspy_without_unit_says_nm_was_assumed(data_dir: Path) -> None:
    stack = open_stack(data_dir / "atomap_STO_ADF_cropped.hspy")
    assert "assumed nm" in stack.attrs["calibration_note"]


def test_file_titles_and_metadata_are_kept(data_dir: Path) -> None:
    stack = open_stack(data_dir / "velox_STEM_HAADF_Diffraction_Micro.emd")
    assert stack.attrs["signal_title"] == "HAADF"
    assert '"Instrument"' in stack.attrs["original_metadata"]


@pytest.mark.parametrize("signal", [0, "HAADF"])
def test_multi_signal_choice_by_index_or_title_is_silent(signal, data_dir: Path, quiet) -> None:
    with quiet():
        stack = open_stack(data_dir / "multi_signal.dm3", signal=signal)
    assert stack.shape == (1, 512, 512)


def test_multi_signal_plot_is_not_an_image(data_dir: Path) -> None:
    with pytest.raises(StackShapeError, match="'Plot'.*1 signal dimension"):
        open_stack(data_dir / "multi_signal.dm3", signal="Plot")


@pytest.mark.parametrize("signal", [2, "HAADF2", 1.0])
def test_multi_signal_unknown_choice_lists_the_signals(signal, data_dir: Path) -> None:
    with pytest.raises(ParameterError, match=r"\[0\] 'HAADF'.*\[1\] 'Plot'"):
        open_stack(data_dir / "multi_signal.dm3", signal=signal)


def test_tiff_chunks_are_whole_frames(data_dir: Path) -> None:
    stack = open_stack(data_dir / "derived_STO_HAADF_drift_20x512.tif", chunks=6)
    assert stack.data.chunks == ((6, 6, 6, 2), (512,), (512,))
