"""First contact, timed: ``daskreg register`` from the shell against the Python API.

For each shared real-data file (the 20 x 512^2 STO tif and the 5-frame 128^2 .ser), one
run prints:

- ``cli``: wall time of ``python -m daskreg.cli register IN -o avg.tif --overwrite`` as a
  subprocess (interpreter start, imports, reading, registration, the average tif and the
  result store), after one untimed run that warms the numba and file caches;
- ``api``: the same registration in this process after a warm-up call,
  ``register(open_stack(IN), progress=False)``, alone and with the same two outputs
  (``save_tif`` and ``save`` of the ``.zarr`` result);
- ``script``: the same registration and outputs as a Python script in a new interpreter
  (``python -c "import daskreg; ..."``): the API call with the interpreter start
  included, which is what the CLI is held to (goal ``cli <= 1.5 x script``);
- the ratios of ``cli`` to each;
- ``import``: ``python -c "import daskreg.cli"`` in a fresh interpreter, the part of
  ``cli`` that no API call pays twice;
- ``cold``: the CLI on the STO tif with numba's cache empty (``NUMBA_CACHE_DIR`` a new
  folder): what a new install pays once. Goal: 15 s.

Medians of ``--repeat`` runs (min in brackets). The daskreg measured is the one on
``PYTHONPATH`` (subprocesses inherit it).

Usage::

    python benchmarks/bench_cli.py [--repeat 3] [--data ../shared/data] [--no-cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
INPUTS = {
    "STO tif 20 x 512^2": "derived_STO_HAADF_drift_20x512.tif",
    "ser 5 x 128^2": "03_Scanning_Preview_1.ser",
}


def wall(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall seconds of one subprocess (which must succeed) and its stderr."""
    start = time.perf_counter()
    proc = subprocess.run(
        args, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return elapsed, proc.stderr


def cli_args(source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "daskreg.cli", "register", str(source), "-o", str(out)]


def script_args(source: Path, out: Path) -> list[str]:
    """The CLI's job as a Python script: register, the average tif, the result store."""
    code = (
        "import daskreg; "
        f"r = daskreg.register(daskreg.open_stack({str(source)!r}), progress=False); "
        f"r.save_tif({str(out)!r}); "
        f"daskreg.save_result(r, {str(out.with_suffix('.result.zarr'))!r}, overwrite=True)"
    )
    return [sys.executable, "-c", code]


def timed(call, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def median_min(times: list[float]) -> str:
    return f"{statistics.median(times):6.2f} ({min(times):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold first run")
    args = parser.parse_args()

    import daskreg  # after argparse: --help stays instant

    print(f"daskreg {daskreg.__version__} from {Path(daskreg.__file__).parent}")
    imports = [wall([sys.executable, "-c", "import daskreg.cli"])[0] for _ in range(args.repeat)]
    print(f"import: python -c 'import daskreg.cli' {median_min(imports)} s\n")
    header = f"{'input':<20}{'cli s':>16}{'script s':>16}{'api register s':>18}"
    print(f"{header}{'api + outputs s':>18}{'cli/script':>12}{'cli/api':>9}{'cli/api+out':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for label, name in INPUTS.items():
            source = args.data / name
            if not source.exists():
                print(f"{label:<20}  missing: {source}")
                continue
            argv = [*cli_args(source, out / "cli.tif"), "--overwrite"]
            wall(argv)  # warm-up: numba cache filled, file in the page cache
            script_argv = script_args(source, out / "script.tif")
            wall(script_argv)
            cli, script = [], []
            for _ in range(args.repeat):  # alternated: the machine's load hits both alike
                cli.append(wall(argv)[0])
                script.append(wall(script_argv)[0])

            def api(source: Path = source) -> daskreg.RegistrationResult:
                return daskreg.register(daskreg.open_stack(source), progress=False)

            def api_outputs(source: Path = source) -> None:
                result = api(source)
                result.save_tif(out / "api.tif")
                daskreg.save_result(result, out / "api.result.zarr", overwrite=True)

            api_outputs()  # warm-up
            alone = timed(api, args.repeat)
            with_outputs = timed(api_outputs, args.repeat)
            ratio = statistics.median(cli) / statistics.median(alone)
            ratio_out = statistics.median(cli) / statistics.median(with_outputs)
            ratio_script = statistics.median(cli) / statistics.median(script)
            print(
                f"{label:<20}{median_min(cli):>16}{median_min(script):>16}{median_min(alone):>18}"
                f"{median_min(with_outputs):>18}{ratio_script:>11.2f}x{ratio:>8.2f}x"
                f"{ratio_out:>12.2f}x",
                flush=True,
            )
        if not args.no_cold:
            source = args.data / INPUTS["STO tif 20 x 512^2"]
            with tempfile.TemporaryDirectory() as cache:
                seconds, err = wall(
                    [*cli_args(source, out / "cold.tif"), "--overwrite"],
                    env={"NUMBA_CACHE_DIR": cache},
                )
            note = "compile note printed" if "compiling kernels" in err else "no compile note"
            print(f"\ncold first run (CLI, STO tif, empty numba cache): {seconds:.1f} s, {note}")


if __name__ == "__main__":
    main()
