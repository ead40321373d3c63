"""The compute backend interface: a small async lifecycle, in the spirit of jupyter_client's provisioners.

    backend = SomeBackend(...)
    await backend.start()                      # start or connect (idempotent)
    out = await backend.run_notebook(request)  # submit one task and wait for its TaskOutput
    ...                                        # cancel = cancel that coroutine: the work is killed
    await backend.close()                      # stop what start() started

The contract every backend keeps: cancelling `run_notebook` / `run_script` kills the kernel, the
subprocess or the remote work, then re-raises CancelledError (the runner's timeouts and run
cancellation rely on it). A failure of the task itself is a `TaskOutput` with `error`; an exception
means nbjobs could not run it.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..kernel.context import TaskContext


@dataclass
class TaskOutput:
    """What an executor reports: error (None on success), exit value, task values, files, and where
    it ran (`compute`, e.g. "local" or "dask job_cluster etl (tcp://127.0.0.1:35121) worker ...")."""

    error: str | None = None
    error_trace: str | None = None
    exit_value: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    output_path: Path | None = None
    logs_path: Path | None = None
    compute: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ComputeError(RuntimeError):
    """The compute a task asks for cannot be used (unknown cluster, missing package, start failure)."""


@dataclass
class KernelChoice:
    """Which kernel (notebook tasks) or interpreter (scripts) a task runs in.

    `kernel_name` overrides the notebook's own kernelspec; `env` and `kernel_dirs` come from an
    environment (`nbjobs.compute.environments`); `python` is the interpreter for scripts.
    """

    kernel_name: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    kernel_dirs: list[str] = field(default_factory=list)
    python: str | None = None
    environment_key: str | None = None

    def to_dict(self) -> dict:
        return {"kernel_name": self.kernel_name, "env": dict(self.env), "kernel_dirs": list(self.kernel_dirs),
                "python": self.python, "environment_key": self.environment_key}


@dataclass
class NotebookRequest:
    """One notebook task execution. `notebook_text` ships the notebook when there is no shared disk."""

    notebook_path: Path
    parameters: dict[str, str]
    context: TaskContext
    workdir: Path
    kernel: KernelChoice = field(default_factory=KernelChoice)
    notebook_text: str | None = None
    environment: dict | None = None   # {"key": ..., "spec": {...}}: resolved where the kernel runs


@dataclass
class ScriptRequest:
    """One Python-script task execution."""

    python_file: Path
    args: list[str]
    context: TaskContext
    workdir: Path
    kernel: KernelChoice = field(default_factory=KernelChoice)
    environment: dict | None = None


class ComputeBackend(abc.ABC):
    """Where tasks run. `label` is what the store records as the task run's compute."""

    label: str = "local"

    async def start(self) -> None:  # noqa: B027 - optional
        """Start or connect (idempotent)."""

    async def run(self, unit: NotebookRequest | ScriptRequest) -> TaskOutput:
        """Run one unit of work, whatever its kind; cancelling kills it."""
        if isinstance(unit, NotebookRequest):
            return await self.run_notebook(unit)
        if isinstance(unit, ScriptRequest):
            return await self.run_script(unit)
        raise ComputeError(f"{type(self).__name__} cannot run {type(unit).__name__}")

    @abc.abstractmethod
    async def run_notebook(self, request: NotebookRequest) -> TaskOutput:
        """Execute a notebook task; cancelling kills it."""

    @abc.abstractmethod
    async def run_script(self, request: ScriptRequest) -> TaskOutput:
        """Execute a Python-script task; cancelling kills it."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Stop what `start` started."""
