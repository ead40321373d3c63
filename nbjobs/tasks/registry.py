"""The task-kind registry: one `TaskKind` per Jobs API task type that nbjobs runs.

Each kind lives in its own module of `nbjobs.tasks` (notebook, python_script, condition, for_each,
run_job …) and is registered here by its payload field; third parties add kinds through the
entry-point group ``nbjobs.task_kinds`` (each entry point names a `TaskKind` subclass or instance),
the way jupyter_client finds kernel provisioners. A task type is runnable iff a kind is registered
for it. Stdlib only at import time.
"""
from __future__ import annotations

import importlib
import threading
import warnings
from dataclasses import dataclass, field as _field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ..states import ResultState

__all__ = ["Checks", "ENTRY_POINT_GROUP", "Outcome", "PathField", "TaskKind", "TaskRun", "iteration_stats",
           "kind_for_field", "kind_named", "kind_of", "kinds", "outcome_of", "register", "reload_entry_points",
           "unregister", "version"]

ENTRY_POINT_GROUP = "nbjobs.task_kinds"


@dataclass(frozen=True)
class PathField:
    """A file path a task payload names: `keys` from the payload down to the path (e.g. ("file", "path")),
    `what` the kind of file ("notebook", "script", "dir", "file") for loading, rebasing and confinement."""
    keys: tuple[str, ...]
    what: str = "file"

    def get(self, payload: Any) -> Any:
        for key in self.keys:
            if not isinstance(payload, dict):
                return None
            payload = payload.get(key)
        return payload


@dataclass
class Outcome:
    """How a task run (one attempt) ended: its result, the task run fields to record (error,
    state_message, resolved_values, exit_value, output_path …), task values, a condition's outcome."""
    result: ResultState
    fields: dict[str, Any]
    values: dict[str, Any] = _field(default_factory=dict)
    outcome: str | None = None

    @classmethod
    def failed(cls, error: str, **fields: Any) -> Outcome:
        from ..states import ResultState
        return cls(ResultState.FAILED, dict(error=error, **fields))

    @classmethod
    def succeeded(cls, **fields: Any) -> Outcome:
        from ..states import ResultState
        return cls(ResultState.SUCCESS, dict(fields))


class TaskRun(Protocol):
    """What the run driver gives `TaskKind.run` for one attempt of one task (or for-each iteration)."""

    task: Any               # the Task model (the nested task for an iteration)
    key: str                # the job task it belongs to (the for-each task for an iteration)
    task_run_id: int        # this attempt's task run
    attempt: int
    refs: Any               # the RefContext of {{...}} references
    job_parameters: dict[str, str]
    is_iteration: bool
    store: Any              # the run's store (task runs of this run)
    child_runs: Any         # starts and awaits another job's run (run_job_task), or None

    def task_context(self, parameters: dict[str, str]) -> Any:
        """The `TaskContext` dbutils sees in the task (widgets, task values, run folder)."""

    async def on_compute(self, resolved: dict, execute: Any) -> Outcome:
        """Run `execute(target)` (-> TaskOutput) on the task's compute; the outcome records it."""

    async def run_iterations(self, nested: Any, items: list[tuple[int, Any]], kept: dict[int, dict],
                             concurrency: int) -> None:
        """Run `nested` once per (index, element) as iterations of this task (for-each)."""


class Checks(Protocol):
    """What validation gives `TaskKind.validate`: report problems, check references and files."""

    def add(self, path: str, message: str, fix: str = "") -> None: ...

    def refs(self, text: Any, path: str, **kw: Any) -> None: ...

    def refs_map(self, values: Any, path: str, **kw: Any) -> None: ...

    def refs_list(self, values: Any, path: str, **kw: Any) -> None: ...

    def check_file(self, payload: dict, field: str, path: str, kind: str) -> None: ...

    def check_range(self, path: str, value: Any, low: int, high: int | None = None) -> None: ...

    def check_task(self, task: dict, label: str, upstream: Any, nested: bool) -> None: ...

    def suppress(self, prefix: str) -> None:
        """Leave out the problems below `prefix` (one problem already says it all)."""


class TaskKind:
    """Everything about one task type. Subclasses set the class attributes and override the hooks."""

    #: the Jobs API payload field, e.g. "notebook_task"
    field: ClassVar[str] = ""
    #: a short name for clients (the panel's kind menu, `nbjobs jobs` tables), e.g. "notebook"
    name: ClassVar[str] = ""
    #: shown to people, e.g. "Notebook"
    label: ClassVar[str] = ""
    #: a failed attempt may be retried (max_retries applies)
    retryable: ClassVar[bool] = True
    #: runs on a compute backend (a kernel, a subprocess, a cluster), so it takes a concurrency slot
    needs_compute: ClassVar[bool] = True
    #: evaluated inline by the driver, without a slot or a thread (conditions)
    instant: ClassVar[bool] = False
    #: file paths the payload names
    path_fields: ClassVar[tuple[PathField, ...]] = ()
    #: payload keys holding a nested task (for_each_task.task)
    nested_tasks: ClassVar[tuple[str, ...]] = ()
    #: the pydantic model of the payload (validated with the job; None: any JSON object)
    model: ClassVar[Any] = None
    #: the task ends with an outcome ("true"/"false") that `depends_on[].outcome` may test
    has_outcome: ClassVar[bool] = False
    #: what a task timeout stops, for its message
    stops: ClassVar[str] = "process"

    def validate(self, payload: dict, path: str, check: Checks, *, upstream: Any, nested: bool) -> None:
        """Report problems of `payload` (the JSON at `path`) beyond its model's types."""

    async def run(self, run: TaskRun) -> Outcome:
        """Execute one attempt; raising ReferenceResolutionError fails the task with its message."""
        raise NotImplementedError(f"{type(self).__name__}.run")

    def payload(self, task: Any) -> Any:
        """The task's payload as `model` (a declared Task field, or a field Task keeps as extra JSON)."""
        value = getattr(task, self.field, None)
        if value is None:
            value = (getattr(task, "model_extra", None) or {}).get(self.field)
        if isinstance(value, dict) and self.model is not None:
            value = self.model.model_validate(value)
        return value

    def notebook_path(self, task: Any) -> str | None:
        """The notebook a `{{task.notebook_path}}` reference names (notebook tasks only)."""
        return None

    def progress(self, iterations: Any) -> dict | None:
        """The `stats` of a `task_progress` event, from the iteration states (for-each)."""
        return None

    def run_json(self, out: dict, row: dict, iterations: list[dict] | None) -> None:
        """Add the kind's fields to a runs/get `RunTask` (`out` holds the task's settings JSON)."""

    def output_json(self, out: dict, row: dict) -> None:
        """Add the kind's fields to a runs/get-output `RunOutput`."""


_LOCK = threading.RLock()
_KINDS: dict[str, TaskKind] = {}      # by payload field
_BUILTIN = (  # module:attribute of the kinds nbjobs ships
    "nbjobs.tasks.notebook:NotebookKind",
    "nbjobs.tasks.python_script:SparkPythonKind",
    "nbjobs.tasks.condition:ConditionKind",
    "nbjobs.tasks.for_each:ForEachKind",
    "nbjobs.tasks.run_job:RunJobKind",
)
_loaded = False
_version = 0  # bumped by every change, for callers that cache what they derive from the kinds


def version() -> int:
    """A number that changes whenever the registered kinds change."""
    _load()
    return _version


def register(kind: TaskKind | type[TaskKind]) -> TaskKind:
    """Add (or replace) a kind; returns the registered instance."""
    instance = kind() if isinstance(kind, type) else kind
    if not isinstance(instance, TaskKind):
        raise TypeError(f"{kind!r} is not a TaskKind")
    if not instance.field or not instance.field.endswith("_task"):
        raise ValueError(f"TaskKind {type(instance).__name__}: field must name a Jobs API payload "
                         f"field ending in _task, got {instance.field!r}")
    global _version
    _load()
    with _LOCK:
        _KINDS[instance.field] = instance
        _version += 1
    return instance


def unregister(field: str) -> None:
    global _version
    _load()
    with _LOCK:
        _KINDS.pop(field, None)
        _version += 1


def _entry_points() -> list:
    from importlib.metadata import entry_points
    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # a broken distribution's metadata must not break nbjobs
        warnings.warn(f"nbjobs: cannot list the {ENTRY_POINT_GROUP} entry points: {exc}", stacklevel=3)
        return []


def _load() -> None:
    """Register the built-in kinds, then the entry points' (once, on first use)."""
    global _loaded
    if _loaded:
        return
    with _LOCK:
        if _loaded:
            return
        _loaded = True
        for target in _BUILTIN:
            module, _, attr = target.partition(":")
            instance = getattr(importlib.import_module(module), attr)()
            _KINDS[instance.field] = instance
        for ep in _entry_points():
            try:
                register(ep.load())
            except Exception as exc:  # a broken plug-in is reported, never fatal
                warnings.warn(f"nbjobs: the task kind entry point {ep.name!r} ({ep.value}) of group "
                              f"{ENTRY_POINT_GROUP} could not be loaded and is ignored: "
                              f"{type(exc).__name__}: {exc}", stacklevel=3)


def reload_entry_points() -> None:
    """Forget the registered kinds; the next lookup loads the built-ins and entry points again."""
    global _loaded, _version
    with _LOCK:
        _KINDS.clear()
        _loaded = False
        _version += 1


def kinds() -> list[TaskKind]:
    """Every registered kind, in registration order."""
    _load()
    return list(_KINDS.values())


def kind_for_field(field: str) -> TaskKind | None:
    _load()
    return _KINDS.get(field)


def kind_named(name: str) -> TaskKind | None:
    _load()
    return next((k for k in _KINDS.values() if k.name == name), None)


def kind_of(task: Any) -> TaskKind | None:
    """The kind of a task (a `Task` model or its JSON dict); None for a type nbjobs does not run."""
    _load()
    if isinstance(task, dict):
        for field, kind in _KINDS.items():
            if task.get(field) is not None:
                return kind
        return None
    extra = getattr(task, "model_extra", None)
    for field, kind in _KINDS.items():
        if getattr(task, field, None) is not None or (extra and extra.get(field) is not None):
            return kind
    return None


def outcome_of(task: dict) -> str | None:
    """A runs/get task's outcome ("true"/"false"), for a kind that has one (`has_outcome`)."""
    kind = kind_of(task)
    payload = task.get(kind.field) if kind is not None and kind.has_outcome else None
    return payload.get("outcome") if isinstance(payload, dict) else None


def iteration_stats(task: dict) -> dict | None:
    """A runs/get task's `stats.task_run_stats`, for a kind that runs nested tasks (for-each)."""
    kind = kind_of(task)
    payload = task.get(kind.field) if kind is not None and kind.nested_tasks else None
    stats = ((payload or {}).get("stats") or {}).get("task_run_stats") if isinstance(payload, dict) else None
    return stats or None
