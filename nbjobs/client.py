"""`nbjobs.connect(url, token)`: the HTTP client of an nbjobs server (`nbjobs serve`, or Jupyter with nbjobs).

`Client` implements `nbjobs.contract.JobsClient` as `nbjobs.Workspace` does: the same verbs, signatures,
return shapes (the Jobs API JSON) and exceptions (`nbjobs.errors`); runs execute in the server, and
their events are derived from runs/get (`nbjobs.follow`). Importing it loads neither the store
(SQLAlchemy) nor the runner.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

import requests

from .contract import REPAIR_RERUN_DEPENDENT_TASKS, default_home
from .errors import InvalidParameterValue, InvalidState, NbjobsError, ResourceDoesNotExist
from .events import EventHandler
from .follow import poll_run

HOST_ENV = "NBJOBS_HOST"
TOKEN_ENV = "NBJOBS_TOKEN"
API = "/api/2.2/jobs"
_NOT_FOUND = re.compile(r"^(Job|Run) \S+ does not exist\.?$")

log = logging.getLogger(__name__)


class ServerError(NbjobsError):
    """An error answered by the server (or the server could not be reached)."""

    def __init__(self, message: str, *, error_code: str = "INTERNAL_ERROR", status: int | None = None):
        super().__init__(message)
        self.error_code = error_code
        self.status = status


class Unauthenticated(ServerError):
    """401: no token, or not the server's token."""


class ServerUnavailable(ServerError):
    """Nothing answered at the server's address."""


def connect(url: str | None = None, token: str | None = None, *, timeout: float = 60,
            home: str | os.PathLike | None = None) -> Client:
    """A client of the nbjobs server at `url` (default `$NBJOBS_HOST`).

    The token defaults to `$NBJOBS_TOKEN`, else the one `nbjobs serve` saved in the workspace folder
    (`home`, default `$NBJOBS_HOME` or `./.nbjobs`), for a server on this machine.
    """
    url = url or os.environ.get(HOST_ENV)
    if not url:
        raise InvalidParameterValue(f"connect: give the server's URL (e.g. http://127.0.0.1:8765) or set {HOST_ENV}")
    if token is None:
        token = os.environ.get(TOKEN_ENV) or _saved_token(home)
    return Client(url, token, timeout=timeout)


def _saved_token(home: str | os.PathLike | None) -> str | None:
    from .server.token import read_token
    return read_token(Path(home) if home is not None else default_home())


class Client:
    """The Jobs API of a remote nbjobs server (see `connect`); a `nbjobs.contract.JobsClient`."""

    poll_interval = 0.25  # seconds between two runs/get while following a run

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60):
        if "://" not in url:
            raise InvalidParameterValue(f"server URL {url!r} needs a scheme, e.g. http://{url}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "nbjobs-client"
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"<nbjobs.Client {self.url}>"

    @property
    def location(self) -> str:
        return self.url

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- HTTP ---------------------------------------------------------------------------------------
    def _call(self, method: str, endpoint: str, *, params: Mapping[str, Any] | None = None,
              body: Mapping[str, Any] | None = None) -> dict:
        query = None
        if params:
            query = [(k, _query_value(v)) for k, v in params.items() if v is not None and not isinstance(v, list)]
            query += [(k, _query_value(item)) for k, v in params.items() if isinstance(v, list) for item in v]
        url = f"{self.url}{API}/{endpoint}"
        try:
            response = self._session.request(method, url, params=query, json=body if method == "POST" else None,
                                             timeout=self.timeout)
        except requests.ConnectionError as exc:
            raise ServerUnavailable(f"cannot reach the nbjobs server at {self.url} ({type(exc).__name__}); "
                                    "is `nbjobs serve` (or Jupyter with nbjobs) running there?") from None
        except requests.Timeout:
            raise ServerUnavailable(f"the nbjobs server at {self.url} did not answer within {self.timeout:g}s") \
                from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 200 and isinstance(data, dict):
            return data
        raise _error(response.status_code, data, response.text, self.url)

    # -- jobs ---------------------------------------------------------------------------------------
    def create_job(self, settings: Any, *, base_dir: Path | None = None, source_path: str | None = None) -> int:
        """jobs/create; relative task paths are resolved against `base_dir` here, the server checks them."""
        return int(self._call("POST", "create", body=_settings_body(settings, base_dir))["job_id"])

    def save_job(self, settings: Any, *, base_dir: Path | None = None,
                 source_path: str | None = None) -> tuple[int, bool]:
        """Create the job, or reset the one with the same name. Returns (job_id, created)."""
        body = _settings_body(settings, base_dir)
        existing = self.list_jobs(name=body.get("name") or "Untitled")
        if existing:
            job_id = existing[0]["job_id"]
            self.reset_job(job_id, body)
            return job_id, False
        return int(self._call("POST", "create", body=body)["job_id"]), True

    def get_job(self, job_id: int) -> dict:
        return self._call("GET", "get", params={"job_id": int(job_id)})

    def list_jobs(self, *, name: str | None = None, tags: Mapping[str, str | None] | None = None,
                  expand_tasks: bool = False) -> list[dict]:
        tag_args = [k if v is None else f"{k}={v}" for k, v in (tags or {}).items()]
        params: dict[str, Any] = {"name": name, "expand_tasks": expand_tasks or None, "limit": 100,
                                  "tag": tag_args or None}
        return self._pages("list", params, "jobs")

    def update_job(self, job_id: int, new_settings: Mapping[str, Any] | None = None,
                   fields_to_remove: Iterable[str] | None = None, *, base_dir: Path | None = None) -> None:
        body: dict[str, Any] = {"job_id": int(job_id)}
        if new_settings is not None:
            body["new_settings"] = _settings_body(new_settings, base_dir)
        if fields_to_remove is not None:
            body["fields_to_remove"] = list(fields_to_remove)
        self._call("POST", "update", body=body)

    def reset_job(self, job_id: int, new_settings: Any, *, base_dir: Path | None = None) -> None:
        self._call("POST", "reset", body={"job_id": int(job_id),
                                          "new_settings": _settings_body(new_settings, base_dir)})

    def delete_job(self, job_id: int) -> None:
        self._call("POST", "delete", body={"job_id": int(job_id)})

    # -- runs ---------------------------------------------------------------------------------------
    def run_now(self, job_id: int, job_parameters: Mapping[str, str] | None = None, *, wait: bool = True,
                idempotency_token: str | None = None, only: Iterable[str] | str | None = None,
                queue: Mapping[str, Any] | bool | None = None, on_event: EventHandler | None = None,
                concurrency: int | None = None) -> dict:
        """jobs/run-now. wait=True: the ended run's runs/get JSON; wait=False: `{"run_id", "number_in_job"}`.
        (`concurrency` is the server's to decide.)"""
        body: dict[str, Any] = {"job_id": int(job_id)}
        if job_parameters:
            body["job_parameters"] = {str(k): str(v) for k, v in job_parameters.items()}
        if isinstance(queue, bool):
            queue = {"enabled": queue}
        only = only.split(",") if isinstance(only, str) else (list(only) if only is not None else None)
        for key, value in (("idempotency_token", idempotency_token), ("only", only), ("queue", queue)):
            if value is not None:
                body[key] = value
        started = self._call("POST", "run-now", body=body)
        return self._then(started["run_id"], started, wait, on_event)

    def submit_run(self, body: Mapping[str, Any], *, wait: bool = False, base_dir: Path | None = None,
                   on_event: EventHandler | None = None) -> dict:
        """runs/submit. wait=False: `{"run_id"}`; wait=True: the ended run's runs/get JSON."""
        payload = dict(body)
        if base_dir is not None and isinstance(payload.get("tasks"), list):
            from .spec.load import resolve_job_paths
            payload = resolve_job_paths(payload, Path(base_dir))
        started = self._call("POST", "runs/submit", body=payload)
        return self._then(started["run_id"], started, wait, on_event)

    def get_run(self, run_id: int, *, include_history: bool = True) -> dict:
        return self._call("GET", "runs/get", params={"run_id": int(run_id), "include_history": include_history})

    def run_notifications(self, run_id: int) -> list[dict]:
        """The run's notification deliveries (an nbjobs endpoint, GET jobs/runs/notifications)."""
        return self._call("GET", "runs/notifications", params={"run_id": int(run_id)}).get("notifications", [])

    def get_run_output(self, run_id: int) -> dict:
        return self._call("GET", "runs/get-output", params={"run_id": int(run_id)})

    def list_runs(self, *, job_id: int | None = None, active_only: bool = False, completed_only: bool = False,
                  limit: int | None = None, offset: int = 0, expand_tasks: bool = False,
                  run_type: str | None = None, start_time_from: int | None = None,
                  start_time_to: int | None = None) -> list[dict]:
        """runs/list, newest first (all pages, or the first `limit` runs)."""
        params = {"job_id": job_id, "active_only": active_only or None, "completed_only": completed_only or None,
                  "offset": offset or None, "expand_tasks": expand_tasks or None, "run_type": run_type,
                  "start_time_from": start_time_from, "start_time_to": start_time_to, "limit": 25}
        return self._pages("runs/list", params, "runs", most=limit)

    def export_run(self, run_id: int, views_to_export: str | None = "CODE") -> dict:
        return self._call("GET", "runs/export", params={"run_id": int(run_id), "views_to_export": views_to_export})

    def repair_run(self, run_id: int, *, rerun_tasks: Iterable[str] | str | None = None,
                   rerun_all_failed_tasks: bool = False, rerun_dependent_tasks: bool = REPAIR_RERUN_DEPENDENT_TASKS,
                   latest_repair_id: int | None = None, job_parameters: Mapping[str, str] | None = None,
                   wait: bool = True, on_event: EventHandler | None = None,
                   concurrency: int | None = None) -> dict:
        """runs/repair. wait=False: `{"repair_id"}`; wait=True: the repaired run's runs/get JSON.
        (`concurrency` is the server's to decide.)"""
        body: dict[str, Any] = {"run_id": int(run_id)}
        if rerun_tasks is not None:
            body["rerun_tasks"] = rerun_tasks.split(",") if isinstance(rerun_tasks, str) else list(rerun_tasks)
        if rerun_all_failed_tasks:
            body["rerun_all_failed_tasks"] = True
        if rerun_dependent_tasks:
            body["rerun_dependent_tasks"] = True
        if latest_repair_id is not None:
            body["latest_repair_id"] = int(latest_repair_id)
        if job_parameters:
            body["job_parameters"] = {str(k): str(v) for k, v in job_parameters.items()}
        started = self._call("POST", "runs/repair", body=body)
        return self._then(int(run_id), started, wait, on_event)

    def cancel_run(self, run_id: int) -> None:
        self._call("POST", "runs/cancel", body={"run_id": int(run_id)})

    def cancel_all_runs(self, job_id: int | None = None, all_queued_runs: bool = False) -> None:
        body: dict[str, Any] = {}
        if job_id is not None:
            body["job_id"] = int(job_id)
        if all_queued_runs:
            body["all_queued_runs"] = True
        self._call("POST", "runs/cancel-all", body=body)

    def delete_run(self, run_id: int) -> None:
        self._call("POST", "runs/delete", body={"run_id": int(run_id)})

    def wait(self, run_id: int, timeout: float | None = None, *, on_event: EventHandler | None = None) -> dict:
        """Poll runs/get until the run ends (or `timeout` seconds pass: the run, still active);
        `on_event` gets its task_start, task_end and run_end meanwhile."""
        return poll_run(self.get_run, int(run_id), timeout=timeout, on_event=on_event, interval=self.poll_interval)

    def _then(self, run_id: int, started: dict, wait: bool, on_event: EventHandler | None) -> dict:
        """After starting a run: wait for it, or answer at once and follow it on a thread for `on_event`."""
        if wait:
            return self.wait(run_id, on_event=on_event)
        if on_event is not None:
            threading.Thread(target=self._follow, args=(run_id, on_event), name=f"nbjobs-follow-{run_id}",
                             daemon=True).start()
        return started

    def _follow(self, run_id: int, on_event: EventHandler) -> None:
        try:
            self.wait(run_id, on_event=on_event)
        except Exception as exc:  # the server went away or the client was closed: stop following
            log.debug("nbjobs: stopped following run %s: %s", run_id, exc)

    # -- paging -------------------------------------------------------------------------------------
    def _pages(self, endpoint: str, params: dict, key: str, most: int | None = None) -> list[dict]:
        out: list[dict] = []
        params = dict(params)
        while True:
            data = self._call("GET", endpoint, params=params)
            out.extend(data.get(key, []))
            token = data.get("next_page_token")
            if not token or (most is not None and len(out) >= most):
                return out[:most] if most is not None else out
            params["page_token"] = token
            params.pop("offset", None)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _settings_body(settings: Any, base_dir: Path | None) -> dict:
    from .spec import JobSettings
    from .spec.load import resolve_job_paths

    data = settings.to_dict() if isinstance(settings, JobSettings) else dict(settings)
    if base_dir is not None:
        data = resolve_job_paths(data, Path(base_dir))
    return data


def _error(status: int, data: Any, text: str, url: str) -> NbjobsError:
    """The exception `Workspace` would raise for the server's error answer."""
    if not isinstance(data, dict):
        snippet = " ".join(text.split())[:200]
        return ServerError(f"the server at {url} answered HTTP {status}: {snippet or 'no body'}", status=status)
    code = str(data.get("error_code") or "")
    message = str(data.get("message") or f"HTTP {status}")
    if data.get("problems"):
        from .errors import JobDefinitionError, Problem
        return JobDefinitionError([Problem(p.get("path", ""), p.get("message", ""), p.get("fix", ""))
                                   for p in data["problems"]])
    if status == 401 or code == "UNAUTHENTICATED":
        return Unauthenticated(f"{message} (server {url}; pass token=, or set {TOKEN_ENV})", error_code=code,
                               status=status)
    if code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and _NOT_FOUND.match(message)):
        return ResourceDoesNotExist(message)
    if code == "INVALID_STATE":
        return InvalidState(message)
    if code == "INVALID_PARAMETER_VALUE":
        return InvalidParameterValue(message)
    return ServerError(message, error_code=code or "INTERNAL_ERROR", status=status)
