"""The Dask backend ("dask", `pip install 'nbjobs[dask]'`): tasks on a Dask cluster's workers.

- A job cluster (`job_clusters[].new_cluster`) is a `LocalCluster` started for the run, on 127.0.0.1,
  with `num_workers` worker processes (`autoscale.max_workers` when autoscaling), closed at run end.
- An existing cluster (`existing_cluster_id`) is a scheduler address (`tcp://host:8786`) or the name
  of one in the workspace config (`compute.clusters`); nbjobs connects to it and leaves it running.

A notebook task ships its notebook JSON, parameters and task context to a worker and gets back the
executed notebook, task values and exit value (no shared filesystem needed). Workers keep their own
warm kernel pools. Dask cannot interrupt a running call, so a cancel or timeout kills the kernel on
the worker (`client.run(kill_remote, ...)`). A worker lost mid-task fails the attempt with a clear
error (it is not silently re-run elsewhere); the runner's retries apply as for any failure.
"""
from __future__ import annotations

import asyncio
import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import ComputeBackend, ComputeError, NotebookRequest, ScriptRequest, TaskOutput, WorkUnit, cluster_size

if TYPE_CHECKING:  # pragma: no cover
    from .config import ComputeConfig

INSTALL_HINT = "pip install 'nbjobs[dask]'"
KILL_TIMEOUT = 10.0


def require_distributed(purpose: str = "Dask compute") -> Any:
    """Import `distributed`, or fail with the message a user needs."""
    try:
        import distributed
    except ImportError as exc:
        raise ComputeError(f"{purpose} needs the optional package 'distributed' ({exc}). "
                           f"Install it with: {INSTALL_HINT}") from None
    return distributed


class DaskBackend(ComputeBackend):
    """A Dask cluster: one started here (`n_workers`), or an existing scheduler (`address`)."""

    name = "dask"
    address_hint = "a Dask scheduler address (tcp://host:port)"

    def __init__(self, *, address: str | None = None, n_workers: int = 1, threads_per_worker: int | None = None,
                 pool_size: int | None = None, label: str = "dask", kernel_names: tuple[str, ...] = ("python3",),
                 cluster_kwargs: dict | None = None):
        self.address = address
        self.n_workers = max(1, int(n_workers or 1))
        self.threads_per_worker = threads_per_worker
        self.pool_size = pool_size
        self.label = label
        self.kernel_names = kernel_names
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.cluster: Any = None
        self.client: Any = None
        self._started: asyncio.Future | None = None
        self._running: dict[str, str] = {}     # Dask key -> execution id
        self._lost: dict[str, str] = {}        # Dask key -> lost worker address
        self._waiters: dict[str, asyncio.Future] = {}

    @classmethod
    def new_cluster(cls, spec: dict, config: ComputeConfig, *, label: str) -> DaskBackend:
        """A LocalCluster of the spec's `num_workers`; `compute.dask` options, the instance pool's size."""
        options = config.options_for(cls.name)
        return cls(n_workers=cluster_size(spec), threads_per_worker=options.get("threads_per_worker"),
                   pool_size=config.pool_size_for(spec.get("instance_pool_id")), label=label)

    @classmethod
    def existing_cluster(cls, address: str | None, config: ComputeConfig, *, label: str) -> DaskBackend:
        if not address:
            raise ComputeError(f"{label}: a Dask cluster needs a scheduler address (tcp://host:port)")
        return cls(address=address, label=label)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        distributed = require_distributed(f"Compute '{self.label}'")
        import dask

        if self.address is None:
            threads = self.threads_per_worker or 1
            kwargs = dict(n_workers=self.n_workers, threads_per_worker=threads, processes=True,
                          host="127.0.0.1", dashboard_address=None, asynchronous=True,
                          silence_logs=logging.ERROR, worker_dashboard_address=None,
                          env={"NBJOBS_DASK_WORKER": "1"})
            kwargs.update(self.cluster_kwargs)
            # a worker lost mid-task fails that task at once instead of re-running it elsewhere;
            # workers are forked from a fork server that imported their code once (see dask_preload)
            method = os.environ.get("NBJOBS_DASK_START_METHOD") or _start_method()
            with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                                  "distributed.worker.multiprocessing-method": method}):
                if method == "forkserver":
                    _preload_forkserver()
                try:
                    self.cluster = await distributed.LocalCluster(**kwargs)
                except Exception as exc:
                    raise ComputeError(f"{self.label}: could not start a Dask LocalCluster: "
                                       f"{type(exc).__name__}: {exc}") from exc
            address = self.cluster.scheduler_address
        else:
            address = self.address
        try:
            self.client = await distributed.Client(address, asynchronous=True, timeout=30,
                                                   set_as_default=False)
        except Exception as exc:
            await self._close_cluster()
            raise ComputeError(f"{self.label}: cannot connect to the Dask scheduler at {address}: "
                               f"{type(exc).__name__}: {exc}") from exc
        self.address = address if self.address is None else self.address
        from .dask_worker import KernelPoolPlugin
        await self.client.register_plugin(KernelPoolPlugin(self.pool_size, self.kernel_names))
        self.client.subscribe_topic("all", self._on_event)

    async def close(self) -> None:
        started, self._started = self._started, None
        if started is not None and not started.done():
            started.cancel()
            try:
                await started
            except BaseException:
                pass
        client, self.client = self.client, None
        if client is not None:
            try:
                client.unsubscribe_topic("all")
            except Exception:
                pass
            try:
                await client.close()
            except Exception:  # pragma: no cover
                pass
        await self._close_cluster()

    async def _close_cluster(self) -> None:
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            try:
                await cluster.close()
            except Exception:  # pragma: no cover
                pass

    def _on_event(self, event: Any) -> None:
        """Scheduler events: a worker removed while processing one of our tasks means it was lost."""
        _, message = event if isinstance(event, tuple) else (None, event)
        if not isinstance(message, dict) or message.get("action") != "remove-worker" or message.get("expected"):
            return
        for key in message.get("processing-tasks") or ():
            if key in self._running:
                self._lost[key] = message.get("worker") or "a worker"
                waiter = self._waiters.get(key)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    # -- tasks ---------------------------------------------------------------------------------------
    async def run(self, unit: WorkUnit) -> TaskOutput:
        if isinstance(unit, NotebookRequest):
            return await self._notebook(unit)
        if isinstance(unit, ScriptRequest):
            return await self._script(unit)
        raise self.cannot_run(unit)

    async def _notebook(self, request: NotebookRequest) -> TaskOutput:
        from .dask_worker import run_notebook_remote

        text = _notebook_text(request.notebook_path, request.notebook_text)
        payload = {"notebook_path": str(request.notebook_path), "notebook_text": text,
                   "parameters": dict(request.parameters), "context": request.context.to_dict(),
                   "workdir": str(request.workdir), "kernel": request.kernel.to_dict(),
                   "environment": request.environment}
        return await self._run(run_notebook_remote, payload, request.context, notebook=True)

    async def _script(self, request: ScriptRequest) -> TaskOutput:
        from .dask_worker import run_script_remote

        path = Path(request.python_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            return TaskOutput(error=f"cannot read {path}: {exc}")
        payload = {"python_file": str(path), "script_text": text, "args": list(request.args),
                   "context": request.context.to_dict(), "workdir": str(request.workdir),
                   "kernel": request.kernel.to_dict(), "environment": request.environment}
        return await self._run(run_script_remote, payload, request.context, notebook=False)

    async def _run(self, function: Any, payload: dict, context: Any, *, notebook: bool) -> TaskOutput:
        from ..kernel.context import CONTEXT_FILE, EXIT_FILE, LOGS_FILE, NOTEBOOK_FILE, VALUES_FILE

        await self.start()
        distributed = require_distributed()
        execution_id = uuid.uuid4().hex
        payload["execution_id"] = execution_id
        run_dir = Path(context.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (VALUES_FILE, EXIT_FILE):
            (run_dir / stale).unlink(missing_ok=True)
        context.save(run_dir / CONTEXT_FILE)
        key = f"nbjobs-{context.task_key}-{execution_id[:12]}"
        self._running[key] = execution_id
        lost = self._waiters[key] = asyncio.get_running_loop().create_future()
        future = self.client.submit(function, payload, key=key, pure=False, retries=0)
        done = asyncio.ensure_future(future.result())
        try:
            await asyncio.wait({done, lost}, return_when=asyncio.FIRST_COMPLETED)
            if not done.done():  # the worker running it went away
                await self._stop(execution_id, future)
                done.cancel()
                return self._lost_output(key)
            try:
                result = done.result()
            except distributed.KilledWorker:
                return self._lost_output(key)
            except Exception as exc:  # the function raised on the worker (a bug of ours, or no nbjobs there)
                return TaskOutput(error=f"{self.label}: the task could not run on the Dask worker: "
                                        f"{type(exc).__name__}: {exc}", compute=self.label)
        except asyncio.CancelledError:
            done.cancel()
            await self._stop(execution_id, future)
            raise
        finally:
            self._running.pop(key, None)
            self._waiters.pop(key, None)
            self._lost.pop(key, None)
        worker = result.get("worker", "?")
        for name, data in (result.get("files") or {}).items():
            target = run_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        compute = f"{self.label} worker {worker}"
        if result.get("cancelled"):
            return TaskOutput(error="the task was canceled on the Dask worker", compute=compute)
        out = result["output"]
        output_path = run_dir / NOTEBOOK_FILE if notebook else None
        logs_path = None if notebook else run_dir / LOGS_FILE
        return TaskOutput(error=out.get("error"), error_trace=out.get("error_trace"),
                          exit_value=out.get("exit_value"), values=dict(out.get("values") or {}),
                          output_path=output_path if output_path and output_path.exists() else None,
                          logs_path=logs_path if logs_path and logs_path.exists() else None, compute=compute)

    def _lost_output(self, key: str) -> TaskOutput:
        worker = self._lost.get(key) or "its worker"
        message = (f"The Dask worker {worker} running this task was lost mid-task (the process died or lost "
                   f"its connection); the attempt failed and was not re-run elsewhere.")
        return TaskOutput(error=message, compute=f"{self.label} worker {worker}")

    async def _stop(self, execution_id: str, future: Any) -> None:
        """Kill the execution on whichever worker has it (or make it refuse to start), drop the future."""
        from .dask_worker import kill_remote

        client = self.client
        if client is None:
            return
        try:
            await asyncio.wait_for(client.run(kill_remote, execution_id, on_error="ignore"), KILL_TIMEOUT)
        except Exception:
            pass
        try:
            await client.cancel([future], force=True)
        except Exception:
            pass


def _start_method() -> str:
    import multiprocessing
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _preload_forkserver() -> None:
    """What the multiprocessing fork server imports before forking workers (once per process; it must
    be set before that server starts, and instead of distributed's own list)."""
    import multiprocessing

    import distributed.utils as dutils

    if getattr(dutils, "_forkserver_preload_set", False):
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["distributed", "dask", "nbjobs.compute.dask_preload"])
    dutils._forkserver_preload_set = True


def _notebook_text(path: Path, text: str | None) -> str:
    """The notebook file's text, shipped to the worker (`prepare_notebook` reads .ipynb JSON or a .py
    source-format notebook from it, as from the file)."""
    if text is not None:
        return text
    return Path(path).read_text(encoding="utf-8")
