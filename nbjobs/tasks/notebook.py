"""Notebook tasks: a fresh pre-started kernel from the warm pool (or a Dask worker's), never reused.

The executing work runs on the kernel pool's own thread (`nbjobs.compute`), so the runner's loop never
blocks; papermill's parameterisation, metadata and error cells are kept.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..kernel.context import TaskContext
from . import TaskOutput
from .registry import PathField, TaskKind

if TYPE_CHECKING:  # pragma: no cover
    from ..compute.base import ComputeBackend, KernelChoice


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
