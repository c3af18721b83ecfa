"""The Python API in one call: :func:`register`, :func:`register_series`.

Step by step, in memory: :class:`daskreg.registration.Registration`.

References
----------
Savitzky et al., Ultramicroscopy 191, 56-65 (2018), DOI 10.1016/j.ultramic.2018.04.008:
the method.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from daskreg import progress as display
from daskreg.errors import ParameterError
from daskreg.parallel import engine as dask_engine
from daskreg.parallel.cluster import choose_engine
from daskreg.parallel.execution import EXECUTION_PARAMETERS, split_options
from daskreg.params import RegistrationParams
from daskreg.registration import Registration
from daskreg.result import RegistrationResult
from daskreg.signatures import same_parameters, takes_params
from daskreg.stack import as_stack

__all__ = ["register", "register_series"]


@takes_params(options=EXECUTION_PARAMETERS)
def register_series(
    stack: Any,
    *,
    engine: Literal["auto", "numpy", "dask"] = "auto",
    **params: Any,
) -> list[RegistrationResult]:
    """Register every series of a stack with leading dims: one result each.

    Parameters
    ----------
    stack : array_like, dask array, xarray.DataArray or path
        Dims ``(series..., frame, y, x)``: each entry of the leading dims is registered
        on its own (a ``(frame, y, x)`` stack gives a list of one). A path is opened
        with :func:`daskreg.io.open_stack`.
    engine, client, ..., keep_checkpoint, mask, n, ..., precision
        As for :func:`register` (the signature lists them with their defaults). The
        series are computed together: one graph per phase for all of them.

    Returns
    -------
    list of RegistrationResult
        One per series entry (C order), each with its leading coordinates as scalar
        coords, so that ``xarray.concat([r.dataset for r in results], dim="series")``
        combines them.

    Raises
    ------
    DaskregError
        As :func:`register`, for the first series that fails, naming it.

    References
    ----------
    B. H. Savitzky, I. El Baggari, C. B. Clement, et al., "Image registration of low
    signal-to-noise cryo-STEM data", Ultramicroscopy 191, 56-65 (2018).
    DOI 10.1016/j.ultramic.2018.04.008

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from daskreg.synthetic import lattice_series
    >>> stacks = [lattice_series(6, (64, 64), seed=s).stack for s in (1, 2)]
    >>> both = xr.DataArray(np.stack(stacks), dims=("series", "frame", "y", "x"))
    >>> results = register_series(both, scheduler="synchronous", progress=False)
    >>> [r.shifts.shape for r in results]
    [(6, 2), (6, 2)]
    """
    execution, params = split_options(params)
    stack = as_stack(stack)
    if engine not in ("auto", "numpy", "dask"):
        raise ParameterError(f"engine={engine!r} is not one of ['auto', 'numpy', 'dask']")
    chosen = execution.dask_only()
    if engine == "numpy" and (chosen or stack.ndim > 3):
        raise ParameterError(
            f"engine='numpy' registers one (frame, y, x) stack in memory; got options "
            f"{sorted(chosen)} and dims {stack.dims}. Use engine='dask' (or 'auto')"
        )
    progress = display.enabled(execution.progress)
    execution = replace(execution, progress=progress)
    display.announce_compile()
    if choose_engine(stack, engine, chosen) == "numpy":
        registration = Registration(stack, **params)
        registration.progress = progress
        return [registration.run()]
    results = dask_engine.register_dask(stack, RegistrationParams(**params), execution)
    return results if isinstance(results, list) else [results]


@same_parameters(register_series)
def register(stack: Any, **kwargs: Any) -> RegistrationResult:
    """Register a series of frames and average it.

    Parameters
    ----------
    stack : array_like, dask array, xarray.DataArray or path
        Frames on axis 0, or a DataArray with dims ``(frame, y, x)``; a path is opened
        with :func:`daskreg.io.open_stack`. For a stack with leading dims
        ``(series..., frame, y, x)`` use :func:`register_series`.
    mask : str or ndarray, default "auto"
        Fourier mask: ``"auto"`` (chosen from the lattice in the frames' mean power
        spectrum: a Hann mask cut at 3x the radius of the outer primary reflection,
        which keeps the reflections and the low frequencies that tell unit cells
        apart; bandpass n=4 when no lattice is found), ``"bandpass"``, ``"lowpass"``,
        ``"hann"``, ``"hamming"``, ``"blackman"``, ``"gaussian"``, ``"none"``,
        ``"elliptical"`` (with ``n1``, ``n2``, ``theta``), or an array on the centred
        grid of :func:`daskreg.fourier_grids`. The result's ``attrs["auto_choices"]``
        says what was chosen and why.
    n : float, optional
        Mask cutoff: features smaller than about ``n`` pixels are ignored. Default:
        chosen with ``mask="auto"`` (a given ``n`` is then kept), else 4.
    n1, n2, theta : float
        Elliptical mask: feature sizes (pixels) along its two axes and the angle
        (radians) of the ``n1`` axis from +x towards +y.
    correlation : {"cc", "mc", "pc", "phase"}, default "cc"
        Cross, mutual, the reference's phase correlation, or the normalised phase
        correlation (see :func:`daskreg.kernels.correlate.correlation_spectra`).
    find_maxima : {"pixel", "gf", "com", "upsampled"}, default "gf"
        How the maximum of each correlation is located: brightest pixel, Gaussian fits
        to the ``num_peaks`` brightest local maxima, centre of mass, or the same
        candidates refined by an upsampled DFT of the correlation spectrum (no peak
        shape assumed; Guizar-Sicairos et al., Opt. Lett. 33, 156 (2008), DOI
        10.1364/OL.33.000156); the highest refined peak wins.
    window : {"hann", "tukey", None}, default "hann"
        Real-space window applied to each mean-subtracted frame before its transform:
        Hann, Tukey (flat over the middle half, so more of the frame counts), or none
        (only for frames that are already periodic: otherwise the edges correlate and
        pull shifts to zero). Its autocorrelation is divided out near each peak.
        Tukey measured 12-38 % lower errors than Hann on the fast accuracy scenarios
        and the real SrTiO3 series (``benchmarks/README.md``), but on a long drift its
        far pairs hop to a nearer lattice translation more often, and the robust solve
        then loses frames (20 frames of 256^2 drifting 2/-1.5 px per frame: 8.8 px
        error and 4 good frames dropped, Hann 0.03 px); Hann stays the default until
        that is fixed.
    num_peaks : int, default 5
        ``gf``: number of distinct local maxima fitted.
    sigma_guess : float, optional
        ``gf``: starting Gaussian width, pixels; default from the lattice (a fifth of
        its shortest translation, 1 to ``window_radius / 2``), else 2.
    window_radius : int, optional
        ``gf``: fit window is ``(2 window_radius + 1)^2``; default from the lattice (a
        quarter of its shortest translation, 2 to 6: the window stays inside one cell),
        else 6.
    num_iter, min_window_frac : int, float
        ``com`` only.
    outliers : {"robust", "transitivity", "nn", None}, default "robust"
        Outlier test on the shift matrix. ``"robust"``: a robust global solve of the
        pair graph (:func:`daskreg.kernels.robust.robust_solve`: Tukey-weighted least
        squares on the pair residuals, the cut-off from their measured scatter, capped
        below the lattice spacing; pairs off by a lattice translation are corrected, not
        only dropped). ``"transitivity"`` and ``"nn"``: the reference's tests.
    threshold : float, optional
        ``robust``: a fixed cut-off (pixels) on the pair residuals; ``transitivity``: the
        score at which a pair is an outlier. Default: chosen from the data.
    maxpaths : int, default 5
        Transitivity: number of two-step paths per pair.
    max_shift : float, default 1
        ``nn``: largest difference (pixels) from a neighbouring matrix element.
    bad_frames : sequence of int, default ()
        Frames to leave out, on top of those found automatically.
    frames : (start, stop), optional
        Use only this half-open range of frames.
    crop : bool, default True
        Crop the average to the region every frame covers.
    solver : {"robust", "mean", "lstsq"}, default "robust"
        Final shifts from the robust solve's weighted least squares, as row means of
        the corrected matrix (the reference), or as an unweighted least-squares solve
        over the valid pairs.
    refine : bool, default True
        Refine each frame's shift against the average of the other frames (two
        Gauss-Newton steps over every pixel the frames share, no window; see
        :mod:`daskreg.kernels.refine`), with its least-squares uncertainty. Halves the
        error of the pair solve at low dose; never moves a frame by more than a pixel.
        Skipped (with the solve's shifts kept) when the registration is unreliable or
        fewer than 3 frames are used. False gives the reference method's shifts.
    band : int, optional
        Correlate only pairs with ``|i - j| <= band`` (long time series).
    detect_bad_frames : bool, default True
        Leave out frames with NaN/inf pixels, no contrast, or a contrast far from the
        series' (saturated, blanked or over-bright frames), with their reason.
    precision : {"single", "double"}, default "single"
        Precision of the spectra and correlations.

    Other Parameters
    ----------------
    engine : {"auto", "numpy", "dask"}, default "auto"
        Where to compute. ``"numpy"``: in this process, in memory. ``"dask"``: a Dask
        task graph (frame chunks, block pairs, reductions) on a cluster, out of core.
        ``"auto"``: numpy for a ``(frame, y, x)`` stack, in memory or from a file, whose
        registration fits in a quarter of the memory available
        (:func:`daskreg.parallel.cluster.choose_engine`) when no option below is given;
        Dask for larger stacks, leading dims, or any of ``client``, ``scheduler``,
        ``scheduler_file``, ``n_workers``, ``memory_limit``, ``chunks``, ``save_stack``,
        ``checkpoint`` (the numpy engine keeps no checkpoint). A ``LocalCluster`` is started only
        then; from a script, its worker processes import the script again, so the
        script's code must be under ``if __name__ == "__main__":``. The two engines give
        the same result.
    client : distributed.Client, optional
        Run on this client's cluster (it is left open).
    scheduler : str, optional
        Address of a running scheduler (``"tcp://host:8786"``), connected to for this
        call; or ``"synchronous"`` (``"sync"``, ``"single-threaded"``), ``"threads"``
        or ``"processes"`` to use a local Dask scheduler without a cluster. Default: the
        current ``distributed`` client if there is one, else a ``LocalCluster`` started
        and closed by this call. A scheduler with no workers is waited for at most
        :data:`daskreg.parallel.cluster.WORKER_WAIT_SECONDS`.
    scheduler_file : str or path, optional
        The file a running scheduler wrote (``dask scheduler --scheduler-file PATH``,
        ``dask-mpi``), connected to as ``scheduler`` is: the usual start of a batch job.
    n_workers : int, optional
        Worker processes of that ``LocalCluster`` (default: one per core, one thread
        each).
    memory_limit : str or int, optional
        Memory limit per worker of that ``LocalCluster`` (e.g. ``"1GiB"``; default:
        this machine's memory shared evenly).
    chunks : int, optional
        Frames per Dask chunk: the unit of the spectra tasks and the block size of the
        pair tasks. Default: the stack's own chunks, else up to 64 MiB and at least 8
        chunks.
    progress : bool, optional
        Show progress: pairs measured and frames averaged (numpy engine), or the Dask
        dashboard link and tasks done (a widget in notebooks with ipywidgets, else a
        text bar). Default: when stderr is a terminal or in Jupyter, never in a log
        file. Either way, ``daskreg: compiling kernels (first run only)`` is printed to
        stderr while a new install compiles its kernels.
    save_stack : str, optional
        Also write every frame, aligned (NaN for unused frames), to this new Zarr store
        (dims as the input; read it back with :func:`daskreg.io.open_stack`).
    temp_dir : str, optional
        Folder for spectra spilled to Zarr when they do not fit the cluster's memory;
        every worker must see it (default: the system temporary folder).
    checkpoint : str or path, optional
        A new Zarr folder where each block of measured pairs is saved as it finishes
        (every worker must see it), so that a run that was interrupted (Ctrl-C, a
        killed job, a lost cluster) can be resumed with ``resume=True``. It is removed
        after a successful run. ``daskreg register`` always keeps one beside its output.
    resume : bool, default False
        Reuse the pair blocks saved in ``checkpoint`` and compute only the missing ones;
        the result is the same as that of an uninterrupted run. Without a checkpoint
        yet, start one (so a job script can always pass it). The result's attrs
        ``pair_blocks_reused`` and ``pair_blocks`` count the blocks.
    keep_checkpoint : bool, default False
        Keep the checkpoint after success: resuming it with other outlier or averaging
        parameters (``threshold``, ``solver``, ...) measures nothing again.

    Returns
    -------
    RegistrationResult

    Raises
    ------
    DaskregError
        A subclass naming the problem, for bad stacks or parameters.
    ParameterError
        An unknown keyword (naming the closest valid one), or a stack with leading dims
        (use :func:`register_series`).
    CheckpointError
        ``checkpoint`` exists but ``resume`` is False (it would be lost), or it was
        written for another input, chunking or measuring parameters (it would give
        another result).

    Notes
    -----
    ``shift_uncertainty`` is a per-frame one-sigma that includes the noise each frame
    brings to all its pairs (measured from the shift between the frame's two
    checkerboard halves), the pair residual scatter and the solve's propagation. When
    the pairs disagree too much for the data to support a registration (very low dose),
    a :class:`~daskreg.errors.RegistrationWarning` says so, ``attrs["reliable"]`` is 0
    and sigma is at least a lattice spacing.

    Sign convention: frame ``i`` holds the specimen displaced by ``+shifts[i]``;
    shifting it by ``-shifts[i]`` aligns it. Shifts are relative to the mean position
    of the used frames, ``(dy, dx)`` in pixels.

    References
    ----------
    .. [1] B. H. Savitzky, I. El Baggari, C. B. Clement, et al., "Image registration of
       low signal-to-noise cryo-STEM data", Ultramicroscopy 191, 56-65 (2018),
       DOI 10.1016/j.ultramic.2018.04.008.

    Examples
    --------
    >>> from daskreg.synthetic import lattice_series
    >>> series = lattice_series(8, (128, 128), seed=3)
    >>> result = register(series.stack, mask="hann", n=4)
    >>> err = result.shifts.values - (series.shifts - series.shifts.mean(axis=0))
    >>> bool(abs(err).max() < 0.2)
    True
    """
    stack = as_stack(stack)
    if stack.ndim > 3:
        raise ParameterError(
            f"register() registers one (frame, y, x) stack; got dims {stack.dims}, shape "
            f"{stack.shape}. Use daskreg.register_series(stack, ...) (same parameters) for "
            "one result per entry of the leading dims"
        )
    (result,) = register_series(stack, **kwargs)
    return result
