"""The local backend ("local"): notebook tasks on the warm kernel pool, scripts as asyncio subprocesses."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from ..kernel.context import CONTEXT_FILE, EXIT_FILE, NOTEBOOK_FILE, VALUES_FILE, read_exit_value, read_values
from .base import ComputeBackend, KernelChoice, NotebookRequest, ScriptRequest, TaskOutput, WorkUnit
from .kernels import ExecutionHandle, KernelKey, PoolManager, pool_manager

if TYPE_CHECKING:  # pragma: no cover
    from .config import ComputeConfig

CANCEL_GRACE = 30.0  # seconds to wait, after a cancel, for the killed execution to write its notebook


def kernel_key(kernel_name: str, choice: KernelChoice) -> KernelKey:
    return KernelKey(kernel_name=kernel_name, env=tuple(sorted(choice.env.items())),
                     kernel_dirs=tuple(choice.kernel_dirs))


async def execute_notebook_request(request: NotebookRequest, handle: ExecutionHandle,
                                   manager: PoolManager) -> TaskOutput:
    """On the pool loop: write the context, prepare the notebook, run it on a fresh pooled kernel."""
    from ..kernel.execute import kernel_name_of, prepare_notebook
    from .notebook_exec import execute_on_kernel

    context = request.context
    run_dir = Path(context.run_dir)
    output = run_dir / NOTEBOOK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (VALUES_FILE, EXIT_FILE):
            (run_dir / stale).unlink(missing_ok=True)
        context_path = context.save(run_dir / CONTEXT_FILE)
        nb = prepare_notebook(request.notebook_path, context_path, request.parameters, workdir=request.workdir,
                              kernel_name=request.kernel.kernel_name, text=request.notebook_text)
    except Exception as exc:
        return TaskOutput(error=f"cannot read notebook {request.notebook_path}: {type(exc).__name__}: {exc}",
                          error_trace=traceback.format_exc())
    key = kernel_key(kernel_name_of(nb, request.kernel.kernel_name), request.kernel)
    if handle.killed or handle.execution_id in manager.killed_executions:
        raise asyncio.CancelledError()
    manager.executions[handle.execution_id] = handle
    try:
        try:
            kernel = await manager.acquire(key)
        except Exception as exc:  # no such kernel, or it could not start
            message = f"{type(exc).__name__}: {str(exc).strip() or 'the kernel could not start'}"
            return TaskOutput(error=message.splitlines()[0], error_trace=traceback.format_exc())
        handle.attach(kernel)
        try:
            result = await execute_on_kernel(nb, kernel, request.notebook_path, output,
                                             exited=run_dir / EXIT_FILE, killed=lambda: handle.killed)
        finally:
            manager.release(kernel)
    finally:
        manager.executions.pop(handle.execution_id, None)
    return TaskOutput(error=result.error, error_trace=result.error_trace, exit_value=read_exit_value(run_dir),
                      values=read_values(run_dir), output_path=output if output.exists() else None,
                      logs_path=None)


async def run_on_pool(manager: PoolManager, make: Callable[[ExecutionHandle], Coroutine[Any, Any, Any]],
                      handle: ExecutionHandle | None = None) -> Any:
    """Run `make(handle)` on the pool loop and await it from the caller's loop.

    Cancelling the caller kills the kernel at once (SIGKILL, from this thread), cancels the pool-side
    coroutine, waits (bounded) until it has written what ran, then re-raises CancelledError.
    """
    handle = handle or ExecutionHandle()

    async def wrapped() -> Any:
        try:
            return await make(handle)
        finally:
            if not handle.finished.done():
                handle.finished.set_result(None)

    future = manager.submit(wrapped())
    try:
        return await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        handle.kill()
        future.cancel()
        try:
            await asyncio.wait_for(asyncio.wrap_future(handle.finished), CANCEL_GRACE)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        raise


class LocalBackend(ComputeBackend):
    """This machine: the process's kernel pool, and subprocesses for scripts."""

    name = "local"

    def __init__(self, *, pool_size: int | None = None, label: str = "local"):
        self.pool_size = pool_size
        self.label = label

    @classmethod
    def serverless(cls, config: ComputeConfig, *, label: str) -> LocalBackend:
        return cls(pool_size=config.kernel_pool_size, label=label)

    @classmethod
    def new_cluster(cls, spec: dict, config: ComputeConfig, *, label: str) -> LocalBackend:
        """`compute.cluster_backend: local`: a job cluster's tasks run on this machine's pool."""
        return cls(label=label)

    async def start(self) -> None:
        manager = pool_manager()
        if self.pool_size is not None:
            manager.set_size(self.pool_size)

    def prepare(self, notebook_paths: list[str]) -> None:
        """Fill the pools of these notebooks' kernelspecs now, and import the executor meanwhile."""
        manager = pool_manager()
        if self.pool_size is not None:
            manager.set_size(self.pool_size)
        manager.submit(_prestart(manager, notebook_paths))

    async def run(self, unit: WorkUnit) -> TaskOutput:
        if isinstance(unit, NotebookRequest):
            manager = pool_manager()
            output = await run_on_pool(manager, lambda handle: execute_notebook_request(unit, handle, manager))
        elif isinstance(unit, ScriptRequest):
            from .subprocess import run_script_subprocess
            output = await run_script_subprocess(unit.python_file, unit.args, unit.context, unit.workdir,
                                                 python=unit.kernel.python, env=unit.kernel.env)
        else:
            raise self.cannot_run(unit)
        output.compute = self.label
        return output


async def _prestart(manager: PoolManager, notebook_paths: list[str]) -> None:
    """On the pool loop: the kernelspecs of these notebooks, then fill their pools; warm the imports."""
    from .notebook_exec import warm_imports

    def names() -> list[str]:
        found = set()
        for path in notebook_paths:
            try:
                if not path.endswith(".ipynb"):
                    found.add("python3")
                    continue
                with open(path, encoding="utf-8") as fh:
                    nb = json.load(fh)
                found.add((nb.get("metadata", {}).get("kernelspec") or {}).get("name") or "python3")
            except (OSError, ValueError):
                continue
        return sorted(found)

    keys = [KernelKey(name) for name in await asyncio.to_thread(names)]
    await manager.warm(keys, then=warm_imports)


_default: LocalBackend | None = None


def local_backend() -> LocalBackend:
    global _default
    if _default is None:
        _default = LocalBackend()
    return _default


def with_parameters(context: Any, notebook_path: Path, parameters: dict[str, str]) -> Any:
    """The task context a notebook sees: its parameters merged in, its own path."""
    return dataclasses.replace(context, parameters={**context.parameters, **parameters},
                               notebook_path=context.notebook_path or str(notebook_path))
