"""The method parameters' flags, and the keywords of the Python API from flags and ``--config``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from daskreg.errors import ParameterError
from daskreg.kernels.correlate import CORRELATION_KINDS, WINDOWS
from daskreg.kernels.masks import MASK_KINDS
from daskreg.kernels.peaks import FIND_MAXIMA
from daskreg.parallel.execution import Execution
from daskreg.params import RegistrationParams
from daskreg.signatures import PARAM_NAMES, check_names

__all__ = ["FLAG_PARAMS", "PARAM_FLAGS", "execution", "params", "signal_choice"]


def _frame_range(text: str) -> tuple[int, int | None]:
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start or 0), int(stop) if stop else None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--frames {text!r} is not START:STOP (a half-open range, e.g. 0:20 or 5:)"
        ) from None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of frame indices, e.g. 3,7"
        ) from None


def signal_choice(text: str) -> int | str:
    """``--signal``: an index if the text is an integer, else a title."""
    return int(text) if text.lstrip("-").isdigit() else text


# Flag -> parameter of RegistrationParams; default None means "not given" (config or API
# default applies).
PARAM_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("mask", {"choices": (*MASK_KINDS, "elliptical"), "help": "Fourier mask kind"}),
    ("n", {"type": float, "help": "mask cutoff: ignore features smaller than ~N px"}),
    ("n1", {"type": float, "help": "elliptical mask: feature size along its first axis, px"}),
    ("n2", {"type": float, "help": "elliptical mask: feature size along its second axis, px"}),
    ("theta", {"type": float, "help": "elliptical mask: angle of the n1 axis, radians"}),
    ("correlation", {"choices": CORRELATION_KINDS, "help": "correlation kind"}),
    ("find_maxima", {"choices": FIND_MAXIMA, "help": "how each correlation peak is located"}),
    (
        "window",
        {"choices": (*filter(None, WINDOWS), "none"), "help": "real-space window (default hann)"},
    ),
    ("num_peaks", {"type": int, "help": "gf: local maxima fitted per pair"}),
    ("sigma_guess", {"type": float, "help": "gf: starting Gaussian width, px"}),
    ("window_radius", {"type": int, "help": "gf: fit window half-size, px"}),
    ("num_iter", {"type": int, "help": "com: iterations"}),
    ("min_window_frac", {"type": float, "help": "com: smallest window fraction"}),
    (
        "outliers",
        {
            "choices": ("robust", "transitivity", "nn", "none"),
            "help": "outlier test on the shift matrix (default robust)",
        },
    ),
    (
        "threshold",
        {"type": float, "help": "robust cut-off or transitivity threshold, px (default: data)"},
    ),
    ("maxpaths", {"type": int, "help": "transitivity: paths per pair"}),
    ("max_shift", {"type": float, "help": "nn: largest difference to a neighbour, px"}),
    ("bad_frames", {"type": _int_list, "metavar": "I,J,...", "help": "frames to leave out"}),
    ("frames", {"type": _frame_range, "metavar": "START:STOP", "help": "frame range to use"}),
    (
        "solver",
        {"choices": ("robust", "mean", "lstsq"), "help": "final shifts (default robust)"},
    ),
    ("band", {"type": int, "help": "correlate only pairs with |i - j| <= BAND"}),
    ("precision", {"choices": ("single", "double"), "help": "precision of the spectra"}),
)
#: The method parameters the flags set (every one of :data:`daskreg.signatures.PARAM_NAMES`).
FLAG_PARAMS: tuple[str, ...] = (
    *(name for name, _ in PARAM_FLAGS),
    "crop",
    "refine",
    "detect_bad_frames",
)

# Execution options of daskreg.register the flags set (their dest is the keyword).
_EXECUTION = (
    "engine",
    "scheduler",
    "scheduler_file",
    "n_workers",
    "memory_limit",
    "chunks",
    "temp_dir",
    "progress",
)


def params(args: argparse.Namespace, n_frames: int) -> dict[str, Any]:
    """Parameters from --config, overridden by the flags given, validated."""
    values = _read_config(args.config) if args.config else {}
    # theta_degrees is how a saved description records an elliptical mask's angle.
    given = [name for name in values if name != "theta_degrees"]
    check_names(given, PARAM_NAMES, f"--config {args.config}")
    for name in FLAG_PARAMS:
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    # Neither argparse nor TOML has a None; "none" stands for it.
    for name in ("outliers", "window"):
        if values.get(name) == "none":
            values[name] = None
    if isinstance(values.get("frames"), tuple) and values["frames"][1] is None:
        values["frames"] = (values["frames"][0], n_frames)
    checked = RegistrationParams.from_dict(dict(values))
    return {name: getattr(checked, name) for name in values}


def execution(args: argparse.Namespace) -> dict[str, Any]:
    """Execution options of :func:`daskreg.register`, only those given, checked.

    Raises
    ------
    ParameterError
        A bad value (:meth:`~daskreg.parallel.execution.Execution.from_options`), so
        that it is refused before any file is opened or written.
    """
    options = {name: getattr(args, name) for name in _EXECUTION}
    if getattr(args, "save_stack", None):
        options["save_stack"] = str(args.save_stack)
    options = {key: value for key, value in options.items() if value is not None}
    Execution.from_options(**{k: v for k, v in options.items() if k != "engine"})
    return options


def _read_config(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ParameterError(
                "--config needs Python 3.11 or newer, or the tomli package: pip install tomli"
            ) from None
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ParameterError(f"--config {str(path)!r} does not exist; check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(
            f"--config {str(path)!r} is not valid TOML ({exc}); write one key = value per line,"
            ' e.g. mask = "hann"'
        ) from None
