"""jobs/create, jobs/get, jobs/list, jobs/update, jobs/reset, jobs/delete (Jobs API 2.2) over the store."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import api_json
from ..errors import InvalidParameterValue, ResourceDoesNotExist
from ..schedule.slots import trigger_state
from ..spec import JobSettings, parse_job_settings
from ..store import Store


class JobsMixin:
    """The job verbs of `Workspace`."""

    store: Store
    user: str

    def _settings(self, settings: JobSettings | Mapping[str, Any], base_dir: Path | None) -> JobSettings:
        data = settings.to_dict() if isinstance(settings, JobSettings) else dict(settings)
        return parse_job_settings(data, base_dir=base_dir or Path.cwd(), destinations=self._destination_ids(data))

    def _destination_ids(self, data: Mapping[str, Any]) -> list[str] | None:
        """The workspace's notification destination ids, when the job names webhooks (None: not checked,
        the workspace config cannot be read; each delivery then records why)."""
        if not any(isinstance(level, Mapping) and level.get("webhook_notifications")
                   for level in [data, *(data.get("tasks") or [])]):
            return None
        from ..notify.config import ConfigError, load_notifications_config
        try:
            return list(load_notifications_config(self.store.home).destinations)
        except ConfigError:
            return None

    def _job_row(self, job_id: int) -> dict:
        row = self.store.get_job(int(job_id))
        if row is None:
            raise ResourceDoesNotExist(f"Job {job_id} does not exist.")
        return row

    def create_job(self, settings: JobSettings | Mapping[str, Any], *, base_dir: Path | None = None,
                   source_path: str | None = None) -> int:
        """jobs/create: validate (raises JobDefinitionError listing every problem) and store."""
        model = self._settings(settings, base_dir)
        return self.store.create_job(model.to_dict(), source_path=source_path, creator=self.user)

    def save_job(self, settings: JobSettings | Mapping[str, Any], *, base_dir: Path | None = None,
                 source_path: str | None = None) -> tuple[int, bool]:
        """Create the job, or update the one with the same name. Returns (job_id, created)."""
        model = self._settings(settings, base_dir)
        existing = self.store.list_jobs(name=model.name or "Untitled")
        if existing:
            job_id = existing[0]["job_id"]
            self.store.update_job(job_id, model.to_dict(), source_path=source_path)
            return job_id, False
        return self.store.create_job(model.to_dict(), source_path=source_path, creator=self.user), True

    def get_job(self, job_id: int) -> dict:
        row = self._job_row(job_id)
        out = api_json.job_json(row)
        state = trigger_state(row["settings"], row["created_time"], self.store.job_slots(row["job_id"], 5),
                              datetime.now(timezone.utc))
        if state is not None:  # a schedule or trigger: its pause status, next fire times, recent slots
            out["trigger_state"] = state
        return out

    def list_jobs(self, *, name: str | None = None, tags: Mapping[str, str | None] | None = None,
                  expand_tasks: bool = False) -> list[dict]:
        """Newest first. `tags`: {key: value} must match; {key: None} only needs the key (a label)."""
        rows = self.store.list_jobs(name=name)
        if tags:
            rows = [r for r in rows if all(k in r["tags"] and (v is None or r["tags"][k] == v)
                                           for k, v in tags.items())]
        return [api_json.job_json(r, expand_tasks=expand_tasks) for r in rows]

    def update_job(self, job_id: int, new_settings: Mapping[str, Any] | None = None,
                   fields_to_remove: Iterable[str] | None = None, *, base_dir: Path | None = None) -> None:
        """jobs/update: top-level fields of `new_settings` replace the job's; arrays (tasks, job_clusters,
        environments, parameters) are merged by key; `fields_to_remove` drops top-level fields or single
        entries (`"tasks/<task_key>"`, `"job_clusters/<key>"`). The result is validated as a whole."""
        row = self._job_row(job_id)
        if new_settings is not None and not isinstance(new_settings, Mapping):
            raise InvalidParameterValue(f"new_settings: expected an object of job settings, "
                                        f"got {type(new_settings).__name__}")
        merged = update_settings(row["settings"], dict(new_settings or {}), fields_to_remove)
        model = self._settings(merged, base_dir)
        self.store.update_job(row["job_id"], model.to_dict())

    def reset_job(self, job_id: int, new_settings: JobSettings | Mapping[str, Any], *,
                  base_dir: Path | None = None) -> None:
        """jobs/reset: replace all of the job's settings (validated like jobs/create)."""
        row = self._job_row(job_id)
        if not isinstance(new_settings, (Mapping, JobSettings)):
            raise InvalidParameterValue(f"new_settings: expected an object of job settings, "
                                        f"got {type(new_settings).__name__}")
        model = self._settings(new_settings, base_dir)
        self.store.update_job(row["job_id"], model.to_dict())

    def delete_job(self, job_id: int) -> None:
        self._job_row(job_id)
        self.store.delete_job(int(job_id))


_KEYED_ARRAYS = {"tasks": "task_key", "job_clusters": "job_cluster_key", "environments": "environment_key",
                 "parameters": "name"}


def update_settings(current: Mapping[str, Any], new_settings: Mapping[str, Any] | None,
                    fields_to_remove: Iterable[str] | None) -> dict:
    """jobs/update's merge: removals first, then top-level replacement with arrays merged by key."""
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in current.items()}
    if fields_to_remove is not None and (isinstance(fields_to_remove, (str, bytes))
                                         or not isinstance(fields_to_remove, Iterable)):
        raise InvalidParameterValue("fields_to_remove: expected a list of field names, e.g. "
                                    '["tags", "tasks/clean"]')
    for item in fields_to_remove or ():
        if not isinstance(item, str) or not item:
            raise InvalidParameterValue(f"fields_to_remove: expected field names, got {item!r}")
        field, sep, key = item.partition("/")
        if not sep:
            out.pop(field, None)
            continue
        key_field = _KEYED_ARRAYS.get(field)
        if key_field is None or not key:
            raise InvalidParameterValue(
                f"fields_to_remove: cannot remove {item!r}; nested fields can be removed only as "
                f"{', '.join(f'{a}/<{k}>' for a, k in _KEYED_ARRAYS.items())}")
        entries = out.get(field) or []
        kept = [e for e in entries if not (isinstance(e, Mapping) and e.get(key_field) == key)]
        if len(kept) == len(entries):
            raise InvalidParameterValue(f"fields_to_remove: {item!r}: the job has no {field} entry "
                                        f"with {key_field} '{key}'")
        out[field] = kept
    for field, value in (new_settings or {}).items():
        key_field = _KEYED_ARRAYS.get(field)
        if key_field is None or not isinstance(value, list) or not isinstance(out.get(field), list):
            out[field] = value
            continue
        merged = list(out[field])
        index = {e.get(key_field): i for i, e in enumerate(merged) if isinstance(e, Mapping)}
        for entry in value:
            key = entry.get(key_field) if isinstance(entry, Mapping) else None
            if key is not None and key in index:
                merged[index[key]] = entry
            else:
                index[key] = len(merged)
                merged.append(entry)
        out[field] = merged
    return out




def confine_paths(settings: JobSettings | Mapping[str, Any], root: str | os.PathLike) -> dict:
    """Settings sent over the API: task file paths are taken relative to `root` and may not leave it.

    A relative path is joined to `root`; an absolute path inside `root` is kept; any other absolute path
    (a Databricks workspace path such as `/Users/me/etl`) is read as relative to `root`. A path that
    still leads outside `root` (`../x`) is a JobDefinitionError naming the field."""
    from ..spec import JobDefinitionError, Problem
    from ..spec.files import is_remote_path
    from ..tasks.paths import map_task_paths

    data = settings.to_dict() if isinstance(settings, JobSettings) else dict(settings)
    base = os.path.normpath(os.path.abspath(os.fspath(root)))
    if data.get("git_source") is not None or not isinstance(data.get("tasks"), list):
        return data
    problems: list = []

    def fix(value: Any, _what: str, holder: dict, label: str) -> Any:
        if (not isinstance(value, str) or not value or is_remote_path(value)
                or str(holder.get("source", "")).upper() == "GIT"):
            return value
        path = os.path.expanduser(value)
        if os.path.isabs(path):
            full = os.path.normpath(path)
            if not _inside(full, base):
                full = os.path.normpath(os.path.join(base, path.lstrip("/\\")))
        else:
            full = os.path.normpath(os.path.join(base, path))
        if not _inside(full, base):
            problems.append(Problem(label, f"'{value}' is outside the workspace root {base}",
                                    "give a path inside the workspace root (relative to it)"))
            return value
        return full

    data["tasks"] = [map_task_paths(t, fix, f"tasks[{i}]") for i, t in enumerate(data["tasks"])]
    if problems:
        raise JobDefinitionError(problems)
    return data


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


