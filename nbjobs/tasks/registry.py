"""The task-kind registry: one `TaskKind` per Jobs API task type that nbjobs runs.

Each kind lives in its own module of `nbjobs.tasks` (notebook, python_script, condition, for_each,
run_job …) and is registered here by name; third parties add kinds through the entry-point group
``nbjobs.task_kinds`` (each entry point names a `TaskKind` subclass or instance), the way
jupyter_client finds kernel provisioners. Stdlib only at import time.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["ENTRY_POINT_GROUP", "PathField", "TaskKind", "kind_for_field", "kind_named", "kind_of", "kinds",
           "register", "unregister"]

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


def register(kind: TaskKind | type[TaskKind]) -> TaskKind:
    """Add (or replace) a kind; returns the registered instance."""
    instance = kind() if isinstance(kind, type) else kind
    if not instance.field or not instance.field.endswith("_task"):
        raise ValueError(f"TaskKind {type(instance).__name__}: field must name a Jobs API payload "
                         f"field ending in _task, got {instance.field!r}")
    with _LOCK:
        _KINDS[instance.field] = instance
    return instance


def unregister(field: str) -> None:
    with _LOCK:
        _KINDS.pop(field, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    with _LOCK:
        if _loaded:
            return
        for target in _BUILTIN:
            module, _, attr = target.partition(":")
            register(getattr(importlib.import_module(module), attr))
        _loaded = True


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
    get = task.get if isinstance(task, dict) else (lambda f: getattr(task, f, None))
    for field, kind in _KINDS.items():
        if get(field) is not None:
            return kind
    return None
