"""A dask-jobqueue cluster for a batch system (SLURM, PBS), from a YAML config.

See ``workflows/slurm_register.py`` and ``workflows/jobqueue.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml

from daskreg.errors import ParameterError

__all__ = ["hpc_cluster"]


def hpc_cluster(
    kind: Literal["slurm", "pbs"] = "slurm",
    config: str | os.PathLike | None = None,
    **kwargs: Any,
):
    """A dask-jobqueue cluster object for a batch system; no job is submitted yet.

    Parameters
    ----------
    kind : {"slurm", "pbs"}
        The batch system.
    config : path, optional
        A YAML file in Dask's ``jobqueue:`` config format (see
        ``workflows/jobqueue.yaml``); its ``jobqueue.<kind>`` settings are used over
        Dask's own config.
    **kwargs
        Passed to ``SLURMCluster``/``PBSCluster`` (``cores``, ``memory``, ``queue``,
        ``account``, ``walltime``, ...), overriding the config.

    Returns
    -------
    dask_jobqueue.SLURMCluster or dask_jobqueue.PBSCluster
        Call ``.scale(jobs=n)`` to submit worker jobs and pass ``Client(cluster)`` as
        ``register(..., client=)``; ``.job_script()`` shows what would be submitted.

    Raises
    ------
    ParameterError
        Unknown ``kind``, no section for it in ``config``, or dask-jobqueue not installed.
    """
    try:
        import dask_jobqueue
    except ImportError as err:
        raise ParameterError(
            "running on a batch system needs dask-jobqueue; install it with "
            "pip install 'daskreg[hpc]' (or pip install dask-jobqueue)"
        ) from err
    classes = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}
    if kind not in classes:
        raise ParameterError(f"kind={kind!r} is not one of {sorted(classes)}; pick one of those")
    settings: dict[str, Any] = {}
    if config is not None:
        loaded = yaml.safe_load(Path(config).read_text()) or {}
        section = loaded.get("jobqueue", {}).get(kind)
        if section is None:
            raise ParameterError(
                f"{str(config)!r} has no 'jobqueue: {kind}:' section; add one (see "
                "workflows/jobqueue.yaml) or pick the kind it configures"
            )
        # Passed as arguments, not merged into Dask's config: jobqueue reads its config
        # again whenever it makes a job, long after this call.
        settings = {key.replace("-", "_"): value for key, value in section.items()}
    return classes[kind](**{**settings, **kwargs})
