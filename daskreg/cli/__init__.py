"""The ``daskreg`` command line: argparse over the Python API.

Subcommands
-----------
``register IN -o OUT.tif``
    Register a stack; write the average (float32 TIFF with the JSON provenance), the
    full result (``<OUT stem>.result.zarr`` beside it unless ``--save-result`` says
    otherwise, or ``--no-result``), optionally the registered stack (``--save-stack``)
    and the PDF report (``--report``). Parameters come from the flags, from
    ``--config params.toml`` (top-level keys named as in :func:`daskreg.register`), or
    both (flags win). Measured pair blocks are saved as they finish in a checkpoint
    (``<OUT stem>.checkpoint.zarr`` beside OUT, or ``--checkpoint``), removed once every
    output is written; after an interruption the same command with ``--resume``
    computes only the missing blocks.
``watch FOLDER -o OUT.tif``
    Register the frames an acquisition writes into a folder as they arrive; the running
    average every ``--every`` frames, the final average and result when the folder is
    quiet for ``--quiet-seconds`` or at the first Ctrl-C/SIGTERM (exit 130/143).
``ingest IN OUT.zarr``
    Convert any supported stack to a chunked Zarr v3 store, out of core.
``apply RESULT OTHER -o OUT.tif``
    Align another channel with the shifts of a saved result and average it.
``info IN``
    Shape, dtype, calibration, chunking, what ``register`` would do, and why it cannot
    (exit status 2): too few frames, frames with no usable pixels, several series...
``report RESULT -o REPORT.pdf``
    The PDF report of a saved result.
``demo [--out DIR]``
    Generate a synthetic drifting series, register it, write every output and compare
    the shifts with the ground truth. Needs no data. Run again, it writes beside an earlier
    demo (``DIR-2``, ...) unless ``--overwrite``.

Exit codes: 0 success; 2 bad input (any :class:`~daskreg.errors.DaskregError`, or a
usage error) with a one-line message naming the problem and the fix; 1 any other
failure (run again with ``--debug`` for the traceback); 130 interrupted (Ctrl-C), 143
stopped by SIGTERM (a batch system's end of job), 129 by SIGHUP: each stops as Ctrl-C
does, printing how to resume. Every output is written under a staging name and all are
renamed into place together, so a run that stops at any point leaves the outputs as they
were (old ones replaced with ``--overwrite`` are restored); inputs are only read, and no
output, checkpoint or ``--temp-dir`` may be, hold or lie inside the input or another
output. Existing outputs are replaced only with ``--overwrite``, and the summary marks
them. A lock file beside each output and the checkpoint names the run writing it: a
second run on them refuses (exit 2), naming the first. Hints in messages name the flags
(``--frame-axis -1``), not the Python keywords the library's messages use.

Modules: :mod:`~daskreg.cli.parser` (subcommands and flags), :mod:`~daskreg.cli.options`
(flags and ``--config`` to keywords), :mod:`~daskreg.cli.commands` (one function per
subcommand), :mod:`~daskreg.cli.outputs` (checked, all-or-none outputs),
:mod:`~daskreg.cli.text` (what is printed), :mod:`~daskreg.cli.words` (hints in flags),
:mod:`~daskreg.cli.signals` (SIGTERM and SIGHUP as Ctrl-C), :mod:`~daskreg.cli.run`
(:func:`main`).
"""

from daskreg.cli.outputs import CHECKPOINT_SUFFIX, RESULT_SUFFIX
from daskreg.cli.parser import build_parser
from daskreg.cli.run import main
from daskreg.cli.text import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK

__all__ = [
    "CHECKPOINT_SUFFIX",
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "RESULT_SUFFIX",
    "build_parser",
    "main",
]
