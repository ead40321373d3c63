"""The task context a kernel or script runs in, and the files of a task run folder (stdlib only)."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

VALUES_FILE = "values.json"      # task values set by the task: {key: JSON value}
EXIT_FILE = "exit.json"          # {"value": str} written by dbutils.notebook.exit
CONTEXT_FILE = "context.json"    # the TaskContext
NOTEBOOK_FILE = "notebook.ipynb"  # the executed notebook
LOGS_FILE = "logs.txt"           # a script's stdout + stderr
CHILDREN_DIR = "children"        # notebooks run by dbutils.notebook.run

ENV_VAR = "NBJOBS_TASK_CONTEXT"  # path to context.json, for script tasks


@dataclass
class TaskContext:
    """Everything a running task needs to know about its job run (JSON-serialisable)."""

    job_id: int | None
    job_name: str
    run_id: int | None
    task_key: str
    task_run_id: int | None
    attempt_number: int = 0
    parameters: dict[str, str] = field(default_factory=dict)
    upstream_values: dict[str, dict] = field(default_factory=dict)
    task_keys: list[str] = field(default_factory=list)
    upstream_tasks: list[str] = field(default_factory=list)
    run_dir: str = ""
    notebook_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskContext:
        names = {f.name for f in fields(cls)}
        missing = [n for n in ("job_name", "task_key") if n not in data]
        if missing:
            raise ValueError(f"task context is missing {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in names}  # unknown keys: a newer writer
        kwargs["parameters"] = {str(k): str(v) for k, v in (kwargs.get("parameters") or {}).items()}
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskContext:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TaskContext:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON through a temp file in the same folder and os.replace: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_values(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Task values a task run set ({} when it set none)."""
    path = Path(run_dir) / VALUES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def read_exit_value(run_dir: str | os.PathLike) -> str | None:
    """The value given to dbutils.notebook.exit, or None when it was not called."""
    path = Path(run_dir) / EXIT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    value = data.get("value") if isinstance(data, dict) else None
    return None if value is None else str(value)
