"""`JobDraft`: the job a panel edits (a JobSettings dict as a user writes it, its base folder and the
file it came from) and the edits on it. No widgets: the panel redraws after each edit."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..contract import JobsClient
from .editor import new_task, rename_task
from .jobfile import read_job_file, rebase, write_job_file


def open_job(job: Any, client: JobsClient, base_dir: str | os.PathLike | None = None) -> tuple[JobDraft, int | None]:
    """The draft of `job` — None (a new job), a job file, a JobSettings dict or model, or the id of a
    job registered in `client` — and that job id (None for the others)."""
    from ..spec import JobSettings
    draft = JobDraft(base_dir=base_dir)
    if job is None:
        return draft, None
    if isinstance(job, bool):
        raise TypeError("job must be a path, a dict, a JobSettings or a job id")
    if isinstance(job, int) or (isinstance(job, str) and job.isdigit()):
        data = client.get_job(int(job))
        draft.replace(rebase(data["settings"], draft.base_dir, draft.base_dir, absolute_inside_only=True))
        return draft, int(data["job_id"])
    if isinstance(job, (str, os.PathLike)):
        path = Path(job)
        if not path.is_absolute():
            path = (draft.base_dir / path) if not path.exists() else path.resolve()
        draft.load(path)
    elif isinstance(job, JobSettings):
        draft.replace(job.to_dict())
    elif isinstance(job, Mapping):
        draft.replace(job)
    else:
        raise TypeError(f"JobPanel(job=...): expected a job file, a JobSettings dict or a job id, "
                        f"not {type(job).__name__}")
    return draft, None


class JobDraft:
    """JobSettings being edited; task paths are relative to `base_dir`."""

    def __init__(self, settings: Mapping[str, Any] | None = None, *, base_dir: str | os.PathLike | None = None,
                 source_path: Path | None = None):
        self.base_dir = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
        self.source_path = source_path
        self.settings: dict = {}
        self.replace(settings if settings is not None else {"name": "Untitled", "tasks": []})

    def replace(self, settings: Mapping[str, Any]) -> None:
        self.settings = copy.deepcopy(dict(settings))
        self.settings.setdefault("name", "Untitled")
        if not isinstance(self.settings.get("tasks"), list):
            self.settings["tasks"] = []

    # -- reading --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.settings.get("name") or "Untitled")

    @property
    def tasks(self) -> list[dict]:
        return self.settings.setdefault("tasks", [])

    @property
    def task_keys(self) -> list[str]:
        return [str(t.get("task_key")) for t in self.tasks if isinstance(t, dict)]

    def index(self, key: str) -> int:
        for i, task in enumerate(self.tasks):
            if isinstance(task, dict) and task.get("task_key") == key:
                return i
        raise KeyError(f"job '{self.name}' has no task '{key}' (tasks: {', '.join(self.task_keys) or 'none'})")

    def task(self, key: str) -> dict:
        return self.tasks[self.index(key)]

    def to_yaml(self) -> str:
        import yaml
        return yaml.safe_dump(self.settings, sort_keys=False, allow_unicode=True, width=100)

    def to_json(self) -> str:
        return json.dumps(self.settings, indent=2, ensure_ascii=False)

    def validate(self) -> list:
        """The problems of the definition (`Problem(path, message, fix)`), as `nbjobs validate` finds them."""
        from ..spec import validate_job_settings
        return validate_job_settings(self.settings, base_dir=self.base_dir)

    # -- edits ----------------------------------------------------------------------------------
    def add_task(self, kind: str = "notebook", key: str | None = None, **fields: Any) -> int:
        """Append a new task; returns its index."""
        self.tasks.append(new_task(self.task_keys, kind, key, **fields))
        return len(self.tasks) - 1

    def remove_task(self, key: str) -> int:
        """Remove a task and the dependencies on it; returns the index it had."""
        index = self.index(key)
        del self.tasks[index]
        for task in self.tasks:
            self._drop_dep(task, key)
        return index

    def move_task(self, key: str, offset: int) -> int:
        """Move a task up (negative) or down the list; returns its new index."""
        index = self.index(key)
        new = max(0, min(len(self.tasks) - 1, index + offset))
        self.tasks.insert(new, self.tasks.pop(index))
        return new

    def update_task(self, key: str, **fields: Any) -> None:
        task = self.task(key)
        new_key = fields.get("task_key")
        for name, value in fields.items():
            if value is None:
                task.pop(name, None)
            else:
                task[name] = copy.deepcopy(value)
        if new_key and new_key != key:
            rename_task(self.tasks, key, new_key)

    def depend(self, key: str, upstream: str, outcome: str | bool | None = None) -> None:
        task = self.task(key)
        self._drop_dep(task, upstream)
        dep: dict[str, Any] = {"task_key": upstream}
        if outcome is not None:
            dep["outcome"] = str(outcome).lower()
        task["depends_on"] = list(task.get("depends_on") or []) + [dep]

    def undepend(self, key: str, upstream: str) -> None:
        self._drop_dep(self.task(key), upstream)

    @staticmethod
    def _drop_dep(task: dict, upstream: str) -> None:
        deps = [d for d in task.get("depends_on") or []
                if not (isinstance(d, dict) and d.get("task_key") == upstream)]
        if deps:
            task["depends_on"] = deps
        else:
            task.pop("depends_on", None)

    def set_parameters(self, parameters: Mapping[str, str] | None) -> None:
        if parameters:
            self.settings["parameters"] = [{"name": k, "default": str(v)} for k, v in parameters.items()]
        else:
            self.settings.pop("parameters", None)

    def set_tags(self, tags: Mapping[str, str | None] | None) -> None:
        if tags:
            self.settings["tags"] = {k: "" if v is None else str(v) for k, v in tags.items()}
        else:
            self.settings.pop("tags", None)

    def set_fields(self, **fields: Any) -> None:
        """Set job fields; an empty value removes the field."""
        for name, value in fields.items():
            if value:
                self.settings[name] = value
            else:
                self.settings.pop(name, None)

    # -- files ----------------------------------------------------------------------------------
    def resolve(self, path: str | os.PathLike) -> Path:
        target = Path(path)
        return target if target.is_absolute() else self.base_dir / target

    def export(self, path: str | os.PathLike, fmt: str | None = None) -> Path:
        """Write the job to a YAML or JSON file; relative task paths are rewritten for its folder."""
        return write_job_file(self.settings, self.resolve(path), self.base_dir, fmt)

    def load(self, path: str | os.PathLike) -> None:
        """Replace the definition with a job file's (its folder becomes the base folder)."""
        target = self.resolve(path)
        self.replace(read_job_file(target))
        self.base_dir = target.resolve().parent
        self.source_path = target.resolve()

    def display_path(self, path: Path) -> str:
        """`path` relative to the base folder when it is inside it."""
        try:
            return path.resolve().relative_to(self.base_dir).as_posix()
        except ValueError:
            return str(path)
