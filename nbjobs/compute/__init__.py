"""Compute backends: where tasks run (the local warm kernel pool, a Dask cluster, or a plug-in's).

Light to import: the pool, papermill and Dask load only when a task runs.

- `ComputeBackend` (`base.py`) — `start()`, `run(unit)`, `close()`; a unit is a `WorkUnit`
  (`NotebookRequest`, `ScriptRequest`) and `run` returns its `TaskOutput`.
- Backends are found by name (`registry.py`, entry-point group `nbjobs.compute_backends`):
  "local" — `LocalBackend`, notebook tasks on the process's warm kernel pool (`kernels/`), scripts as
  asyncio subprocesses; "dask" — `DaskBackend` (`nbjobs[dask]`), a LocalCluster per job cluster or
  an existing Dask scheduler.
- `RunCompute` — maps a run's tasks to backends by the workspace config (`config.py`), starts job
  clusters on first use, closes them.
"""
from __future__ import annotations

from typing import Any

from .base import (ComputeBackend, ComputeError, KernelChoice, NotebookRequest, ScriptRequest, TaskOutput,
                   WorkUnit)

__all__ = ["ComputeBackend", "ComputeError", "DaskBackend", "KernelChoice", "KernelKey", "LocalBackend",
           "NotebookRequest", "RunCompute", "ScriptRequest", "TaskOutput", "WorkUnit", "backend_class",
           "pool_manager", "register_backend", "shutdown_pools"]

_LAZY = {
    "DaskBackend": ".dask_backend",
    "KernelKey": ".kernels",
    "LocalBackend": ".local",
    "RunCompute": ".run",
    "backend_class": ".registry",
    "pool_manager": ".kernels",
    "register_backend": ".registry",
    "shutdown_pools": ".kernels",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbjobs.compute' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(module, __name__), name)
