"""Imported once by the multiprocessing fork server that starts nbjobs' LocalCluster workers: each worker
is forked with distributed, nbjobs' worker side and the notebook executor already imported, instead of
importing them all again in every worker (seconds of CPU per worker on a small machine)."""
from __future__ import annotations

from .kernels import skip_slow_imports

skip_slow_imports()

from . import dask_worker  # noqa: E402,F401
from .notebook_exec import warm_imports  # noqa: E402

warm_imports()
