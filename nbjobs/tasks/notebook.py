"""Notebook tasks (`notebook_task`): a fresh pre-started kernel from the warm pool (or a Dask worker's),
never reused.

The executing work runs on the kernel pool's own thread (`nbjobs.compute`), so the runner's loop never
blocks; papermill's parameterisation, metadata and error cells are kept.
"""
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


class NotebookTask(ApiModel):
    """`notebook_task` (databricks-sdk `jobs.NotebookTask`)."""
    notebook_path: Text
    base_parameters: dict[str, Text] = Field(default_factory=dict)
    source: Text | None = None
    warehouse_id: Text | None = None


async def run_notebook_task(notebook_path: Path, parameters: dict[str, str], context: TaskContext,
                            workdir: Path, *, kernel_name: str | None = None,
                            backend: ComputeBackend | None = None, kernel: KernelChoice | None = None,
                            environment: dict | None = None) -> TaskOutput:
    """Execute `notebook_path` with `parameters` (widget values, and variables after a `parameters` cell).

    The executed notebook is `<run_dir>/notebook.ipynb`, kept also on failure. `kernel_name` overrides
    the notebook's kernelspec; `kernel` (an environment's kernel) and `backend` (default: the local
    pool) choose where it runs. Cancelling the call kills the kernel (then re-raises CancelledError).
    """
    from ..compute.base import KernelChoice, NotebookRequest
    from ..compute.local import local_backend, with_parameters

    notebook_path = Path(notebook_path)
    parameters = {str(k): str(v) for k, v in parameters.items()}
    choice = kernel or KernelChoice()
    if kernel_name:
        choice = KernelChoice(**{**choice.to_dict(), "kernel_name": kernel_name})
    request = NotebookRequest(notebook_path=notebook_path, parameters=parameters,
                              context=with_parameters(context, notebook_path, parameters), workdir=Path(workdir),
                              kernel=choice, environment=environment)
    return await (backend or local_backend()).run(request)


class NotebookKind(TaskKind):
    field = "notebook_task"
    name = "notebook"
    label = "Notebook"
    path_fields = (PathField(("notebook_path",), "notebook"),)
    model = NotebookTask
    stops = "kernel"

    def validate(self, payload, path, check, *, upstream, nested):
        check.check_file(payload, "notebook_path", path, "notebook")
        check.refs_map(payload.get("base_parameters"), f"{path}.base_parameters", upstream=upstream,
                       in_for_each=nested)

    async def run(self, run: TaskRun) -> Outcome:
        nb = run.task.notebook_task
        parameters = {k: str(v) for k, v in resolve_all(dict(nb.base_parameters or {}), run.refs).items()}
        parameters.update(run.job_parameters)  # job parameters are pushed down and win on the same key
        resolved = {"notebook_task": {"base_parameters": parameters}}
        context = run.task_context(parameters)
        path = Path(nb.notebook_path)
        return await run.on_compute(resolved, lambda target: run_notebook_task(
            path, parameters, context, path.parent, backend=target.backend, kernel=target.kernel,
            environment=target.environment))

    def notebook_path(self, task) -> str | None:
        payload = self.payload(task)
        return payload.notebook_path if payload is not None else None

    def output_json(self, out: dict, row: dict) -> None:
        from ..api_json import OUTPUT_LIMIT
        result = row.get("exit_value")
        out["notebook_output"] = ({"result": result[:OUTPUT_LIMIT], "truncated": len(result) > OUTPUT_LIMIT}
                                  if result is not None else {})
