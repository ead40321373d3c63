"""Python-script tasks (`spark_python_task`): an asyncio subprocess, output to logs.txt."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from ..refs import resolve_all
from .api_model import ApiModel, Text
from .registry import Outcome, PathField, TaskKind, TaskRun

if TYPE_CHECKING:  # pragma: no cover
    from ..compute.base import ComputeBackend, KernelChoice, TaskOutput
    from ..kernel.context import TaskContext


class SparkPythonTask(ApiModel):
    """`spark_python_task` (databricks-sdk `jobs.SparkPythonTask`)."""
    python_file: Text
    parameters: list[Text] = Field(default_factory=list)
    source: Text | None = None


async def run_python_task(python_file: Path, args: list[str], context: TaskContext, workdir: Path, *,
                          backend: ComputeBackend | None = None, kernel: KernelChoice | None = None,
                          environment: dict | None = None) -> TaskOutput:
    """Run `python_file` with `args` as argv; `dbutils` in the script sees `context`.

    Locally the script is an asyncio subprocess (of the environment's interpreter, else this one);
    `backend` may run it elsewhere (a Dask worker). Cancelling the call kills the script's process
    group (then re-raises CancelledError).
    """
    from ..compute.base import KernelChoice, ScriptRequest
    if backend is None and kernel is None and environment is None:
        from ..compute.subprocess import run_script_subprocess
        output = await run_script_subprocess(python_file, args, context, workdir)
        output.compute = "local"
        return output
    from ..compute.local import local_backend

    request = ScriptRequest(python_file=Path(python_file), args=[str(a) for a in args], context=context,
                            workdir=Path(workdir), kernel=kernel or KernelChoice(), environment=environment)
    return await (backend or local_backend()).run(request)


class SparkPythonKind(TaskKind):
    field = "spark_python_task"
    name = "python"
    label = "Python script"
    path_fields = (PathField(("python_file",), "script"),)
    model = SparkPythonTask

    def validate(self, payload, path, check, *, upstream, nested):
        check.check_file(payload, "python_file", path, "script")
        check.refs_list(payload.get("parameters"), f"{path}.parameters", upstream=upstream, in_for_each=nested)

    async def run(self, run: TaskRun) -> Outcome:
        py = run.task.spark_python_task
        args = [str(a) for a in resolve_all(list(py.parameters or []), run.refs)]
        resolved = {"spark_python_task": {"parameters": args}}
        context = run.task_context(dict(run.job_parameters))
        path = Path(py.python_file)
        return await run.on_compute(resolved, lambda target: run_python_task(
            path, args, context, path.parent, backend=target.backend, kernel=target.kernel,
            environment=target.environment))
