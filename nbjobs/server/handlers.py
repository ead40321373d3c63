"""The Jobs API 2.1/2.2 as tornado handlers, thin over `Workspace`.

Written once: `JobsApiMixin` holds the endpoints; `nbjobs serve` mixes it into a plain
`RequestHandler` with bearer-token auth (`app.py`), the Jupyter server extension into Jupyter's
`APIHandler` with Jupyter's own auth (`extension.py`). Service calls run on a thread pool, so the
server's event loop never waits for SQLite or for HTML rendering; runs execute on the workspace's
background engine, in the server process.
"""
from __future__ import annotations

import base64
import binascii
import concurrent.futures
import json
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tornado.ioloop import IOLoop

from ..cli_args import parse_tags
from ..errors import JobDefinitionError, NbjobsError, ResourceDoesNotExist
from ..service import Workspace, confine_paths

log = logging.getLogger("nbjobs.server")

API_ROUTE = r"/api/(2\.[012])/jobs/(.*)"
WELL_KNOWN_ROUTE = r"/.well-known/databricks-config"

_LEGACY_OVERRIDES = ("notebook_params", "python_params", "python_named_params", "jar_params", "sql_params",
                     "spark_submit_params", "dbt_commands", "pipeline_params")
_RUN_TYPES = ("JOB_RUN", "WORKFLOW_RUN", "SUBMIT_RUN")


@dataclass
class ServerState:
    """What every handler shares: the workspace (its store and run engine) and the job-file root."""

    workspace: Workspace
    root: Path
    token: str | None = None  # `nbjobs serve` only; under Jupyter, Jupyter's auth applies
    auth_hint: str = "the token `nbjobs serve` printed when it first started"
    executor: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(max_workers=8,
                                                                      thread_name_prefix="nbjobs-api"))

    def close(self) -> None:
        self.executor.shutdown(wait=False)


class ApiError(Exception):
    """An error answered as `{"error_code", "message"}` with an HTTP status."""

    def __init__(self, status: int, error_code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.error_code, self.message, self.extra = status, error_code, message, extra

    def body(self) -> dict:
        return {"error_code": self.error_code, "message": self.message, **self.extra}


def error_for(exc: BaseException) -> ApiError:
    """The Jobs API answer to a service exception (never 'Unexpected error': the SDK retries that)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, JobDefinitionError):
        problems = [{"path": p.path, "message": p.message, "fix": p.fix} for p in exc.problems]
        return ApiError(400, "INVALID_PARAMETER_VALUE", str(exc), problems=problems)
    if isinstance(exc, ResourceDoesNotExist):
        # The Jobs API's own answer ("Job 7 does not exist."): the SDK raises ResourceDoesNotExist for
        # jobs/get, runs/get and runs/get-output, InvalidParameterValue elsewhere, as against Databricks.
        return ApiError(400, "INVALID_PARAMETER_VALUE", str(exc))
    if isinstance(exc, NbjobsError):
        return ApiError(400, exc.error_code, str(exc))
    summary = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return ApiError(500, "INTERNAL_ERROR", f"nbjobs server error ({summary}); see the server log for the trace")


# -- request parameters -------------------------------------------------------------------------------

class ApiRequest:
    """Typed access to a request's parameters: the JSON body (POST) or the query string (GET)."""

    def __init__(self, method: str, version: str, endpoint: str, query: dict[str, list[str]], body: bytes):
        self.method, self.version, self.endpoint = method, version, endpoint
        self.query = query
        self.body: dict[str, Any] = {}
        if method == "POST" and body.strip():
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(400, "MALFORMED_REQUEST",
                               f"Invalid JSON given in the body of the request - {exc}") from None
            if not isinstance(data, dict):
                raise ApiError(400, "MALFORMED_REQUEST",
                               "Invalid JSON given in the body of the request - expected a map")
            self.body = data

    def has(self, name: str) -> bool:
        return self.raw(name) is not None

    def raw(self, name: str) -> Any:
        if name in self.body:
            return self.body[name]
        values = self.query.get(name)
        return values[-1] if values else None

    def _missing(self, name: str) -> ApiError:
        return ApiError(400, "INVALID_PARAMETER_VALUE", f"Missing required field: {name}")

    def _bad(self, name: str, expected: str, value: Any) -> ApiError:
        return ApiError(400, "INVALID_PARAMETER_VALUE", f"{name}: expected {expected}, got {json.dumps(value)}")

    def int(self, name: str, *, required: bool = False, default: int | None = None) -> int | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise self._missing(name)
            return default
        if isinstance(value, bool):
            raise self._bad(name, "an integer", value)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise self._bad(name, "an integer", value)

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self._bad(name, "true or false", value)

    def str(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise self._missing(name)
            return None
        if not isinstance(value, str):
            raise self._bad(name, "a string", value)
        return value

    def str_list(self, name: str) -> list[str] | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(name, "a list of strings", value)
        return value

    def object(self, name: str, *, required: bool = False) -> dict | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise self._missing(name)
            return None
        if not isinstance(value, dict):
            raise self._bad(name, "an object", value)
        return value

    def str_map(self, name: str) -> dict[str, str] | None:
        value = self.object(name)
        if value is None:
            return None
        out = {}
        for key, item in value.items():
            if isinstance(item, (dict, list)) or item is None:
                raise self._bad(f"{name}.{key}", "a string", item)
            out[str(key)] = item if isinstance(item, str) else json.dumps(item)
        return out

    def reject_legacy(self) -> None:
        given = [n for n in _LEGACY_OVERRIDES if self.raw(n)]
        if given:
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           f"{given[0]}: legacy per-task overrides are not supported by nbjobs; declare job "
                           "parameters in the job (parameters: [{name, default}]) and pass job_parameters")


def encode_page_token(*values: int) -> str:
    return base64.urlsafe_b64encode(":".join(str(v) for v in values).encode()).decode().rstrip("=")


def decode_page_token(token: str | None, count: int) -> tuple[int, ...] | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        values = tuple(int(v) for v in text.split(":"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        values = ()
    if len(values) != count:
        raise ApiError(400, "INVALID_PARAMETER_VALUE",
                       f"page_token: {token!r} is not a page token from this list; pass the next_page_token "
                       "of the previous page, or leave it out for the first page")
    return values


# -- the endpoints ------------------------------------------------------------------------------------

class JobsApiMixin:
    """The endpoints. A concrete handler also derives from tornado's RequestHandler (or Jupyter's)."""

    ENDPOINTS: dict[tuple[str, str], str] = {
        ("POST", "create"): "create", ("GET", "get"): "get", ("GET", "list"): "list",
        ("POST", "update"): "update", ("POST", "reset"): "reset", ("POST", "delete"): "delete",
        ("POST", "run-now"): "run_now", ("POST", "runs/submit"): "submit", ("GET", "runs/get"): "get_run",
        ("GET", "runs/get-output"): "get_output", ("GET", "runs/list"): "list_runs",
        ("POST", "runs/cancel"): "cancel", ("POST", "runs/cancel-all"): "cancel_all",
        ("POST", "runs/repair"): "repair", ("POST", "runs/delete"): "delete_run",
        ("GET", "runs/export"): "export",
        ("GET", "runs/notifications"): "run_notifications",  # nbjobs: a run's notification deliveries
    }

    state: ServerState

    def initialize(self, state: ServerState) -> None:  # tornado passes the route's kwargs
        self.state = state

    @property
    def ws(self) -> Workspace:
        return self.state.workspace

    # -- plumbing -------------------------------------------------------------------------------
    async def serve_api(self, method: str, version: str, endpoint: str) -> None:
        endpoint = endpoint.strip("/")
        try:
            name = self.ENDPOINTS.get((method, endpoint))
            if name is None:
                methods = sorted(m for (m, e) in self.ENDPOINTS if e == endpoint)
                if methods:
                    raise ApiError(405, "BAD_REQUEST", f"{method} /api/{version}/jobs/{endpoint} is not "
                                   f"supported; use {' or '.join(methods)}")
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} /api/{version}/jobs/"
                               f"{endpoint}'")
            request = ApiRequest(method, version, endpoint, _query_text(self.request),  # type: ignore[attr-defined]
                                 self.request.body)  # type: ignore[attr-defined]
            operation: Callable[[ApiRequest], Any] = getattr(self, f"op_{name}")
            result = await IOLoop.current().run_in_executor(self.state.executor, operation, request)
        except Exception as exc:
            error = error_for(exc)
            if error.status >= 500:
                log.error("%s /api/%s/jobs/%s failed:\n%s", method, version, endpoint, traceback.format_exc())
            self.send_api_error(error)
            return
        self.send_json(200, result)

    def send_json(self, status: int, data: Any) -> None:
        self.set_status(status)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(json.dumps(data))  # type: ignore[attr-defined]

    def send_api_error(self, error: ApiError) -> None:
        if error.status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="nbjobs"')  # type: ignore[attr-defined]
        self.send_json(error.status, error.body())

    def unauthenticated(self) -> ApiError:
        return ApiError(401, "UNAUTHENTICATED",
                        "Missing or wrong token: send the header 'Authorization: Bearer <token>' with "
                        f"{self.state.auth_hint}.")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors raised outside `serve_api` (auth, an unsupported HTTP method) in the Jobs API form."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if status_code == 403 and not getattr(self, "current_user", None):
            self.set_status(401)  # type: ignore[attr-defined]
            self.send_api_error(self.unauthenticated())
        elif status_code == 405:
            self.send_api_error(ApiError(405, "BAD_REQUEST", f"HTTP {self.request.method} is not supported "  # type: ignore
                                         "by the Jobs API; use GET or POST"))
        elif status_code == 404:
            self.send_api_error(ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{self.request.method} "  # type: ignore
                                         f"{self.request.path}'"))  # type: ignore[attr-defined]
        elif status_code < 500:
            reason = getattr(exc, "log_message", None) or getattr(self, "_reason", "") or "bad request"
            code = "PERMISSION_DENIED" if status_code == 403 else "BAD_REQUEST"
            self.send_api_error(ApiError(status_code, code, str(reason)))
        else:
            self.send_api_error(error_for(exc) if isinstance(exc, Exception) else
                                ApiError(status_code, "INTERNAL_ERROR", "nbjobs server error"))

    def confined(self, settings: dict) -> dict:
        """Settings sent over the API: task paths relative to the server's root, never outside it."""
        return confine_paths(settings, self.state.root)

    # -- jobs -----------------------------------------------------------------------------------
    def op_create(self, r: ApiRequest) -> dict:
        body = dict(r.body)
        body.pop("access_control_list", None)
        if r.version == "2.2" and "queue" not in body:
            body["queue"] = {"enabled": True}  # Jobs API 2.2 creates jobs with queueing on
        return {"job_id": self.ws.create_job(self.confined(body), base_dir=self.state.root)}

    def op_get(self, r: ApiRequest) -> dict:
        return self.ws.get_job(r.int("job_id", required=True))

    def op_list(self, r: ApiRequest) -> dict:
        limit = r.int("limit", default=20) or 20
        offset = r.int("offset", default=0) or 0
        if not 1 <= limit <= 100:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"limit: must be between 1 and 100, got {limit}")
        if offset < 0:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"offset: must be 0 or more, got {offset}")
        before = decode_page_token(r.str("page_token"), 1)
        tags = parse_tags(r.query.get("tag"))  # nbjobs extension: tag=KEY or tag=KEY=VALUE, repeatable
        jobs = self.ws.list_jobs(name=r.str("name"), tags=tags, expand_tasks=r.bool("expand_tasks"))
        if before is not None:
            jobs = [j for j in jobs if j["job_id"] < before[0]]
        jobs = jobs[offset:]
        page = jobs[:limit]
        out: dict[str, Any] = {"has_more": len(jobs) > limit}
        if page:
            out["jobs"] = page
        if len(jobs) > limit:
            out["next_page_token"] = encode_page_token(page[-1]["job_id"])
        return out

    def op_update(self, r: ApiRequest) -> dict:
        new_settings = r.object("new_settings")
        self.ws.update_job(r.int("job_id", required=True), self.confined(new_settings or {}),
                           r.str_list("fields_to_remove"), base_dir=self.state.root)
        return {}

    def op_reset(self, r: ApiRequest) -> dict:
        self.ws.reset_job(r.int("job_id", required=True), self.confined(r.object("new_settings", required=True)),
                          base_dir=self.state.root)
        return {}

    def op_delete(self, r: ApiRequest) -> dict:
        self.ws.delete_job(r.int("job_id", required=True))
        return {}

    # -- runs -----------------------------------------------------------------------------------
    def op_run_now(self, r: ApiRequest) -> dict:
        job_id = r.int("job_id", required=True)
        r.reject_legacy()
        options: dict[str, Any] = {}
        if r.has("idempotency_token"):
            options["idempotency_token"] = r.str("idempotency_token")
        if r.has("only"):
            options["only"] = r.str_list("only")
        if r.has("queue"):
            options["queue"] = r.object("queue")
        return self.ws.run_now(job_id, r.str_map("job_parameters"), wait=False, **options)

    def op_submit(self, r: ApiRequest) -> dict:
        return self.ws.submit_run(self.confined(r.body), wait=False, base_dir=self.state.root)

    def op_get_run(self, r: ApiRequest) -> dict:
        return self.ws.get_run(r.int("run_id", required=True), include_history=r.bool("include_history", True))

    def op_run_notifications(self, r: ApiRequest) -> dict:
        return {"notifications": self.ws.run_notifications(r.int("run_id", required=True))}

    def op_get_output(self, r: ApiRequest) -> dict:
        return self.ws.get_run_output(r.int("run_id", required=True))

    def op_list_runs(self, r: ApiRequest) -> dict:
        limit = r.int("limit", default=20)
        if not 0 <= limit <= 25:
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           f"limit: must be between 0 and 25 (0 means 25), got {limit}")
        limit = limit or 25
        offset = r.int("offset", default=0) or 0
        if offset < 0:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"offset: must be 0 or more, got {offset}")
        run_type = r.str("run_type")
        if run_type is not None and run_type not in _RUN_TYPES:
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           f"run_type: expected one of {', '.join(_RUN_TYPES)}, got {run_type!r}")
        before = decode_page_token(r.str("page_token"), 2)
        runs = self.ws.list_runs_before(
            tuple(before) if before else None, job_id=r.int("job_id"), active_only=r.bool("active_only"), completed_only=r.bool("completed_only"),
            limit=limit + 1, offset=offset, expand_tasks=r.bool("expand_tasks"), run_type=run_type,
            start_time_from=r.int("start_time_from"), start_time_to=r.int("start_time_to"))
        page = runs[:limit]
        out: dict[str, Any] = {"has_more": len(runs) > limit}
        if page:
            out["runs"] = page
        if len(runs) > limit:
            out["next_page_token"] = encode_page_token(page[-1]["start_time"], page[-1]["run_id"])
        return out

    def op_cancel(self, r: ApiRequest) -> dict:
        self.ws.cancel_run(r.int("run_id", required=True))
        return {}

    def op_cancel_all(self, r: ApiRequest) -> dict:
        job_id, all_queued = r.int("job_id"), r.bool("all_queued_runs")
        if job_id is None and not all_queued:
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           "runs/cancel-all needs job_id (cancel that job's active runs) or all_queued_runs=true")
        self.ws.cancel_all_runs(job_id=job_id, all_queued_runs=all_queued)
        return {}

    def op_repair(self, r: ApiRequest) -> dict:
        run_id = r.int("run_id", required=True)
        r.reject_legacy()
        result = self.ws.repair_run(
            run_id, rerun_tasks=r.str_list("rerun_tasks"),
            rerun_all_failed_tasks=r.bool("rerun_all_failed_tasks"),
            rerun_dependent_tasks=r.bool("rerun_dependent_tasks"), latest_repair_id=r.int("latest_repair_id"),
            job_parameters=r.str_map("job_parameters"), wait=False)
        return {"repair_id": result["repair_id"]}

    def op_delete_run(self, r: ApiRequest) -> dict:
        self.ws.delete_run(r.int("run_id", required=True))
        return {}

    def op_export(self, r: ApiRequest) -> dict:
        return self.ws.export_run(r.int("run_id", required=True), r.str("views_to_export"))


class WellKnownMixin:
    """`GET /.well-known/databricks-config` → `200 {}` without auth (the SDK asks it at client creation)."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish("{}")  # type: ignore[attr-defined]


# -- logging without secrets --------------------------------------------------------------------------

def redact(uri: str) -> str:
    """A request URI as it may be logged: any `token=` query value replaced."""
    parts = urlsplit(uri)
    if "token" not in parts.query.lower():
        return uri
    query = [(k, "[secret]" if k.lower() in ("token", "access_token") else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def log_request(handler: Any) -> None:
    """tornado `log_function`: method, path (secrets redacted), status, time — never headers."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else (logging.WARNING if status < 500 else logging.ERROR)
    log.log(level, "%d %s %s %.1fms", status, handler.request.method, redact(handler.request.uri),
            1000.0 * handler.request.request_time())


def _query_text(request: Any) -> dict[str, list[str]]:
    return {k: [v.decode("utf-8", "replace") for v in values] for k, values in request.query_arguments.items()}
