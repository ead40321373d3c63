"""Notebook tasks: papermill in a fresh kernel, run in a worker thread so the runner's loop never blocks."""
from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from ..kernel.context import NOTEBOOK_FILE, TaskContext, read_exit_value, read_values
from . import TaskOutput


async def run_notebook_task(notebook_path: Path, parameters: dict[str, str], context: TaskContext,
                            workdir: Path, *, kernel_name: str | None = None) -> TaskOutput:
    """Execute `notebook_path` with `parameters` (widget values, and variables after a `parameters` cell).

    The executed notebook is `<run_dir>/notebook.ipynb`, kept also on failure. Cancelling the call
    kills the kernel (then re-raises CancelledError).
    """
    from ..kernel.execute import KernelHandle, run_notebook  # papermill loads in the worker thread

    notebook_path = Path(notebook_path)
    parameters = {str(k): str(v) for k, v in parameters.items()}
    context = dataclasses.replace(
        context, parameters={**context.parameters, **parameters},
        notebook_path=context.notebook_path or str(notebook_path))
    run_dir = Path(context.run_dir)
    output = run_dir / NOTEBOOK_FILE
    handle = KernelHandle()
    work = asyncio.ensure_future(asyncio.to_thread(
        run_notebook, notebook_path, output, context, workdir=Path(workdir), parameters=parameters,
        kernel_name=kernel_name, handle=handle))
    try:
        result = await asyncio.shield(work)
    except asyncio.CancelledError:
        handle.kill()
        await asyncio.wait({work}, timeout=30)
        raise
    return TaskOutput(
        error=result.error, error_trace=result.error_trace, exit_value=read_exit_value(run_dir),
        values=read_values(run_dir), output_path=output if output.exists() else None, logs_path=None)
