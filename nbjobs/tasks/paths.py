"""The file paths a task names, from the registry's `TaskKind.path_fields`: one walker for loading
(relative paths made absolute), bundles (paths marked with their file's folder) and confinement."""
from __future__ import annotations

from typing import Any, Callable

from .registry import PathField, kinds, version

# Paths of task types nbjobs does not run (yet): still resolved so the settings stay portable.
OTHER_PATH_FIELDS: dict[str, tuple[PathField, ...]] = {
    "dbt_task": (PathField(("project_directory",), "dir"),),
    "sql_task": (PathField(("file", "path"), "file"),),
}
LIBRARY_PATH = PathField(("requirements",), "file")

#: fix(value, what, holder, label) -> the new value; `holder` is the dict holding the path (its
#: "source" says GIT for a path in the job's git_source), `label` the field path (tasks[0] (a).notebook_task.notebook_path)
PathFix = Callable[[Any, str, dict, str], Any]


_cache: tuple[int, dict, dict] = (-1, {}, {})


def _fields() -> tuple[dict[str, tuple[PathField, ...]], dict[str, tuple[str, ...]]]:
    global _cache
    if _cache[0] != version():
        paths = dict(OTHER_PATH_FIELDS)
        paths.update({k.field: k.path_fields for k in kinds() if k.path_fields})
        _cache = (version(), paths, {k.field: k.nested_tasks for k in kinds() if k.nested_tasks})
    return _cache[1], _cache[2]


def path_fields() -> dict[str, tuple[PathField, ...]]:
    """{payload field: its path fields}, of every registered kind (and the types nbjobs does not run)."""
    return dict(_fields()[0])


def nested_task_fields() -> dict[str, tuple[str, ...]]:
    """{payload field: its keys holding a nested task} (for_each_task: task)."""
    return dict(_fields()[1])


def map_task_paths(task: Any, fix: PathFix, label: str = "", *, kinds_only: bool = False,
                   libraries: bool = True) -> Any:
    """A copy of `task` (a Task JSON dict) with `fix` applied to every path it names, nested tasks
    included; containers along the way are copied, the rest shared. `kinds_only`: only the paths of
    registered kinds; `libraries`: also `libraries[].requirements`."""
    fields, nested = _fields()
    if kinds_only:
        fields = {k: v for k, v in fields.items() if k not in OTHER_PATH_FIELDS}
    return _map(task, fix, label, fields, nested, libraries)


def _map(task: Any, fix: PathFix, label: str, fields: dict, nested: dict, libraries: bool) -> Any:
    if not isinstance(task, dict):
        return task
    task = dict(task)
    key = task.get("task_key")
    label += f" ({key})" if isinstance(key, str) and key and label else ""
    for payload_key, paths in fields.items():
        payload = task.get(payload_key)
        if not isinstance(payload, dict):
            continue
        for path in paths:
            payload = _set(payload, path.keys, path.what, fix, f"{label}.{payload_key}")
        task[payload_key] = payload
    if libraries and isinstance(task.get("libraries"), list):
        task["libraries"] = [_set(lib, LIBRARY_PATH.keys, LIBRARY_PATH.what, fix, f"{label}.libraries[{i}]")
                             if isinstance(lib, dict) else lib for i, lib in enumerate(task["libraries"])]
    for payload_key, inner_keys in nested.items():
        payload = task.get(payload_key)
        if isinstance(payload, dict):
            for inner in inner_keys:
                if isinstance(payload.get(inner), dict):
                    payload = {**payload, inner: _map(payload[inner], fix, f"{label}.{payload_key}.{inner}", fields,
                                                      nested, libraries)}
            task[payload_key] = payload
    return task


def _set(holder: dict, keys: tuple[str, ...], what: str, fix: PathFix, label: str) -> dict:
    """`holder` with the path at `keys` replaced by fix(...) (copied along the way; as is without it)."""
    first = keys[0]
    if first not in holder:
        return holder
    if len(keys) == 1:
        return {**holder, first: fix(holder[first], what, holder, f"{label}.{first}")}
    inner = holder[first]
    if not isinstance(inner, dict):
        return holder
    return {**holder, first: _set(inner, keys[1:], what, fix, f"{label}.{first}")}
