"""Read a job from JSON or YAML (JobSettings, a jobs/get dump, a jobs/create body) or a bundle."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .models import JobSettings, as_text
from .validate import JobDefinitionError, Problem, find_source_file, is_remote_path, validate_job_settings

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


def load_job(path: str | os.PathLike, *, job: str | None = None, target: str | None = None,
             variables: dict[str, str] | None = None) -> LoadedJob:
    """Load and validate a job file; raises JobDefinitionError listing every problem.

    ``path``: a .json/.yml/.yaml JobSettings file, a jobs/get dump, a jobs/create body, a bundle
    ``databricks.yml`` (or a bundle folder, or a bundle resource file). ``job``, ``target`` and
    ``variables`` (``--var`` values) apply to bundles.
    """
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if path.is_dir():
        found = [path / n for n in BUNDLE_FILES if (path / n).is_file()]
        if not found:
            raise JobDefinitionError([Problem("", f"{path} is a folder without a databricks.yml",
                                              "give the path of a job file or of a bundle folder")])
        path = found[0]
    data = read_document(path)
    if is_bundle(path, data):
        from .bundle import load_bundle
        return load_bundle(path, data, job=job, target=target, variables=variables)
    settings = job_settings_of(data, path)
    if job is not None and as_text(settings.get("name")) != job:
        raise JobDefinitionError([Problem("name", f"{path.name} holds the job "
                                          f"'{settings.get('name', 'Untitled')}', not '{job}'",
                                          "leave out the job name, or give the right file")], source=path)
    return LoadedJob(parse_job_settings(settings, base_dir=path.parent, source=path), path)


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
                       source: str | os.PathLike | None = None) -> JobSettings:
    """Validate ``data`` and build the model, with task file paths made absolute.

    Relative paths are taken relative to ``base_dir``; raises JobDefinitionError on any problem.
    """
    if isinstance(data, JobSettings):
        data = data.to_dict()
    problems = validate_job_settings(data, base_dir=base_dir)
    if problems:
        raise JobDefinitionError(problems, source=source)
    return JobSettings.model_validate(resolve_job_paths(data, Path(base_dir)))


# -- paths ---------------------------------------------------------------------------------------

# (payload field, path field, kind) of the task fields that name a file
_PATH_FIELDS = (("notebook_task", "notebook_path", "notebook"), ("spark_python_task", "python_file", "script"),
                ("dbt_task", "project_directory", "dir"))


def resolve_job_paths(data: dict, base_dir: Path) -> dict:
    """A copy of ``data`` whose task file paths are absolute (unless the job uses git_source).

    A path is relative to ``base_dir``, or to its own directory when it is a ``Located``.
    """
    data = dict(data)
    keep = data.get("git_source") is not None
    if isinstance(data.get("tasks"), list):
        data["tasks"] = [_resolve_task(t, base_dir, keep) for t in data["tasks"]]
    return strip_located(data)


def _is_git(payload: dict) -> bool:
    source = as_text(payload.get("source"))
    return isinstance(source, str) and source.upper() == "GIT"


def _resolve_task(task: Any, base_dir: Path, keep: bool) -> Any:
    if not isinstance(task, dict):
        return task
    task = dict(task)
    for payload_key, field, kind in _PATH_FIELDS:
        payload = task.get(payload_key)
        if isinstance(payload, dict) and field in payload:
            task[payload_key] = {**payload, field: _resolve(payload[field], base_dir, kind,
                                                           keep or _is_git(payload))}
    sql = task.get("sql_task")
    if isinstance(sql, dict) and isinstance(sql.get("file"), dict) and "path" in sql["file"]:
        file = sql["file"]
        task["sql_task"] = {**sql, "file": {**file, "path": _resolve(file["path"], base_dir, "file",
                                                                      keep or _is_git(file))}}
    libraries = task.get("libraries")
    if isinstance(libraries, list):
        task["libraries"] = [{**lib, "requirements": _resolve(lib["requirements"], base_dir, "file", keep)}
                             if isinstance(lib, dict) and "requirements" in lib else lib for lib in libraries]
    loop = task.get("for_each_task")
    if isinstance(loop, dict) and isinstance(loop.get("task"), dict):
        task["for_each_task"] = {**loop, "task": _resolve_task(loop["task"], base_dir, keep)}
    return task


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
