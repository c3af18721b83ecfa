"""The Dask registration engine: two lazy graphs, each computed once for every series.

1. :func:`build_graph` wires, for one ``(frame, y, x)`` stack and without computing
   anything: spectra per frame chunk (:mod:`~daskreg.parallel.spectra`) -> measured
   pairs per block pair (:mod:`~daskreg.parallel.pairs`) -> one analysis task
   (assembly, outliers, bad frames, shifts: :func:`daskreg.method.analyse.analyse_shift_matrix`).
2. :func:`average_graph` wires the registered average as a reduction over frame chunks
   (:mod:`~daskreg.parallel.reduce`), and optionally the aligned stack for Zarr.

The shifts come back to the client between the two. Frames that fit in the workers'
memory beside their spectra are read once and kept there for both phases
(:mod:`~daskreg.parallel.kept`); larger stacks are read once per pass and never held
while the pairs are measured. With a checkpoint
(:mod:`~daskreg.parallel.checkpoint`), phase 1 loads the pair blocks an interrupted run
saved and saves the others as they finish. :func:`register_dask`
computes phase 1 for every entry of the leading dims in one graph, then phase 2 in one
graph, on the cluster of :mod:`~daskreg.parallel.cluster`, and labels each outcome with
:func:`daskreg.labelling.build_result`, exactly as the in-memory engine does.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import Delayed

from daskreg import autoparams
from daskreg import progress as display
from daskreg.errors import DaskregError, ParameterError, RegistrationWarning
from daskreg.io.ome_zarr import is_ome_zarr_path
from daskreg.kernels.detector import FrameCorrection
from daskreg.labelling import build_result
from daskreg.method.analyse import MatrixAnalysis, analyse_shift_matrix
from daskreg.method.measurements import PairMeasurements
from daskreg.method.pairs import pair_indices, pair_setup
from daskreg.method.screening import Survey, initial_bad_frames, unusable_frames
from daskreg.parallel import cluster, kept, memory, reduce
from daskreg.parallel.checkpoint import Checkpoint, describe, identity
from daskreg.parallel.execution import Execution
from daskreg.parallel.guard import guarded
from daskreg.parallel.pairs import assemble, pair_blocks
from daskreg.parallel.refine import refine_series
from daskreg.parallel.saved_stack import check_target, partial, save_stack_graph
from daskreg.parallel.spectra import spectra_blocks, spill_store
from daskreg.parallel.survey import survey_graph
from daskreg.params import RegistrationParams
from daskreg.result import RegistrationResult
from daskreg.stack import as_stack
from daskreg.validate import check_stack
from daskreg.views import example_views

__all__ = ["Analysed", "prepare_stack", "build_graph", "average_graph", "register_dask"]

# Default chunk: at most this many bytes of frames ...
_CHUNK_BYTES = 64 * 2**20
# ... and at least this many chunks, so that the pair stage has blocks to spread.
_MIN_CHUNKS = 8


@dataclass
class Analysed:
    """Outcome of the analysis task: the pair matrices and their analysis.

    Attributes
    ----------
    pairs : PairMeasurements
    analysis : MatrixAnalysis or None
        None when the analysis failed (``error`` says why).
    caught : list of (warning class, message)
        Warnings raised on the worker, to re-issue on the client.
    error : DaskregError or None
    seconds : float
        Time the analysis took (the ``"solve"`` stage of the timings).
    """

    pairs: PairMeasurements
    analysis: MatrixAnalysis | None
    caught: list[tuple[type[Warning], str]] = field(default_factory=list)
    error: DaskregError | None = None
    seconds: float = 0.0


def _analyse(
    infos: list, measured: list, params: RegistrationParams, lattice_basis: np.ndarray | None
) -> Analysed:
    start = time.perf_counter()
    pairs, finite, std = assemble(infos, measured, params.band)
    pairs.lattice_basis = lattice_basis
    # Warnings raised on a worker travel back with the result and are re-issued.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            bad = initial_bad_frames(unusable_frames(finite, std), params)
            analysis = analyse_shift_matrix(pairs, params, bad)
        except DaskregError as err:
            return Analysed(pairs, None, error=err)
    caught_warnings = [(w.category, str(w.message)) for w in caught]
    return Analysed(pairs, analysis, caught_warnings, seconds=time.perf_counter() - start)


def default_chunk(n_frames: int, frame_bytes: int) -> int:
    """Frames per chunk: at most 64 MiB, and at least eight chunks when possible."""
    return max(1, min(_CHUNK_BYTES // frame_bytes, math.ceil(n_frames / _MIN_CHUNKS)))


def prepare_stack(stack: Any, params: RegistrationParams, chunks: int | None) -> xr.DataArray:
    """Validate a stack and chunk it for the engine: whole frames, frames along one axis.

    Parameters
    ----------
    stack : array_like, dask array, xarray.DataArray or path
        Anything :func:`daskreg.stack.as_stack` takes; dims ``(..., frame, y, x)``.
    params : RegistrationParams
    chunks : int, optional
        Frames per chunk; default: the stack's own chunking if regular, else
        :func:`default_chunk`.

    Returns
    -------
    xarray.DataArray
        Dask-backed, one chunk per leading index, whole along y and x.

    Raises
    ------
    ParameterError
        ``chunks`` is not a positive integer.
    """
    stack = as_stack(stack)
    check_stack(stack, params)
    if chunks is not None and (
        not isinstance(chunks, (int, np.integer)) or isinstance(chunks, bool) or chunks < 1
    ):
        raise ParameterError(
            f"chunks={chunks!r} must be a positive number of frames per chunk, e.g. chunks=16"
        )
    n_frames, ny, nx = stack.shape[-3:]
    lead = {dim: 1 for dim in stack.dims[:-3]}
    if not isinstance(stack.data, da.Array):
        size = chunks or default_chunk(n_frames, ny * nx * stack.dtype.itemsize)
        return stack.chunk({**lead, "frame": size, "y": -1, "x": -1})
    frame_chunks = stack.data.chunks[-3]
    if len(stack.data.chunks[-2]) > 1 or len(stack.data.chunks[-1]) > 1:
        warnings.warn(
            f"the stack is chunked along y/x (chunks {stack.data.chunks[-2:]}); registration "
            "works on whole frames, so it is rechunked to whole frames. Store stacks chunked "
            "along 'frame' only (daskreg.io.ingest does) to avoid this copy",
            RegistrationWarning,
            stacklevel=3,
        )
    regular = all(c == frame_chunks[0] for c in frame_chunks[:-1])
    size = chunks or (frame_chunks[0] if regular else None)
    size = size or default_chunk(n_frames, ny * nx * stack.dtype.itemsize)
    return stack.chunk({**lead, "frame": size, "y": -1, "x": -1})


def build_graph(
    stack: xr.DataArray,
    params: RegistrationParams,
    *,
    spectra_store: str | None = None,
    checkpoint: Checkpoint | None = None,
    series: int = 0,
    lattice_basis: np.ndarray | None = None,
    survey: Survey | None = None,
    correction: FrameCorrection | None = None,
) -> Delayed:
    """Phase 1, lazily: spectra, pairs and their analysis for one ``(frame, y, x)`` stack.

    Parameters
    ----------
    stack : xarray.DataArray
        From :func:`prepare_stack` (one entry of the leading dims).
    params : RegistrationParams
    spectra_store : str, optional
        Zarr array to spill the spectra to (:func:`.spectra.create_store`).
    checkpoint : Checkpoint, optional
        Pair blocks and frame infos already there are loaded instead of computed (with
        the spectra only they needed); the others are saved there as they finish.
    series : int
        Index of this stack among the leading dims, naming its checkpoint entries.
    lattice_basis : ndarray, shape (B, 2), optional
        The specimen's lattice translations, for the robust solve to correct hops
        (:attr:`daskreg.autoparams.Resolved.lattice_basis`).
    survey : Survey, optional
        Its frames' quality, computed (:func:`.survey.survey_graph`); default: measured
        by each spectra task.
    correction : FrameCorrection, optional
        Its scale and hot pixels
        (:meth:`~daskreg.method.screening.Survey.correction`); default none
        (:func:`register_dask` always passes both).

    Returns
    -------
    Delayed
        :class:`Analysed`.
    """
    frames = stack.data
    setup_value = pair_setup(params, frames.shape[-2:])
    setup = dask.delayed(
        setup_value, name=f"pair-setup-{dask.base.tokenize(setup_value)}", traverse=False
    )
    bounds = [0, *np.cumsum(frames.chunks[0]).tolist()]
    blocks, infos = spectra_blocks(
        list(frames.to_delayed().ravel()),
        bounds[:-1],
        setup,
        spectra_store,
        survey=survey,
        correction=correction,
        n_frames=bounds[-1],
    )
    measured = pair_blocks(blocks, bounds, setup, params.band)
    if checkpoint is not None:
        measured, infos = checkpoint.reuse_series(
            series, bounds, params.band, measured, infos, survey
        )
    return dask.delayed(_analyse, pure=True)(infos, measured, params, lattice_basis)


def average_graph(data: da.Array, shifts: np.ndarray) -> da.Array:
    """Phase 2, lazily: the uncropped registered average of ``data``.

    Parameters
    ----------
    data : dask.array.Array, shape (N, ny, nx, ...)
        Frames (or 4D-STEM data), chunked along frames, whole along y and x.
    shifts : ndarray, shape (N, 2)
        From the analysis; NaN for unused frames.
    """
    return reduce.aligned_average(data, shifts)


def _one_spectrum(params: RegistrationParams, shape: tuple[int, ...]) -> np.ndarray:
    setup = pair_setup(params, shape)
    return setup.spectra(np.zeros((1, *shape), dtype=np.float32))[0]


def spectra_nbytes(stack: xr.DataArray, params: RegistrationParams) -> int:
    """Bytes of the spectra of every frame of every series."""
    return int(_one_spectrum(params, stack.shape[-2:]).nbytes * math.prod(stack.shape[:-2]))


def _leading_coords(stack: xr.DataArray, index: tuple[int, ...]) -> dict[str, Any]:
    coords = {}
    for dim, i in zip(stack.dims[:-3], index, strict=True):
        coords[dim] = stack[dim].values[i] if dim in stack.coords else i
    return coords


@guarded
def register_dask(
    stack: Any,
    params: RegistrationParams,
    execution: Execution,
    *,
    extras: dict[str, xr.DataArray] | None = None,
) -> RegistrationResult | list[RegistrationResult]:
    """Register a stack (or every series of a stack with leading dims) on a Dask cluster.

    Parameters
    ----------
    stack : array_like, dask array, xarray.DataArray or path
        Dims ``(frame, y, x)`` or ``(series..., frame, y, x)``.
    params : RegistrationParams
    execution : Execution
    extras : dict of xarray.DataArray, optional
        Other data, dims ``(frame, y, x, ...)`` and dask-backed, averaged with the
        shifts found for ``stack`` and stored in the result under its name (dims
        ``(y, x, ...)``); only for a stack without leading dims.

    Returns
    -------
    RegistrationResult or list of RegistrationResult
        One result per entry of the leading dims (C order), each holding its leading
        coordinates as scalar coords.

    Raises
    ------
    DaskregError
        As the in-memory engine, for the first series that fails, naming it.
    OutputPathError
        ``save_stack`` exists already, or it, ``checkpoint`` or ``temp_dir`` is, holds or
        lies inside the source or another of them (:mod:`~daskreg.parallel.guard`).
    OutputInUseError
        Another run holds ``checkpoint`` or ``save_stack`` (named in the message).
    CheckpointError
        ``checkpoint`` exists but ``resume`` is False, or it was written for another
        input, chunking or measuring parameters.
    WorkerMemoryError
        The workers cannot hold tasks of a few frames, or ``chunks`` frames (naming the
        memory or chunks that would do); or the run stalled with workers paused for
        memory (:mod:`~daskreg.parallel.memory`), its checkpoint kept.
    """
    start = time.perf_counter()
    execution = replace(execution, progress=display.enabled(execution.progress))
    source = as_stack(stack)
    stack = prepare_stack(source, params, execution.chunks)
    target = check_target(execution.save_stack, stack)
    token = None if execution.checkpoint is None else identity(source)
    leading = list(np.ndindex(stack.shape[:-3]))
    timings: dict[str, float] = {}
    with cluster.open_client(
        execution.client,
        execution.scheduler,
        scheduler_file=execution.scheduler_file,
        n_workers=execution.n_workers,
        memory_limit=execution.memory_limit,
        progress=execution.progress,
    ) as client:
        # Chunks whose tasks fit the workers' memory (refused at once if none does),
        # before the checkpoint, which records them.
        stack, spectra_room = memory.fit_stack(stack, client, explicit=execution.chunks is not None)
        saved = None
        if execution.checkpoint is not None:
            saved = Checkpoint.open(
                execution.checkpoint, describe(token, stack, params), resume=execution.resume
            )
        loading = time.perf_counter()
        # Read once into the workers' memory when the frames fit there beside their
        # spectra, rather than once per pass; the spectra get the room left.
        stack, spectra_room = kept.keep_frames(
            stack, client, spectra_room, params, in_memory=not isinstance(source.data, da.Array)
        )
        series = [stack[index] if index else stack for index in leading]
        # The first pass: frame quality, hot pixels and scale of every series, which
        # every spectrum needs before it is computed.
        surveys = cluster.compute(
            [survey_graph(list(one.data.to_delayed().ravel())) for one in series],
            client,
            progress=execution.progress,
            retries=execution.retries,
        )
        for k, survey in enumerate(surveys if saved is not None else []):
            # Every frame's quality against the checkpoint's: the input changed in place?
            saved.check_survey(k, survey)
        corrections = [survey.correction() for survey in surveys]
        # Each series' automatic parameters from a sample of its own frames, repaired.
        resolved = [
            autoparams.resolve_stack(one, params, correction)
            for one, correction in zip(series, corrections, strict=True)
        ]
        timings["load"] = time.perf_counter() - loading
        measuring = time.perf_counter()
        spill = spectra_nbytes(stack, resolved[0].params) > spectra_room
        scratch = Path(tempfile.mkdtemp(prefix="daskreg-", dir=execution.temp_dir))
        try:
            graphs = [
                build_graph(
                    one,
                    chosen.params,
                    spectra_store=spill_store(
                        f"{scratch}/{k}.zarr", one, _one_spectrum(chosen.params, one.shape[-2:])
                    )
                    if spill
                    else None,
                    checkpoint=saved,
                    series=k,
                    lattice_basis=chosen.lattice_basis,
                    survey=surveys[k],
                    correction=corrections[k],
                )
                for k, (one, chosen) in enumerate(zip(series, resolved, strict=True))
            ]
            if saved is not None and execution.progress:
                print(f"daskreg: {saved.note(execution.resume)}", flush=True)
            analysed = cluster.compute_counted(
                graphs,
                client,
                unit="pairs",
                total=sum(
                    len(pair_indices(one.shape[-3], c.params.band)[0])
                    for one, c in zip(series, resolved, strict=True)
                ),
                show=execution.progress,
                retries=execution.retries,
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        # The stages of daskreg.summary.STAGES, as the in-memory engine names them; the
        # solve runs on a worker at the end of the graph (the series' solves may overlap).
        solve = sum(outcome.seconds for outcome in analysed)
        timings.update(pairs=max(time.perf_counter() - measuring - solve, 0.0), solve=solve)
        _raise_or_warn(stack, leading, analysed)

        # The average and the aligned stack are made of the repaired frames too: a hot
        # pixel, fixed on the detector, would otherwise trail along the drift in them.
        repaired = [_repaired(one.data, c) for one, c in zip(series, corrections, strict=True)]
        second = time.perf_counter()
        analysed, refined = refine_series(
            repaired,
            analysed,
            [chosen.params for chosen in resolved],
            client,
            progress=execution.progress,
            retries=execution.retries,
        )
        shifts = [outcome.analysis.shifts for outcome in analysed]
        # Refined series have their average already (from the refinement's blocks).
        averages = [
            average_graph(data, s)
            for data, s, done in zip(repaired, shifts, refined, strict=True)
            if done is None
        ]
        extra = [average_graph(e.data, shifts[0]) for e in (extras or {}).values()]
        examples = [
            data[np.flatnonzero(outcome.analysis.used)[:2]]
            for data, outcome in zip(repaired, analysed, strict=True)
        ]
        writes = (
            []
            if target is None
            else [
                save_stack_graph(
                    stack, repaired, shifts, partial(target), ome_zarr=is_ome_zarr_path(target)
                )
            ]
        )
        parts = [averages, extra, examples, writes]
        computed = cluster.compute_counted(
            [c for part in parts for c in part],
            client,
            unit="frames",
            total=sum(len(d) for d, done in zip(repaired, refined, strict=True) if done is None),
            show=execution.progress and any(done is None for done in refined),
            retries=execution.retries,
        )
        ends = np.cumsum([0] + [len(part) for part in parts])
        unrefined, extra_values, example_frames, _ = (
            computed[a:b] for a, b in zip(ends[:-1], ends[1:], strict=True)
        )
        remaining = iter(unrefined)
        averaged = [next(remaining) if done is None else done for done in refined]
        timings["average"] = time.perf_counter() - second
        if target is not None:
            partial(target).rename(target)
    timings["total"] = time.perf_counter() - start
    results = []
    for index, one, outcome, average, frames, chosen, correction in zip(
        leading, series, analysed, averaged, example_frames, resolved, corrections, strict=True
    ):
        result = build_result(
            one,
            chosen.params,
            outcome.pairs,
            outcome.analysis,
            np.asarray(average),
            timings,
            example_views(*np.asarray(frames), chosen.params),
            correction=correction,
        )
        result.dataset.attrs.update(chosen.attrs())
        result.dataset.coords.update(_leading_coords(stack, index))
        for (name, data), value in zip((extras or {}).items(), extra_values, strict=True):
            result.dataset[name] = data[0].drop_vars("frame", errors="ignore").copy(data=value)
        if saved is not None and execution.resume:
            result.dataset.attrs.update(
                pair_blocks_reused=saved.reused["pairs"], pair_blocks=saved.total["pairs"]
            )
        results.append(result)
    if saved is not None and not execution.keep_checkpoint:
        saved.remove()
    return results if leading != [()] else results[0]


def _raise_or_warn(
    stack: xr.DataArray, leading: list[tuple[int, ...]], analysed: list[Analysed]
) -> None:
    for index, outcome in zip(leading, analysed, strict=True):
        if outcome.error is not None:
            where = f"series {_leading_coords(stack, index)}: " if index else ""
            raise type(outcome.error)(where + str(outcome.error))
        for category, message in outcome.caught:
            warnings.warn(message, category, stacklevel=4)


def _repaired(data: da.Array, correction: FrameCorrection) -> da.Array:
    """``data`` (frame, y, x) with the hot pixels of ``correction`` repaired, lazily."""
    if not len(correction.hot_pixels):
        return data
    dtype = np.result_type(data.dtype, np.float32)
    return data.map_blocks(correction.repair, dtype=dtype, meta=np.empty((0, 0, 0), dtype))
