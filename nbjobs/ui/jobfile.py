"""Job files as the panel reads and writes them: JSON/YAML JobSettings (or a bundle), with the task
file paths (`TaskKind.path_fields` of the registered kinds, `nbjobs.tasks.paths`) rewritten for the file's folder."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from ..tasks.paths import map_task_paths
from ..tasks.registry import kinds


def rebase(settings: dict, old: Path, new: Path, *, absolute_inside_only: bool = False) -> dict:
    """A copy of `settings` whose relative task paths are relative to `new` instead of `old`
    (with `absolute_inside_only`: absolute paths under `new` become relative, others stay)."""

    def fix(value: Any, _what: str, _holder: dict, _label: str) -> Any:
        if not isinstance(value, str) or not value:
            return value
        if absolute_inside_only:
            if os.path.isabs(value):
                try:
                    return Path(value).relative_to(new).as_posix()
                except ValueError:
                    return value
            return value
        if not os.path.isabs(value) and ":" not in value.split("/")[0]:
            return Path(os.path.relpath(old / value, new)).as_posix()
        return value

    out = copy.deepcopy(settings)
    if isinstance(out.get("tasks"), list):
        out["tasks"] = [map_task_paths(task, fix, kinds_only=True, libraries=False) for task in out["tasks"]]
    return out


def read_job_file(path: str | os.PathLike) -> dict:
    """The JobSettings dict of a JSON/YAML job file as written (a bundle is loaded and resolved)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml
        data = yaml.safe_load(text)
    if isinstance(data, dict) and ("resources" in data or "bundle" in data):
        from ..spec import load_job
        loaded = load_job(path)
        return rebase(loaded.settings.to_dict(), path.parent, path.parent.resolve(), absolute_inside_only=True)
    if isinstance(data, dict) and isinstance(data.get("settings"), dict) and "tasks" not in data:
        data = data["settings"]  # a jobs/get answer
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a job file holds a map of JobSettings fields (name:, tasks: ...)")
    return data


def write_job_file(settings: dict, target: Path, base_dir: Path, fmt: str | None = None) -> Path:
    """Write `settings` (task paths relative to `base_dir`) as YAML or JSON (by extension, or `fmt`);
    relative task paths are rewritten for the file's folder. Returns the absolute path."""
    fmt = fmt or ("json" if target.suffix.lower() == ".json" else "yaml")
    out = rebase(settings, base_dir, target.resolve().parent)
    if fmt == "json":
        text = json.dumps(out, indent=2, ensure_ascii=False) + "\n"
    else:
        import yaml
        text = yaml.safe_dump(out, sort_keys=False, allow_unicode=True, width=100)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target.resolve()


def slug(name: Any) -> str:
    """A file name stem for a job name."""
    text = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name or "job")).strip("_")
    return text or "job"


def task_settings(task: dict) -> dict:
    """The settings part of a runs/get task (run fields dropped; every registered kind's payload kept)."""
    from ..spec.models import Task
    fields = set(Task.model_fields) | {kind.field for kind in kinds()}
    return {k: v for k, v in task.items() if k in fields}
