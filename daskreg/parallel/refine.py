"""The refinement step on a Dask graph: two passes over the frames, one task per block.

The method is :mod:`daskreg.method.refinement`: the registered sum with the solve's
shifts (the one lazy builder, :func:`daskreg.parallel.reduce.aligned_average`) and the
template made from it by one task, then
:func:`~daskreg.method.refinement.refine_block` on every chunk of frames with that
template, all one graph, then :func:`~daskreg.method.refinement.combine` in the
client. The refined blocks carry their part of the final average's spectrum, so the
average needs no third pass.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import dask
import dask.array as da
import numpy as np

from daskreg.method import refinement
from daskreg.parallel import cluster, reduce, tally
from daskreg.params import RegistrationParams

__all__ = ["refine_series"]


def refine_series(
    data: list[da.Array],
    analysed: list[Any],
    params: list[RegistrationParams],
    client: Any,
    *,
    progress: bool,
    retries: int,
) -> tuple[list[Any], list[np.ndarray | None]]:
    """Refine every series that asks for it; the others are passed through.

    Parameters
    ----------
    data : list of dask.array.Array, each shape (N, ny, nx)
        The frames as they are averaged, chunked along frames (whole frames).
    analysed : list of Analysed
        The engine's outcome of each series' solve.
    params : list of RegistrationParams
    client : distributed.Client or None
    progress : bool
    retries : int

    Returns
    -------
    analysed : list of Analysed
        With the refined analysis where refined.
    averages : list of ndarray or None
        The uncropped average of each refined series (None: not refined, to be averaged
        as before).
    """
    todo = [
        k
        for k, (outcome, p) in enumerate(zip(analysed, params, strict=True))
        if outcome.analysis is not None and refinement.wanted(outcome.analysis, p)
    ]
    averages: list[np.ndarray | None] = [None] * len(analysed)
    if not todo:
        return analysed, averages
    n_used = sum(int(analysed[k].analysis.used.sum()) for k in todo)
    graphs = []
    for k in todo:
        analysis = analysed[k].analysis
        # The template is a task of the same graph (one round trip to the cluster, not
        # two, and no scatter); the workers that refine fetch it once each.
        mean = reduce.aligned_average(data[k], analysis.shifts)
        shared = dask.delayed(_template, pure=True)(
            mean, dask.delayed(analysis, traverse=False), params[k]
        )
        frames = data[k].rechunk({1: -1, 2: -1})
        bounds = np.cumsum([0, *frames.chunks[0]])
        blocks = frames.to_delayed().ravel()
        graphs.append(
            [
                dask.delayed(_refine_block, pure=True)(block, analysis.shifts[a:b], shared)
                for block, a, b in zip(blocks, bounds[:-1], bounds[1:], strict=True)
            ]
        )
    # The bar counts the frames refined (the template's sum reports "frames", which
    # this bar does not count).
    computed = cluster.compute_counted(
        graphs,
        client,
        unit="refined frames",
        total=n_used,
        label="refine",
        show=progress,
        retries=retries,
    )
    analysed = list(analysed)
    for k, blocks in zip(todo, computed, strict=True):
        frame_shape = data[k].shape[-2:]
        analysis, averages[k] = refinement.combine(analysed[k].analysis, blocks, frame_shape)
        analysed[k] = replace(analysed[k], analysis=analysis)
    return analysed, averages


def _template(mean: np.ndarray, analysis: Any, params: RegistrationParams) -> refinement.Template:
    """One task: the refinement's template from the registered average."""
    return refinement.template(np.asarray(mean) * analysis.used.sum(), analysis, params)


def _refine_block(frames: np.ndarray, shifts: np.ndarray, shared: refinement.Template) -> Any:
    """One task: :func:`~daskreg.method.refinement.refine_block`, counted as refined frames."""
    refined = refinement.refine_block(frames, shifts, shared)
    tally.report("refined frames", int(np.isfinite(shifts).all(axis=1).sum()))
    return refined
