"""The job the panel edits, as a user writes it (a JobSettings dict): task kinds from the task-kind
registry (`nbjobs.tasks.registry`), new tasks, renames, the graph's view of the tasks, text forms."""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable

from ..tasks.registry import TaskKind, kind_named, kind_of, kinds
from .graph import GraphTask

__all__ = ["graph_tasks", "kind_menu", "new_task", "problem_task_index", "rename_task",
           "source_files", "task_kind"]

_TASK_INDEX = re.compile(r"^tasks\[(\d+)\]")


def kind_menu() -> list[tuple[str, str]]:
    """(label, name) of every registered task kind, in registration order (the kind menu)."""
    return [(kind.label or kind.name, kind.name) for kind in kinds()]


def task_kind(task: dict) -> str:
    """The registered kind's name (notebook, python, condition, for_each, run_job, or a plug-in's),
    `other:<field>` for a Jobs API task type no registered kind runs, else "notebook"."""
    kind = kind_of(task)
    if kind is not None:
        return kind.name
    from ..spec.models import TASK_TYPES
    for name in TASK_TYPES:
        if task.get(name) is not None:
            return f"other:{name}"
    for name, value in task.items():  # a task type of a kind not registered (here)
        if isinstance(name, str) and name.endswith("_task") and isinstance(value, dict):
            return f"other:{name}"
    return "notebook"


def task_field(kind: str) -> str | None:
    """The payload field of a kind name (or of `other:<field>`)."""
    if kind.startswith("other:"):
        return kind.split(":", 1)[1]
    found = kind_named(kind)
    return found.field if found is not None else None


def graph_tasks(tasks: Iterable[dict]) -> list[GraphTask]:
    out = []
    for task in tasks:
        if not isinstance(task, dict):
            continue
        deps = []
        for dep in task.get("depends_on") or []:
            if isinstance(dep, dict) and dep.get("task_key") is not None:
                outcome = dep.get("outcome")
                deps.append((str(dep["task_key"]), None if outcome in (None, "") else str(outcome).lower()))
        kind = task_kind(task)
        out.append(GraphTask(str(task.get("task_key") or "?"), "other" if kind.startswith("other") else kind,
                             tuple(deps), bool(task.get("disabled"))))
    return out


def problem_task_index(path: str) -> int | None:
    m = _TASK_INDEX.match(path or "")
    return int(m.group(1)) if m else None


# -- text forms of maps and lists ----------------------------------------------------------------
def pairs_text(mapping: dict | None) -> str:
    return "\n".join(f"{k}={'' if v is None else v}" for k, v in (mapping or {}).items())


def parse_pairs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        name, _, value = line.partition("=")
        out[name.strip()] = value.strip()
    return out


def params_text(params: list | None) -> str:
    return "\n".join(f"{p.get('name', '')}={'' if p.get('default') is None else p.get('default')}"
                     for p in params or [] if isinstance(p, dict))


def parse_params(text: str) -> list[dict[str, str]]:
    return [{"name": k, "default": v} for k, v in parse_pairs(text).items()]


def lines_text(items: list | None) -> str:
    return "\n".join("" if i is None else str(i) for i in items or [])


def parse_lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def source_files(base_dir: Path, *, limit: int = 400) -> list[str]:
    """Notebooks and scripts under `base_dir` (relative, hidden folders and checkpoints skipped)."""
    out: list[str] = []
    base_dir = Path(base_dir)
    for root, dirs, files in os.walk(base_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")) and d not in ("node_modules",))
        depth = len(Path(root).relative_to(base_dir).parts)
        if depth >= 3:
            dirs[:] = []
        for name in sorted(files):
            if name.endswith((".ipynb", ".py")) and not name.startswith("."):
                out.append((Path(root) / name).relative_to(base_dir).as_posix())
                if len(out) >= limit:
                    return out
    return out


# -- edits -----------------------------------------------------------------------------------------
def rename_task(tasks: list[dict], old: str, new: str) -> None:
    """After a task key changed: dependencies on it and `{{tasks.<old>....}}` references follow."""
    pattern = re.compile(r"(\{\{\s*tasks\.)" + re.escape(old) + r"(?=[.\s}])")

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(lambda m: m.group(1) + new, value)
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    for task in tasks:
        if not isinstance(task, dict):
            continue
        for dep in task.get("depends_on") or []:
            if isinstance(dep, dict) and dep.get("task_key") == old:
                dep["task_key"] = new
        for name, value in list(task.items()):
            if name not in ("task_key", "depends_on"):
                task[name] = fix(value)


def _payload(kind: TaskKind, key: str, fields: dict[str, Any]) -> dict:
    """The new payload of a `kind` task; takes the payload's own entries out of `fields`."""
    if kind.name == "notebook":
        payload = {"notebook_path": fields.pop("notebook_path", "")}
        if "base_parameters" in fields:
            payload["base_parameters"] = dict(fields.pop("base_parameters"))
    elif kind.name == "python":
        payload = {"python_file": fields.pop("python_file", "")}
        if "parameters" in fields:
            payload["parameters"] = list(fields.pop("parameters"))
    elif kind.name == "condition":
        payload = {"op": fields.pop("op", "EQUAL_TO"), "left": fields.pop("left", ""),
                   "right": fields.pop("right", "")}
    elif kind.name == "for_each":
        payload = {"inputs": fields.pop("inputs", "[]"), "concurrency": fields.pop("concurrency", 1),
                   "task": fields.pop("task", {"task_key": f"{key}_iteration", "notebook_task":
                                               {"notebook_path": fields.pop("notebook_path", "")}})}
    elif kind.name == "run_job":
        payload = {"job_id": fields.pop("job_id", "")}
    else:  # a plug-in kind: the keyword arguments that are not Task fields make its payload
        from ..spec.models import Task
        payload = {name: fields.pop(name) for name in list(fields) if name not in Task.model_fields}
    return payload


def new_task(existing: Iterable[str], kind: str = "notebook", key: str | None = None, **fields: Any) -> dict:
    """A task dict of a registered `kind` with a fresh key (`task_1`, `task_2`, ...) unless `key` is given.
    `fields`: the payload's entries (notebook_path, python_file, left/op/right, inputs, job_id …;
    for a plug-in kind, whatever is not a Task field) and Task fields (depends_on, run_if …)."""
    found = kind_named(kind)
    if found is None:
        raise ValueError(f"unknown task kind {kind!r}; use one of {', '.join(k.name for k in kinds())}")
    taken = set(existing)
    if key is None:
        n = 1
        while f"task_{n}" in taken:
            n += 1
        key = f"task_{n}"
    fields = dict(fields)
    task: dict[str, Any] = {"task_key": key, found.field: _payload(found, key, fields)}
    task.update(copy.deepcopy(fields))
    return task
