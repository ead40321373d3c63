"""The compute backend interface: a small async lifecycle, in the spirit of jupyter_client's provisioners.

    backend = SomeBackend(...)
    await backend.start()            # start or connect (idempotent)
    out = await backend.run(unit)    # run one unit of work (a NotebookRequest, a ScriptRequest, ...)
    ...                              # cancel = cancel that coroutine: the work is killed
    await backend.close()            # stop what start() started

The contract every backend keeps: cancelling `run` kills the kernel, the subprocess or the remote
work, then re-raises CancelledError (the runner's timeouts and run cancellation rely on it). A
failure of the work itself is a `TaskOutput` with `error`; an exception means nbjobs could not run
it (a `ComputeError` when the backend cannot run that kind of unit).

A new kind of work is a new `WorkUnit` subclass, handled in the `run` of the backends that can run
it. Backends are found by name (`nbjobs.compute.registry`); `RunCompute` builds them from the
workspace config through the class methods `serverless`, `new_cluster` and `existing_cluster`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..kernel.context import TaskContext

if TYPE_CHECKING:  # pragma: no cover
    from .config import ComputeConfig


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


class WorkUnit:
    """One unit of work for a backend. Each kind is a dataclass subclass with a `context` (TaskContext)
    and a `kind` name used in messages ("notebook", "script"; later "sql", "pipeline" ...)."""

    kind: ClassVar[str] = "unit"
    context: TaskContext


@dataclass
class NotebookRequest(WorkUnit):
    """One notebook task execution. `notebook_text` ships the notebook when there is no shared disk."""

    kind: ClassVar[str] = "notebook"

    notebook_path: Path
    parameters: dict[str, str]
    context: TaskContext
    workdir: Path
    kernel: KernelChoice = field(default_factory=KernelChoice)
    notebook_text: str | None = None
    environment: dict | None = None   # {"key": ..., "spec": {...}}: resolved where the kernel runs


@dataclass
class ScriptRequest(WorkUnit):
    """One Python-script task execution."""

    kind: ClassVar[str] = "script"

    python_file: Path
    args: list[str]
    context: TaskContext
    workdir: Path
    kernel: KernelChoice = field(default_factory=KernelChoice)
    environment: dict | None = None


class ComputeBackend(abc.ABC):
    """Where tasks run. `name` is the backend's registry name; `label` is what the store records as the
    task run's compute (e.g. "local", "dask job_cluster:etl")."""

    name: ClassVar[str] = ""
    #: how an existing cluster of this backend is addressed (in the message for an unknown cluster id)
    address_hint: ClassVar[str] = "an address this backend can connect to"
    label: str = "local"

    async def start(self) -> None:  # noqa: B027 - optional
        """Start or connect (idempotent)."""

    @abc.abstractmethod
    async def run(self, unit: WorkUnit) -> TaskOutput:
        """Run one unit of work, whatever its kind, and return its output; cancelling kills it.
        A kind this backend cannot run raises `self.cannot_run(unit)`."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Stop what `start` started."""

    def prepare(self, notebook_paths: list[str]) -> None:  # noqa: B027 - optional
        """A run will execute these notebooks here: get ready for them in the background (no waiting)."""

    def cannot_run(self, unit: Any) -> ComputeError:
        """The error for a unit of a kind this backend does not run."""
        kind = getattr(unit, "kind", None) or type(unit).__name__
        return ComputeError(f"compute backend '{self.name or type(self).__name__}' ({self.label}) cannot run "
                            f"a {kind} unit ({type(unit).__name__})")

    # -- built from the workspace config by RunCompute ------------------------------------------------
    @classmethod
    def serverless(cls, config: ComputeConfig, *, label: str) -> ComputeBackend:
        """The backend for tasks without a cluster (no compute field, or `environment_key`)."""
        raise ComputeError(f"compute backend '{cls.name}' cannot run tasks without a cluster")

    @classmethod
    def new_cluster(cls, spec: dict, config: ComputeConfig, *, label: str) -> ComputeBackend:
        """A cluster started for a run or a task: `spec` is the Jobs API `new_cluster` (ClusterSpec)."""
        raise ComputeError(f"compute backend '{cls.name}' cannot start clusters (job_clusters, new_cluster)")

    @classmethod
    def existing_cluster(cls, address: str | None, config: ComputeConfig, *, label: str) -> ComputeBackend:
        """A cluster nbjobs connects to and leaves running (`existing_cluster_id`)."""
        raise ComputeError(f"compute backend '{cls.name}' cannot connect to an existing cluster")


def cluster_size(spec: dict | None) -> int:
    """The workers a Jobs API `new_cluster` asks for: `num_workers`, else `autoscale.max_workers`."""
    spec = spec or {}
    autoscale = spec.get("autoscale") or {}
    value = spec.get("num_workers")
    if value is None and autoscale:
        value = autoscale.get("max_workers") or autoscale.get("min_workers")
    try:
        return max(1, int(value or 1))  # num_workers 0 (single node): the driver works, here one worker
    except (TypeError, ValueError):
        return 1
