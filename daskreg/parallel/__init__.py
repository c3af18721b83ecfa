"""The Dask engine: task graphs over frame chunks and block pairs, run on a cluster.

Modules: :mod:`.spectra` (one task per frame chunk), :mod:`.pairs` (one task per
block pair), :mod:`.reduce` (registered average and stack), :mod:`.cluster` (client,
local cluster, jobqueue, progress), :mod:`.checkpoint` (pair blocks saved to resume
from), :mod:`.engine` (the driver), :mod:`.fourd` (4D-STEM).
"""

from daskreg.parallel.cluster import hpc_cluster, open_client
from daskreg.parallel.engine import Execution, build_graph, prepare_stack, register_dask

__all__ = [
    "Execution",
    "build_graph",
    "hpc_cluster",
    "open_client",
    "prepare_stack",
    "register_dask",
]
