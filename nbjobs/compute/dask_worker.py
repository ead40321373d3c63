"""What runs inside Dask workers: the kernel-pool plugin and the task functions (needs `distributed`).

A task arrives as plain data (the notebook's JSON or the script's text, the task context, the
parameters) and goes back as plain data (the executed notebook and the task's other files, its task
values, exit value and error), so the workers need no shared filesystem. Each worker process keeps
its own warm kernel pool (`nbjobs.compute.kernels`), started by `KernelPoolPlugin` when the worker
starts and shut down when it closes.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Coroutine

from distributed import WorkerPlugin, get_worker

from ..kernel.context import CONTEXT_FILE, TaskContext, read_exit_value, read_values
from .base import KernelChoice, NotebookRequest
from .kernels import ExecutionHandle, KernelKey, pool_manager, shutdown_pools

PLUGIN_NAME = "nbjobs-kernel-pool"
MAX_FILE_BYTES = 64 * 1024 * 1024  # files of a task run shipped back to the driver


class KernelPoolPlugin(WorkerPlugin):
    """Start the worker's warm kernel pool with the worker; kill its kernels when the worker closes."""

    name = PLUGIN_NAME

    def __init__(self, pool_size: int | None = None, kernel_names: tuple[str, ...] = ("python3",)):
        self.pool_size = pool_size
        self.kernel_names = tuple(kernel_names)

    def setup(self, worker: Any) -> None:
        from .notebook_exec import warm_imports

        manager = pool_manager()
        if self.pool_size is not None:
            manager.set_size(self.pool_size)
        manager.submit(manager.warm([KernelKey(name) for name in self.kernel_names], then=warm_imports))

    def teardown(self, worker: Any) -> None:
        status = str(getattr(worker, "status", "")).lower()
        if "clos" in status or "stop" in status:  # the worker is closing (not just a re-registration)
            shutdown_pools()


def _address() -> str:
    try:
        return get_worker().address
    except ValueError:  # pragma: no cover - called outside a worker
        return "local"


def _files(run_dir: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    total = 0
    if not run_dir.is_dir():
        return out
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file() or path.name == CONTEXT_FILE and path.parent == run_dir:
            continue
        data = path.read_bytes()
        total += len(data)
        if total > MAX_FILE_BYTES:
            break
        out[str(path.relative_to(run_dir))] = data
    return out


def _kernel(payload: dict, notebook: bool) -> KernelChoice:
    choice = KernelChoice(**payload.get("kernel") or {})
    environment = payload.get("environment")
    if environment:
        from .environments import resolve_environment
        resolved = resolve_environment(environment["key"], environment.get("spec"), notebook=notebook,
                                       envs_dir=Path(tempfile.gettempdir()) / "nbjobs-envs")
        if choice.kernel_name and not resolved.kernel_name:
            resolved.kernel_name = choice.kernel_name
        choice = resolved
    return choice


def _result(output: Any, run_dir: Path, worker: str) -> dict:
    return {"output": {"error": output.error, "error_trace": output.error_trace,
                       "exit_value": read_exit_value(run_dir), "values": read_values(run_dir)},
            "files": _files(run_dir), "worker": worker}


def _run_remote(payload: dict, work: Callable[[Path, Path, ExecutionHandle, Any], Coroutine]) -> dict:
    """The lifecycle both remote task kinds share: a killed execution never starts; the task runs in a
    temporary folder on this worker's pool loop; its files come back (also when cancelled); then
    the folder goes."""
    manager = pool_manager()
    execution_id = payload["execution_id"]
    worker = _address()
    if execution_id in manager.killed_executions:
        return {"cancelled": True, "worker": worker}
    tmp = Path(tempfile.mkdtemp(prefix="nbjobs-task-"))
    run_dir = tmp / "run"
    try:
        handle = ExecutionHandle(execution_id)
        try:
            output = manager.run(work(tmp, run_dir, handle, manager))
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            return {"cancelled": True, "worker": worker, "files": _files(run_dir)}
        return _result(output, run_dir, worker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_notebook_remote(payload: dict) -> dict:
    """A notebook task on this worker's pool; the executed notebook comes back in `files`."""
    from .local import execute_notebook_request

    def work(tmp: Path, run_dir: Path, handle: ExecutionHandle, manager: Any) -> Coroutine:
        context = TaskContext.from_dict({**payload["context"], "run_dir": str(run_dir)})
        workdir = Path(payload["workdir"])
        if not workdir.is_dir():
            workdir = tmp
        request = NotebookRequest(notebook_path=Path(payload["notebook_path"]), parameters=payload["parameters"],
                                  context=context, workdir=workdir, kernel=_kernel(payload, True),
                                  notebook_text=payload["notebook_text"])
        return execute_notebook_request(request, handle, manager)

    return _run_remote(payload, work)


def run_script_remote(payload: dict) -> dict:
    """A Python-script task on this worker (the script runs in place when the worker sees the file)."""
    from .subprocess import run_script_subprocess

    def work(tmp: Path, run_dir: Path, handle: ExecutionHandle, manager: Any) -> Coroutine:
        script = Path(payload["python_file"])
        if not script.is_file():
            script = tmp / "src" / script.name
            script.parent.mkdir(parents=True)
            script.write_text(payload["script_text"], encoding="utf-8")
        workdir = Path(payload["workdir"])
        if not workdir.is_dir():
            workdir = script.parent
        context = TaskContext.from_dict({**payload["context"], "run_dir": str(run_dir)})
        kernel = _kernel(payload, False)

        async def run() -> Any:
            task = asyncio.ensure_future(run_script_subprocess(script, payload["args"], context, workdir,
                                                               python=kernel.python, env=kernel.env))
            handle.on_kill.append(lambda: manager.loop.call_soon_threadsafe(task.cancel))
            manager.executions[handle.execution_id] = handle
            try:
                return await task
            finally:
                manager.executions.pop(handle.execution_id, None)

        return run()

    return _run_remote(payload, work)


def kill_remote(execution_id: str) -> bool:
    """On every worker (client.run): kill that execution's kernel or script, or refuse it if it comes."""
    return pool_manager().kill_execution(execution_id)
