"""Compute backends: where tasks run (the local warm kernel pool, or a Dask cluster).

Light to import: the pool, papermill and Dask load only when a task runs.

- `LocalBackend` — notebook tasks on the process's warm kernel pool (`kernels.py`), scripts as
  asyncio subprocesses. No compute field on a task (or an `environment_key`) means this.
- `DaskBackend` (`nbjobs[dask]`) — a `job_clusters[].new_cluster` becomes a Dask LocalCluster for
  the run; an `existing_cluster_id` is a scheduler address or a cluster named in the workspace config.
- `RunCompute` — maps a run's tasks to backends, starts job clusters on first use, closes them.
"""
from __future__ import annotations

from typing import Any

from .base import ComputeBackend, ComputeError, KernelChoice, NotebookRequest, ScriptRequest

__all__ = ["ComputeBackend", "ComputeError", "DaskBackend", "KernelChoice", "KernelKey", "LocalBackend",
           "NotebookRequest", "RunCompute", "ScriptRequest", "pool_manager", "shutdown_pools"]

_LAZY = {
    "DaskBackend": ".dask_backend",
    "KernelKey": ".kernels",
    "LocalBackend": ".local",
    "RunCompute": ".run",
    "pool_manager": ".kernels",
    "shutdown_pools": ".kernels",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbjobs.compute' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(module, __name__), name)
