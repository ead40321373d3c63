"""Imported once by the multiprocessing fork server that starts nbjobs' LocalCluster workers.

Each worker is then forked with distributed, nbjobs' worker side, the notebook executor and ipykernel
already imported, instead of importing them all again in every worker (seconds of CPU per worker on a
small machine). And each worker forks its kernel fork server at start-up, while it still has one
thread: that server imports nothing either (`forkserver.prefork`). Kernels forked from it therefore
start with these modules already in `sys.modules` (as IPython's are in any kernel); their state is a
fresh import's.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.util

import os

from .kernels.spec import skip_slow_imports

os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy (ipykernel.debugger) warns at import otherwise

skip_slow_imports()

from . import dask_worker  # noqa: E402,F401
from .kernels import forkserver, process  # noqa: E402
from .notebook_exec import warm_imports  # noqa: E402

warm_imports()
forkserver._preload()

WORKER_MARK = "NBJOBS_DASK_WORKER"  # in the env nbjobs gives its LocalCluster workers


def _is_nbjobs_worker() -> bool:
    """Whether this freshly forked process is a Dask worker of a LocalCluster nbjobs started."""
    try:
        process = multiprocessing.current_process()
        target = process._args[0]  # type: ignore[attr-defined]  # distributed's AsyncProcess._run(target, ...)
        return (getattr(target, "keywords", None) or {}).get("env", {}).get(WORKER_MARK) == "1"
    except Exception:
        return False


class _AfterFork:
    def __call__(self, _obj: object = None) -> None:
        if _is_nbjobs_worker():
            process.set_preforked(forkserver.prefork())


_after_fork = _AfterFork()
multiprocessing.util.register_after_fork(_after_fork, _AfterFork.__call__)
