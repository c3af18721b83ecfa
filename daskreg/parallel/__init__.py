"""The Dask engine: task graphs over frame chunks and block pairs, run on a cluster.

Modules: :mod:`.spectra` (one task per frame chunk), :mod:`.pairs` (one task per
block pair), :mod:`.reduce` (the averages and aligned stacks of any data), :mod:`.cluster`
(client, local cluster, progress), :mod:`.hpc` (dask-jobqueue), :mod:`.tally` (progress
in pairs and frames), :mod:`.checkpoint` (pair blocks saved to
resume from), :mod:`.engine` (the driver), :mod:`.fourd` (4D-STEM).

The package imports only :mod:`.cluster`: :func:`daskreg.apply_shifts` builds on
:mod:`.reduce`, and the driver (which labels results, and so imports the result class
that offers ``apply``) would otherwise be imported back by it.
"""

from daskreg.parallel.cluster import open_client
from daskreg.parallel.hpc import hpc_cluster

__all__ = ["hpc_cluster", "open_client"]
