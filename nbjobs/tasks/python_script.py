"""Python-script tasks (`spark_python_task`): an asyncio subprocess, output to logs.txt."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..compute.base import TaskOutput
from ..compute.subprocess import run_script_subprocess
from ..kernel.context import TaskContext
from .registry import PathField, TaskKind

if TYPE_CHECKING:  # pragma: no cover
    from ..compute.base import ComputeBackend, KernelChoice


async def run_python_task(python_file: Path, args: list[str], context: TaskContext, workdir: Path, *,
                          backend: ComputeBackend | None = None, kernel: KernelChoice | None = None,
                          environment: dict | None = None) -> TaskOutput:
    """Run `python_file` with `args` as argv; `dbutils` in the script sees `context`.

    Locally the script is an asyncio subprocess (of the environment's interpreter, else this one);
    `backend` may run it elsewhere (a Dask worker). Cancelling the call kills the script's process
    group (then re-raises CancelledError).
    """
    if backend is None and kernel is None and environment is None:
        output = await run_script_subprocess(python_file, args, context, workdir)
        output.compute = "local"
        return output
    from ..compute.base import KernelChoice, ScriptRequest
    from ..compute.local import local_backend

    request = ScriptRequest(python_file=Path(python_file), args=[str(a) for a in args], context=context,
                            workdir=Path(workdir), kernel=kernel or KernelChoice(), environment=environment)
    return await (backend or local_backend()).run(request)


class SparkPythonKind(TaskKind):
    field = "spark_python_task"
    name = "python"
    label = "Python script"
    path_fields = (PathField(("python_file",), "script"),)
