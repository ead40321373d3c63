"""Read job documents (JSON or YAML: JobSettings, a jobs/get dump, a jobs/create body), validate them and
make their task file paths absolute. `nbjobs.spec.job_file.load_job` picks this or a bundle."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Collection
from typing import Any

import yaml

from ..tasks.paths import map_task_paths
from .models import JobSettings, as_text
from ..errors import JobDefinitionError, Problem
from .health import job_notes
from .notifications import notification_notes
from .files import find_source_file, is_remote_path
from .validate import validate_job_settings

BUNDLE_FILES = ("databricks.yml", "databricks.yaml")


@dataclass
class LoadedJob:
    settings: JobSettings
    source_path: Path
    resource_key: str | None = None  # bundle resource key (resources.jobs.<key>)
    target: str | None = None  # bundle target


@dataclass(frozen=True)
class Located:
    """A path value remembered with the directory of the file that declared it (bundles)."""
    value: Any
    base_dir: Path


def read_document(path: Path) -> Any:
    """The JSON or YAML content of ``path`` (JobDefinitionError if unreadable or malformed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobDefinitionError([Problem("", f"file not found: {path}", "check the path")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobDefinitionError([Problem("", f"cannot read {path}: {exc}", "check the file")]) from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise JobDefinitionError([Problem(f"line {exc.lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}",
                                          "fix the JSON syntax")], source=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc)
        raise JobDefinitionError([Problem(where, f"invalid YAML: {what}", "fix the YAML syntax")],
                                 source=path) from None


def is_bundle(path: Path, data: Any) -> bool:
    if path.name in BUNDLE_FILES:
        return True
    resources = data.get("resources") if isinstance(data, dict) else None
    return isinstance(resources, dict) and "jobs" in resources


def job_settings_of(data: Any, path: Path | None = None) -> dict:
    """The JobSettings dict in a document: itself, or ``settings`` of a jobs/get dump."""
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}, not a map"
        raise JobDefinitionError([Problem("", f"the file is {what}",
                                          "write the job's settings (name:, tasks: ...) at the top level")],
                                 source=path)
    if isinstance(data.get("settings"), dict) and "tasks" not in data:
        return data["settings"]  # jobs/get: {"job_id": ..., "settings": {...}}
    return data


def parse_job_settings(data: dict | JobSettings, *, base_dir: Path,
                       source: str | os.PathLike | None = None,
                       destinations: Collection[str] | None = None) -> JobSettings:
    """Validate ``data`` and build the model, with task file paths made absolute.

    Relative paths are taken relative to ``base_dir``; webhook notifications must name one of
    ``destinations`` when given (a workspace's); raises JobDefinitionError on any problem.
    """
    if isinstance(data, JobSettings):
        data = data.to_dict()
    problems = validate_job_settings(data, base_dir=base_dir, destinations=destinations)
    if problems:
        raise JobDefinitionError(problems, source=source)
    for note in job_notes(data) + notification_notes(data):
        warnings.warn(f"nbjobs: {note}", UserWarning, stacklevel=2)
    return JobSettings.model_validate(resolve_job_paths(data, Path(base_dir)))


# -- paths ---------------------------------------------------------------------------------------

def resolve_job_paths(data: dict, base_dir: Path) -> dict:
    """A copy of ``data`` whose task file paths are absolute (unless the job uses git_source).

    A path is relative to ``base_dir``, or to its own directory when it is a ``Located``.
    """
    data = dict(data)
    keep = data.get("git_source") is not None

    def fix(value: Any, what: str, holder: dict, label: str) -> Any:
        return _resolve(value, base_dir, what, keep or _is_git(holder))

    if isinstance(data.get("tasks"), list):
        data["tasks"] = [map_task_paths(t, fix) for t in data["tasks"]]
    return strip_located(data)


def _is_git(payload: dict) -> bool:
    source = as_text(payload.get("source"))
    return isinstance(source, str) and source.upper() == "GIT"


def _resolve(value: Any, base_dir: Path, kind: str, keep: bool) -> Any:
    if isinstance(value, Located):
        value, base_dir = value.value, value.base_dir
    if keep or not isinstance(value, str) or not value or is_remote_path(value):
        return value
    found = find_source_file(value, base_dir, kind)
    if found is not None:
        return str(found)
    return os.path.abspath(os.path.join(base_dir, os.path.expanduser(value)))


def strip_located(obj: Any) -> Any:
    """``obj`` with every ``Located`` replaced by its plain value (a deep copy of containers)."""
    if isinstance(obj, Located):
        return strip_located(obj.value)
    if isinstance(obj, dict):
        return {k: strip_located(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [strip_located(v) for v in obj]
    return obj
