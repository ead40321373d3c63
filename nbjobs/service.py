"""The one service layer every client (CLI, REST, magics, panel) goes through."""
from __future__ import annotations

import asyncio
import concurrent.futures
import getpass
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import api_json
from .refs import ReferenceResolutionError, RefContext, resolve
from .engine import RunEngine
from .runner import EventHandler, RunDriver
from .spec import JobSettings, parse_job_settings
from .store import ACTIVE_STATES, Store, utc_from_ms


class NbjobsError(Exception):
    """An error a client shows as is; `error_code` follows the Jobs API."""
    error_code = "INVALID_PARAMETER_VALUE"


class ResourceDoesNotExist(NbjobsError):
    error_code = "RESOURCE_DOES_NOT_EXIST"


class InvalidParameterValue(NbjobsError):
    error_code = "INVALID_PARAMETER_VALUE"


class InvalidState(NbjobsError):
    error_code = "INVALID_STATE"


def default_home() -> Path:
    return Path(os.environ.get("NBJOBS_HOME") or ".nbjobs")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "nbjobs"


class Workspace:
    """A workspace folder (`NBJOBS_HOME`, default `./.nbjobs`): its jobs, runs and outputs."""

    def __init__(self, home: str | os.PathLike | None = None, *, concurrency: int | None = None):
        self.store = Store(home if home is not None else default_home())
        self.home = self.store.home
        self.concurrency = concurrency
        self.user = _user()
        self._engine: RunEngine | None = None
        self.store.recover_orphans()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self.store.close()

    # -- jobs ---------------------------------------------------------------------------------
    def _settings(self, settings: JobSettings | Mapping[str, Any], base_dir: Path | None) -> JobSettings:
        if isinstance(settings, JobSettings):
            return parse_job_settings(settings.to_dict(), base_dir=base_dir or Path.cwd())
        return parse_job_settings(dict(settings), base_dir=base_dir or Path.cwd())

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

    def _job_row(self, job_id: int) -> dict:
        row = self.store.get_job(int(job_id))
        if row is None:
            raise ResourceDoesNotExist(f"Job {job_id} does not exist.")
        return row

    def job_settings(self, job_id: int) -> JobSettings:
        return JobSettings.model_validate(self._job_row(job_id)["settings"])

    def get_job(self, job_id: int) -> dict:
        return api_json.job_json(self._job_row(job_id))

    def list_jobs(self, *, name: str | None = None, tags: Mapping[str, str | None] | None = None,
                  expand_tasks: bool = False) -> list[dict]:
        """Newest first. `tags`: {key: value} must match; {key: None} only needs the key (a label)."""
        rows = self.store.list_jobs(name=name)
        if tags:
            rows = [r for r in rows if all(k in r["tags"] and (v is None or r["tags"][k] == v)
                                           for k, v in tags.items())]
        return [api_json.job_json(r, expand_tasks=expand_tasks) for r in rows]

    def delete_job(self, job_id: int) -> None:
        self._job_row(job_id)
        self.store.delete_job(int(job_id))

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, job_id: int, job_parameters: Mapping[str, str] | None = None, *,
                  trigger: str = "ONE_TIME", trigger_time: int | None = None) -> int:
        """Create a PENDING run of the job's current settings with resolved job parameters."""
        row = self._job_row(job_id)
        settings = JobSettings.model_validate(row["settings"])
        definitions = {p.name: p.default for p in settings.parameters or []}
        overrides = {str(k): str(v) for k, v in (job_parameters or {}).items()}
        unknown = sorted(set(overrides) - set(definitions))
        if unknown:
            defined = ", ".join(sorted(definitions)) or "none"
            raise InvalidParameterValue(
                f"job_parameters: job {job_id} ({row['name']}) has no parameter named "
                f"{', '.join(repr(u) for u in unknown)}. Defined parameters: {defined}. "
                "Add it under `parameters` in the job definition, or drop it from the run.")
        tasks = [(t.task_key, t.model_dump(exclude_none=True)) for t in settings.tasks]
        run_id, _ = self.store.create_run(
            job_id=row["job_id"], settings=settings.to_dict(), job_parameters=[], run_name=row["name"],
            tasks=tasks, trigger=trigger, trigger_time=trigger_time, creator=self.user)
        run = self.store.get_run(run_id)
        ctx = RefContext(job_id=row["job_id"], job_name=row["name"], run_id=run_id,
                         start_time=utc_from_ms(run["start_time"]), trigger_type=trigger.lower(),
                         trigger_time=utc_from_ms(run["trigger_time"]))
        resolved = []
        try:
            for name, default in definitions.items():
                value = resolve(overrides.get(name, default or ""), ctx)
                resolved.append({"name": name, "default": default, "value": value})
        except ReferenceResolutionError as exc:
            self.store.delete_run(run_id)
            raise InvalidParameterValue(f"job_parameters: {exc}") from None
        self.store.update_run(run_id, job_parameters=resolved)
        return run_id

    async def execute_run(self, run_id: int, *, on_event: EventHandler | None = None,
                          concurrency: int | None = None) -> dict:
        """Run a PENDING run to its end on the current event loop; returns its runs/get JSON."""
        run = self._run_row(run_id)
        settings = JobSettings.model_validate(run["settings"])
        driver = RunDriver(self.store, run_id, settings, concurrency=concurrency or self.concurrency,
                           on_event=on_event)
        await driver.run()
        return self.get_run(run_id)

    @property
    def engine(self) -> RunEngine:
        """The background loop that executes runs started with `wait=False`."""
        if self._engine is None:
            self._engine = RunEngine()
        return self._engine

    def run_now(self, job_id: int, job_parameters: Mapping[str, str] | None = None, *, wait: bool = True,
                on_event: EventHandler | None = None, concurrency: int | None = None) -> dict:
        """jobs/run-now. wait=True: the finished run's runs/get JSON. wait=False: start it on the
        background engine and return at once with `{"run_id", "number_in_job"}` (the API's answer)."""
        run_id = self.start_run(job_id, job_parameters)
        return self.execute(run_id, wait=wait, on_event=on_event, concurrency=concurrency)

    def execute(self, run_id: int, *, wait: bool = True, on_event: EventHandler | None = None,
                concurrency: int | None = None) -> dict:
        """Execute a PENDING run: here (wait=True, no loop running in this thread) or on the engine."""
        def factory():
            return self.execute_run(run_id, on_event=on_event, concurrency=concurrency)
        if not wait:
            self.engine.submit(run_id, factory)
            return {"run_id": run_id, "number_in_job": run_id}
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(factory())
        return self.engine.submit(run_id, factory).result()  # called from a loop (e.g. Jupyter)

    def wait(self, run_id: int, timeout: float | None = None) -> dict:
        """Wait for a run started with wait=False; returns its runs/get JSON."""
        future = self._engine.future(run_id) if self._engine else None
        if future is not None:
            try:
                future.result(timeout=timeout)
            except concurrent.futures.CancelledError:
                pass
        return self.get_run(run_id)

    def _run_row(self, run_id: int) -> dict:
        row = self.store.get_run(int(run_id))
        if row is None:
            raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
        return row

    def get_run(self, run_id: int, *, include_history: bool = True) -> dict:
        """runs/get. A task run id gives that task run (a for-each task run lists its iterations)."""
        row = self.store.get_run(int(run_id))
        if row is None:
            task_row = self.store.get_task_run(int(run_id))
            if task_row is None:
                raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
            parent = self._run_row(task_row["run_id"])
            out = api_json.run_json({**parent, "run_id": task_row["task_run_id"],
                                     "life_cycle_state": task_row["life_cycle_state"],
                                     "result_state": task_row["result_state"],
                                     "state_message": task_row["state_message"],
                                     "start_time": task_row["start_time"], "end_time": task_row["end_time"]},
                                    [task_row], iterations=self.store.child_task_runs(task_row["task_run_id"]))
            out["job_run_id"] = parent["run_id"]
            return out
        task_rows = self.store.task_runs(row["run_id"])
        repairs = self.store.repairs(row["run_id"]) if include_history else None
        history = None
        if include_history:
            history = {}
            for t in self.store.task_runs(row["run_id"], latest_only=False):
                history.setdefault(t["repair_id"], []).append(t["task_run_id"])
        return api_json.run_json(row, task_rows, repairs=repairs, history_task_runs=history)

    def get_run_output(self, run_id: int) -> dict:
        """runs/get-output of a task run (a multi-task job run id is refused, as the Jobs API does)."""
        task_row = self.store.get_task_run(int(run_id))
        if task_row is None:
            if self.store.get_run(int(run_id)) is not None:
                raise InvalidParameterValue(
                    "Retrieving the output of runs with multiple tasks is not supported. "
                    "Please retrieve the output of each individual task run instead.")
            raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
        run = self._run_row(task_row["run_id"])
        logs = None
        if task_row.get("logs_path") and Path(task_row["logs_path"]).exists():
            logs = Path(task_row["logs_path"]).read_text(errors="replace")
        return api_json.run_output_json(task_row, run, logs=logs)

    def list_runs(self, *, job_id: int | None = None, active_only: bool = False, completed_only: bool = False,
                  limit: int | None = None, offset: int = 0, expand_tasks: bool = False) -> list[dict]:
        """runs/list, newest first."""
        if active_only and completed_only:
            raise InvalidParameterValue("active_only and completed_only cannot both be true.")
        rows = self.store.list_runs(job_id=job_id, active_only=active_only, completed_only=completed_only,
                                    limit=limit, offset=offset)
        out = []
        for row in rows:
            run = api_json.run_json(row, self.store.task_runs(row["run_id"]) if expand_tasks else [])
            if not expand_tasks:
                run.pop("tasks")
            out.append(run)
        return out

    def active_runs(self, job_id: int) -> list[dict]:
        return [r for r in self.store.list_runs(job_id=job_id) if r["life_cycle_state"] in ACTIVE_STATES]

    def task_runs(self, run_id: int) -> list[dict]:
        """Store rows of a run's latest task runs (for clients that show tables)."""
        self._run_row(run_id)
        return self.store.task_runs(int(run_id))


def parse_key_values(items: Iterable[str] | None, *, flag: str) -> dict[str, str]:
    """`NAME=VALUE` pairs from repeated CLI flags; a clear error names the bad one."""
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidParameterValue(f"{flag} {item!r}: expected NAME=VALUE, e.g. {flag} run_date=2026-01-31")
        out[name] = value
    return out
