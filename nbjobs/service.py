"""The one service layer every client (CLI, REST, magics, panel) goes through."""
from __future__ import annotations

import asyncio
import concurrent.futures
import getpass
import os
import shutil
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._gc import gc_paused
from ._proc import pid_alive
from . import api_json
from .refs import ReferenceResolutionError, RefContext, resolve
from .engine import RunEngine
from .events import bus_for
from .errors import InvalidParameterValue, InvalidState, NbjobsError, ResourceDoesNotExist  # noqa: F401
from .runner import EventHandler, RunDriver
from .spec import JobSettings, parse_job_settings
from .states import ResultState
from .store import ACTIVE_STATES, Store, TokenOfDeletedRun, utc_from_ms


_DRIVERS: dict[Path, dict[int, Any]] = {}
_OPEN: "weakref.WeakSet[Workspace]" = weakref.WeakSet()  # open workspaces of this process


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
        self.events = bus_for(self.home)  # every run of this folder executed in this process publishes here
        self._engine: RunEngine | None = None
        self._validated: dict[int, JobSettings] = {}  # run_id -> settings validated by _start_run
        # runs executing in this process (any Workspace of this folder): run_id -> RunDriver (None: starting)
        self._drivers: dict[int, RunDriver | None] = _DRIVERS.setdefault(self.home, {})
        self.store.recover_orphans()
        _OPEN.add(self)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        _OPEN.discard(self)
        if not _OPEN:  # the last open workspace of this process: kill the warm kernels (nbjobs.compute)
            kernels = sys.modules.get("nbjobs.compute.kernels")
            if kernels is not None:
                kernels.shutdown_pools()
        self.store.close()

    # -- jobs ---------------------------------------------------------------------------------
    def _settings(self, settings: JobSettings | Mapping[str, Any], base_dir: Path | None) -> JobSettings:
        if isinstance(settings, JobSettings):
            return parse_job_settings(settings.to_dict(), base_dir=base_dir or Path.cwd())
        return parse_job_settings(dict(settings), base_dir=base_dir or Path.cwd())

    def create_job(self, settings: JobSettings | Mapping[str, Any], *, base_dir: Path | None = None,
                   source_path: str | None = None, root: str | os.PathLike | None = None) -> int:
        """jobs/create: validate (raises JobDefinitionError listing every problem) and store.

        `root` (REST clients): task file paths are relative to this folder and may not leave it."""
        if root is not None:
            settings, base_dir = confine_paths(settings, root), Path(root)
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
                  trigger: str = "ONE_TIME", trigger_time: int | None = None,
                  idempotency_token: str | None = None, only: Iterable[str] | str | None = None,
                  queue: Mapping[str, Any] | bool | None = None, parent_task_run_id: int | None = None) -> int:
        """Create a run of the job's current settings with resolved job parameters.

        At the job's `max_concurrent_runs` the run is QUEUED (queue enabled) or ends SKIPPED with
        MAXIMUM_CONCURRENT_RUNS_REACHED; otherwise it is PENDING. An `idempotency_token` already used
        by a run of this job returns that run's id and starts nothing. `only` runs a subset of tasks
        (`key`, `+key` with its upstream, `key+` with its downstream)."""
        return self._start_run(job_id, job_parameters, trigger=trigger, trigger_time=trigger_time,
                               idempotency_token=idempotency_token, only=only, queue=queue,
                               parent_task_run_id=parent_task_run_id)[0]

    def _create_run(self, **kwargs) -> tuple[int, dict[str, int] | None]:
        try:
            return self.store.create_run(**kwargs)
        except TokenOfDeletedRun as exc:
            raise InvalidParameterValue(str(exc)) from None

    @gc_paused(keep=True)  # the run's validated settings live as long as the run
    def _start_run(self, job_id, job_parameters=None, *, trigger="ONE_TIME", trigger_time=None,
                   idempotency_token=None, only=None, queue=None, parent_task_run_id=None) -> tuple[int, bool]:
        """start_run; the bool says whether a new run was created (False: idempotency_token reuse)."""
        from .plan import JobGraph, select_only
        from .runner import plan_task
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
        if idempotency_token is not None and (not isinstance(idempotency_token, str) or not idempotency_token
                                              or len(idempotency_token) > 64):
            raise InvalidParameterValue(f"idempotency_token: {idempotency_token!r} is not a string of 1 to 64 "
                                        "characters; use e.g. a UUID")
        cycle = self._run_job_cycle(row["job_id"], row["settings"])
        if cycle:
            raise InvalidParameterValue(_cycle_message(cycle, self.store))
        selected = None
        if only is not None:
            items = [s for s in (only.split(",") if isinstance(only, str) else only)]
            try:
                selected = select_only(JobGraph(plan_task(t) for t in settings.tasks), items)
            except ValueError as exc:
                raise InvalidParameterValue(str(exc)) from None
        run_settings = _subset(row["settings"], selected)  # the job's stored JSON is settings.to_dict()
        tasks = [(t["task_key"], t) for t in run_settings.get("tasks", [])]
        limit = 1 if settings.max_concurrent_runs is None else int(settings.max_concurrent_runs)
        run_id, ids = self._create_run(
            job_id=row["job_id"], settings=run_settings, job_parameters=[], run_name=row["name"],
            tasks=tasks, trigger=trigger, trigger_time=trigger_time, creator=self.user,
            idempotency_token=idempotency_token, admission=(limit, _queue_enabled(queue, settings)),
            only=sorted(selected) if selected is not None else None, parent_task_run_id=parent_task_run_id)
        if ids is None:
            return run_id, False
        if selected is None:  # the run's settings are the job's, just validated: execute_run reuses them
            self._validated[run_id] = settings
            while len(self._validated) > 64:
                self._validated.pop(next(iter(self._validated)))
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
        return run_id, True

    async def execute_run(self, run_id: int, *, on_event: EventHandler | None = None,
                          concurrency: int | None = None, repair_id: int | None = None,
                          done: Mapping[str, tuple[Any, str | None]] | None = None) -> dict:
        """Run a PENDING (or QUEUED) run, or a repair of it, to its end on the current event loop;
        returns its runs/get JSON."""
        driver = None
        subscription = self.events.subscribe(on_event, run_id=run_id) if on_event is not None else None
        try:
            settings = self._validated.pop(run_id, None) if repair_id is None else None
            if settings is None:
                settings = JobSettings.model_validate(self._run_row(run_id)["settings"])
            driver = RunDriver(self.store, run_id, settings, concurrency=concurrency or self.concurrency,
                               events=self.events, done=dict(done) if done else None, repair_id=repair_id,
                               child_runs=_ChildRuns(self, concurrency))
            self._drivers[run_id] = driver
            await driver.run()
        finally:
            if self._drivers.get(run_id) in (None, driver):
                self._drivers.pop(run_id, None)
            if subscription is not None:  # the caller's handler has seen every event when this returns
                await asyncio.to_thread(subscription.close)
        del driver, settings  # its rows and task models are freed before runs/get builds its answer
        return self.get_run(run_id)

    @property
    def engine(self) -> RunEngine:
        """The background loop that executes runs started with `wait=False`."""
        if self._engine is None:
            self._engine = RunEngine()
        return self._engine

    def run_now(self, job_id: int, job_parameters: Mapping[str, str] | None = None, *, wait: bool = True,
                idempotency_token: str | None = None, only: Iterable[str] | str | None = None,
                queue: Mapping[str, Any] | bool | None = None, on_event: EventHandler | None = None,
                concurrency: int | None = None) -> dict:
        """jobs/run-now. wait=True: the finished run's runs/get JSON. wait=False: start it on the
        background engine and return at once with `{"run_id", "number_in_job"}` (the API's answer);
        the run is PENDING or QUEUED (or SKIPPED at the concurrency limit) when this returns.

        The same `idempotency_token` gives the same run (no new one starts). `only` runs a subset of
        the tasks; `queue={"enabled": bool}` overrides the job's queue setting for this run."""
        run_id, created = self._start_run(job_id, job_parameters, idempotency_token=idempotency_token,
                                          only=only, queue=queue)
        if not created:
            return self.wait(run_id) if wait else {"run_id": run_id, "number_in_job": run_id}
        return self.execute(run_id, wait=wait, on_event=on_event, concurrency=concurrency)

    def execute(self, run_id: int, *, wait: bool = True, on_event: EventHandler | None = None,
                concurrency: int | None = None, repair_id: int | None = None,
                done: Mapping[str, tuple[Any, str | None]] | None = None) -> dict:
        """Execute a PENDING run (or repair): here (wait=True, no loop running in this thread) or on
        the engine (wait=False: returns `{"run_id", "number_in_job"}` at once)."""
        self._drivers.setdefault(run_id, None)  # executing here: cancel_run pokes it instead of ending it

        def factory():
            return self.execute_run(run_id, on_event=on_event, concurrency=concurrency, repair_id=repair_id,
                                    done=done)
        if not wait:
            self.engine.submit(run_id, factory)
            return {"run_id": run_id, "number_in_job": run_id}
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(factory())
        return self.engine.submit(run_id, factory).result()  # called from a loop (e.g. Jupyter)

    def wait(self, run_id: int, timeout: float | None = None) -> dict:
        """Wait for a run (or repair) to end, also one executing in another process; returns its
        runs/get JSON (still active if `timeout` seconds passed first)."""
        future = self._engine.future(run_id) if self._engine else None
        if future is not None:
            try:
                future.result(timeout=timeout)
            except concurrent.futures.CancelledError:
                pass
            except concurrent.futures.TimeoutError:
                return self.get_run(run_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self._run_row(run_id)
            if row["life_cycle_state"] not in ACTIVE_STATES:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if row.get("pid") not in (None, os.getpid()) and not self._driven(row):
                self.store.recover_orphans()  # its process is gone: it ends INTERNAL_ERROR
            time.sleep(0.1)
        return self.get_run(run_id)

    def _run_row(self, run_id: int) -> dict:
        row = self.store.get_run(int(run_id))
        if row is None:
            raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
        return row

    @gc_paused
    def get_run(self, run_id: int, *, include_history: bool = True) -> dict:
        """runs/get. A task run id gives that task run (a for-each task run lists its iterations)."""
        row = self.store.get_run(int(run_id), settings=False)  # runs/get does not echo the settings
        if row is None:
            task_row = self.store.get_task_run(int(run_id))
            if task_row is None:
                raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
            parent = self._run_row(task_row["run_id"])
            iterations = self.store.child_task_runs(task_row["task_run_id"])
            out = api_json.run_json({**parent, "run_id": task_row["task_run_id"],
                                     "life_cycle_state": task_row["life_cycle_state"],
                                     "result_state": task_row["result_state"],
                                     "state_message": task_row["state_message"],
                                     "start_time": task_row["start_time"], "end_time": task_row["end_time"],
                                     "parent_task_run_id": None, "queue_duration": 0},
                                    [task_row], iterations=iterations,
                                    for_each_iterations={task_row["task_run_id"]: iterations})
            out["job_run_id"] = parent["run_id"]
            out["attempt_number"] = task_row.get("attempt_number") or 0
            out["original_attempt_run_id"] = task_row.get("original_attempt_run_id") or task_row["task_run_id"]
            return out
        every = self.store.task_runs(row["run_id"], latest_only=False)  # one read: latest rows and history
        first: dict[str, int] = {}  # a task's first task run: made in the order of the run's settings
        for t in every:
            first.setdefault(t["task_key"], t["task_run_id"])
        task_rows = sorted((t for t in every if t["is_latest"]), key=lambda t: first[t["task_key"]])
        loops = {t["task_run_id"]: self.store.child_task_runs(t["task_run_id"])
                 for t in task_rows if "for_each_task" in t["task"]}
        repairs = self.store.repairs(row["run_id"]) if include_history else None
        history = None
        if include_history:
            history = {}
            for t in every:
                history.setdefault(t["repair_id"], []).append(t["task_run_id"])
        return api_json.run_json(row, task_rows, repairs=repairs, history_task_runs=history,
                                 for_each_iterations=loops)

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
                  limit: int | None = None, offset: int = 0, expand_tasks: bool = False,
                  run_type: str | None = None, start_time_from: int | None = None,
                  start_time_to: int | None = None, before: tuple[int, int] | None = None) -> list[dict]:
        """runs/list, newest first. `before=(start_time, run_id)`: only runs listed after that one."""
        if active_only and completed_only:
            raise InvalidParameterValue("active_only and completed_only cannot both be true.")
        rows = self.store.list_runs(job_id=job_id, active_only=active_only, completed_only=completed_only,
                                    limit=limit, offset=offset, run_type=run_type, start_time_from=start_time_from,
                                    start_time_to=start_time_to, before=before)
        out = []
        for row in rows:
            tasks = self.store.task_runs(row["run_id"]) if expand_tasks else []
            loops = {t["task_run_id"]: self.store.child_task_runs(t["task_run_id"])
                     for t in tasks if "for_each_task" in t["task"]}
            run = api_json.run_json(row, tasks, for_each_iterations=loops)
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

    # -- repair, cancel, delete -------------------------------------------------------------------
    def repair_run(self, run_id: int, *, rerun_tasks: Iterable[str] | None = None,
                   rerun_all_failed_tasks: bool = False, rerun_dependent_tasks: bool = False,
                   latest_repair_id: int | None = None, job_parameters: Mapping[str, str] | None = None,
                   wait: bool = True, on_event: EventHandler | None = None,
                   concurrency: int | None = None) -> dict:
        """runs/repair: rerun the failed (or the named) tasks of a finished run, and the tasks after
        them that did not succeed (every task after them with `rerun_dependent_tasks`), inside the
        same run with new task run ids; the other tasks keep their results and task values. Uses
        the job's current settings. wait=False returns `{"repair_id"}` with the run already PENDING;
        wait=True returns the repaired run's runs/get JSON."""
        from .plan import JobGraph, repair_selection
        from .runner import plan_task
        self.store.recover_orphans()
        run = self.store.get_run(int(run_id))
        if run is None:
            if self.store.get_task_run(int(run_id)) is not None:
                raise InvalidParameterValue(f"Run {run_id} is a task run; repair its job run (the run_id of the "
                                            "whole run) and name the task with rerun_tasks.")
            raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
        run_id = run["run_id"]
        if run["life_cycle_state"] in ACTIVE_STATES:
            raise InvalidState(f"Run {run_id} is still {run['life_cycle_state']}; wait for it to finish or "
                               f"cancel it before repairing.")
        repairs = self.store.repairs(run_id)
        if repairs and latest_repair_id is None:
            latest = repairs[-1]["repair_id"]
            raise InvalidParameterValue(
                "The latest repair ID needs to be provided in order to create a new repair: "
                f"run {run_id} was repaired before; pass latest_repair_id={latest} (--latest-repair-id {latest}).")
        if latest_repair_id is not None:
            latest = repairs[-1]["repair_id"] if repairs else None
            if int(latest_repair_id) != latest:
                which = f"its latest repair is {latest}" if latest else "it has not been repaired yet"
                raise InvalidParameterValue(
                    f"latest_repair_id {latest_repair_id} is not the latest repair of run {run_id} ({which}); "
                    + (f"pass latest_repair_id={latest}." if latest else "leave latest_repair_id out."))
        if isinstance(rerun_tasks, str):
            rerun_tasks = [k.strip() for k in rerun_tasks.split(",") if k.strip()]
        if rerun_tasks is not None and not rerun_tasks:
            rerun_tasks = None
        if (rerun_tasks is None) == (not rerun_all_failed_tasks):
            raise InvalidParameterValue(
                "Give exactly one of rerun_tasks (the task keys to rerun) and rerun_all_failed_tasks=true "
                "(--rerun-tasks a,b or --rerun-all-failed-tasks).")
        job = self.store.get_job(run["job_id"]) if run["job_id"] is not None else None
        current = job["settings"] if job else run["settings"]  # stored as a validated model's to_dict()
        settings = _subset(current, set(run["only"]) if run.get("only") is not None else None)
        model = JobSettings.model_validate(settings)
        graph = JobGraph(plan_task(t) for t in model.tasks)
        rows = {r["task_key"]: r for r in self.store.task_runs(run_id)}
        results = {k: ResultState(r["result_state"]) for k, r in rows.items() if r["result_state"] and k in graph}
        outcomes = {k: r["condition_outcome"] for k, r in rows.items()}
        try:
            selection = repair_selection(graph, results, rerun_tasks=rerun_tasks,
                                         rerun_all_failed=bool(rerun_all_failed_tasks),
                                         rerun_dependent_tasks=rerun_dependent_tasks)
        except ValueError as exc:
            raise InvalidParameterValue(f"rerun_tasks: {exc}" if rerun_tasks is not None else str(exc)) from None
        if not selection:
            raise InvalidParameterValue(
                f"Run {run_id} has no failed task to repair (every task succeeded); name the tasks to rerun "
                "with rerun_tasks (--rerun-tasks a,b).")
        parameters = self._repair_parameters(run, model, job_parameters)
        request = {"rerun_tasks": list(rerun_tasks) if rerun_tasks is not None else None,
                   "rerun_all_failed_tasks": bool(rerun_all_failed_tasks),
                   "rerun_dependent_tasks": bool(rerun_dependent_tasks),
                   "job_parameters": dict(job_parameters or {}), "selected": sorted(selection),
                   "previous_result_state": run["result_state"]}
        order = [t.task_key for t in model.tasks if t.task_key in selection]
        repair_id, _ = self.store.create_repair(
            run_id, request, tasks=[(k, model.task(k).model_dump(exclude_none=True)) for k in order],
            settings=settings, job_parameters=parameters)
        done = {k: (results[k], outcomes.get(k)) for k in graph.tasks if k not in selection and k in results}
        result = self.execute(run_id, wait=wait, on_event=on_event, concurrency=concurrency, repair_id=repair_id,
                              done=done)
        return result if wait else {"repair_id": repair_id}

    def _repair_parameters(self, run: dict, settings: JobSettings,
                           overrides: Mapping[str, str] | None) -> list[dict] | None:
        """The run's job parameter values with the repair's overrides (and any parameter added since)."""
        if not overrides and {p["name"] for p in run["job_parameters"]} == {p.name for p in settings.parameters}:
            return None
        definitions = {p.name: p.default for p in settings.parameters or []}
        overrides = {str(k): str(v) for k, v in (overrides or {}).items()}
        unknown = sorted(set(overrides) - set(definitions))
        if unknown:
            raise InvalidParameterValue(
                f"job_parameters: the job has no parameter named {', '.join(repr(u) for u in unknown)}. "
                f"Defined parameters: {', '.join(sorted(definitions)) or 'none'}.")
        previous = {p["name"]: p["value"] for p in run["job_parameters"]}
        ctx = RefContext(job_id=run["job_id"], job_name=run["run_name"], run_id=run["run_id"],
                         repair_count=run["repair_count"] + 1, start_time=utc_from_ms(run["start_time"]),
                         trigger_type=(run["trigger"] or "ONE_TIME").lower(),
                         trigger_time=utc_from_ms(run["trigger_time"]))
        out = []
        try:
            for name, default in definitions.items():
                if name in overrides:
                    value = resolve(overrides[name], ctx)
                elif name in previous:
                    value = previous[name]
                else:
                    value = resolve(default or "", ctx)
                out.append({"name": name, "default": default, "value": value})
        except ReferenceResolutionError as exc:
            raise InvalidParameterValue(f"job_parameters: {exc}") from None
        return out

    def cancel_run(self, run_id: int) -> None:
        """runs/cancel of a job run or a task run, also one executing in another process (the driver
        polls a cancel request in the store). Asynchronous: the run may still be active on return.
        Running tasks are stopped (kernels and subprocesses killed) and end CANCELED; tasks after
        them end UPSTREAM_CANCELED unless their run_if lets them run (e.g. ALL_DONE cleanup)."""
        run = self.store.get_run(int(run_id))
        if run is None:
            task_row = self.store.get_task_run(int(run_id))
            if task_row is None:
                raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
            if task_row["life_cycle_state"] not in ACTIVE_STATES:
                return
            self.store.request_task_cancel(task_row["task_run_id"])
            run = self._run_row(task_row["run_id"])
            if run["life_cycle_state"] in ACTIVE_STATES and not self._driven(run):
                self.store.end_run(run["run_id"], life_cycle_state="TERMINATED", result_state="CANCELED",
                                   message="Canceled by request (no process was executing the run).")
            self._poke(run["run_id"])
            return
        if run["life_cycle_state"] not in ACTIVE_STATES:
            return
        self.store.request_cancel(run["run_id"])
        if not self._driven(run):
            self.store.end_run(run["run_id"], life_cycle_state="TERMINATED", result_state="CANCELED",
                               message="Canceled by request (no process was executing the run).")
        self._poke(run["run_id"])

    def cancel_all_runs(self, job_id: int | None = None, all_queued_runs: bool = False) -> None:
        """runs/cancel-all: every active run of `job_id`; or, with all_queued_runs and no job_id,
        every QUEUED run of the workspace. Asynchronous, like cancel_run."""
        if job_id is None and not all_queued_runs:
            raise InvalidParameterValue("cancel_all_runs: give job_id (cancel that job's active runs), or "
                                        "all_queued_runs=true (cancel every queued run).")
        if job_id is not None:
            self._job_row(job_id)
            rows = self.store.list_runs(job_id=int(job_id), active_only=True)
            if all_queued_runs:
                rows = [r for r in rows if r["life_cycle_state"] == "QUEUED"] or rows
        else:
            rows = [r for r in self.store.list_runs(active_only=True) if r["life_cycle_state"] == "QUEUED"]
        for row in rows:
            self.cancel_run(row["run_id"])

    def delete_run(self, run_id: int) -> None:
        """runs/delete of a finished run (its outputs folder too). An active run is refused."""
        run = self.store.get_run(int(run_id))
        if run is None:
            if self.store.get_task_run(int(run_id)) is not None:
                raise InvalidParameterValue(f"Run {run_id} is a task run; delete its job run instead.")
            raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
        if run["life_cycle_state"] in ACTIVE_STATES:
            raise InvalidState(f"Run {run_id} is {run['life_cycle_state']}; cancel it (nbjobs runs cancel "
                               f"{run_id}) and wait for it to end before deleting it.")
        self.store.delete_run(run["run_id"], keep_token=True)
        shutil.rmtree(self.store.runs_dir / str(run["run_id"]), ignore_errors=True)

    def _driven(self, run: dict) -> bool:
        """Some live process executes (or is about to execute) this run."""
        if run["run_id"] in self._drivers:
            return True
        pid = run.get("pid")
        if pid is None or pid == os.getpid():
            return False
        return pid_alive(pid)

    def _poke(self, run_id: int) -> None:
        driver = self._drivers.get(run_id)
        if driver is not None:
            driver.poke()

    # -- run_job_task helpers -------------------------------------------------------------------
    def _run_job_cycle(self, job_id: int, settings: Mapping[str, Any] | None = None) -> list[int] | None:
        """A loop of run_job_tasks reachable from `job_id` (as job ids, closed), or None.
        `settings`: the job's, when the caller has them already."""
        from .plan import find_cycle
        calls: dict[int, list[int]] = {}
        if settings is not None:
            calls[int(job_id)] = _called_jobs(settings)
        todo = list(calls.get(int(job_id), [int(job_id)]))
        while todo:
            current = todo.pop()
            if current in calls:
                continue
            row = self.store.get_job(current)
            calls[current] = _called_jobs(row["settings"]) if row else []
            todo.extend(calls[current])
        return find_cycle(calls)

    def _check_call_chain(self, job_id: int, parent_task_run_id: int) -> None:
        """A run-job task may not start a job already running above it (jobs edited mid-run)."""
        chain: list[int] = []
        task_run_id: int | None = parent_task_run_id
        while task_run_id is not None:
            task_row = self.store.get_task_run(task_run_id)
            run = self.store.get_run(task_row["run_id"]) if task_row else None
            if run is None:
                break
            chain.append(run["job_id"])
            task_run_id = run.get("parent_task_run_id")
        if int(job_id) in chain:
            loop = list(reversed(chain[:chain.index(int(job_id)) + 1])) + [int(job_id)]
            raise InvalidParameterValue(_cycle_message(loop, self.store))

    # -- batches --------------------------------------------------------------------------------
    def run_batch(self, notebook: str | os.PathLike, grid: Mapping[str, Iterable[Any]], *,
                  params: Mapping[str, str] | None = None, concurrency: int = 1, name: str | None = None,
                  on_event: EventHandler | None = None):
        """Run a notebook (or script) over the product of `grid` as a for-each job; see nbjobs.batch."""
        from .batch import run_batch
        return run_batch(notebook, grid, params=params, concurrency=concurrency, name=name, workspace=self,
                         on_event=on_event)

    # -- jobs/update, jobs/reset, runs/submit, runs/export (the REST API's extra verbs) --------
    def update_job(self, job_id: int, new_settings: Mapping[str, Any] | None = None,
                   fields_to_remove: Iterable[str] | None = None, *, base_dir: Path | None = None,
                   root: str | os.PathLike | None = None) -> None:
        """jobs/update: top-level fields of `new_settings` replace the job's; arrays (tasks, job_clusters,
        environments, parameters) are merged by key; `fields_to_remove` drops top-level fields or single
        entries (`"tasks/<task_key>"`, `"job_clusters/<key>"`). The result is validated as a whole."""
        row = self._job_row(job_id)
        if new_settings is not None and not isinstance(new_settings, Mapping):
            raise InvalidParameterValue(f"new_settings: expected an object of job settings, "
                                        f"got {type(new_settings).__name__}")
        new_settings = dict(new_settings or {})
        if root is not None:
            new_settings, base_dir = confine_paths(new_settings, root), Path(root)
        merged = update_settings(row["settings"], new_settings, fields_to_remove)
        model = self._settings(merged, base_dir)
        self.store.update_job(row["job_id"], model.to_dict())

    def reset_job(self, job_id: int, new_settings: JobSettings | Mapping[str, Any], *,
                  base_dir: Path | None = None, root: str | os.PathLike | None = None) -> None:
        """jobs/reset: replace all of the job's settings (validated like jobs/create)."""
        row = self._job_row(job_id)
        if not isinstance(new_settings, (Mapping, JobSettings)):
            raise InvalidParameterValue(f"new_settings: expected an object of job settings, "
                                        f"got {type(new_settings).__name__}")
        if root is not None:
            new_settings, base_dir = confine_paths(new_settings, root), Path(root)
        model = self._settings(new_settings, base_dir)
        self.store.update_job(row["job_id"], model.to_dict())

    def submit_run(self, body: Mapping[str, Any], *, wait: bool = False, base_dir: Path | None = None,
                   root: str | os.PathLike | None = None, on_event: EventHandler | None = None) -> dict:
        """runs/submit: a one-time run of `body` (run_name, tasks, ...) without a saved job.

        wait=False: `{"run_id"}` at once (the API's answer); wait=True: the finished run's runs/get JSON.
        An `idempotency_token` already used returns that run instead of starting another."""
        if not isinstance(body, Mapping):
            raise InvalidParameterValue("runs/submit: the body must be an object with run_name and tasks")
        body = dict(body)
        token = body.pop("idempotency_token", None)
        if token is not None and (not isinstance(token, str) or len(token) > 64):
            raise InvalidParameterValue("idempotency_token: expected a string of at most 64 characters")
        body.pop("access_control_list", None)
        run_name = body.pop("run_name", None) or "Untitled"
        settings = {"name": run_name, **body}
        if root is not None:
            settings, base_dir = confine_paths(settings, root), Path(root)
        model = self._settings(settings, base_dir)
        tasks = [(t.task_key, t.model_dump(exclude_none=True)) for t in model.tasks]
        run_id, created = self._create_run(
            job_id=None, settings=model.to_dict(), job_parameters=[], run_name=run_name, tasks=tasks,
            run_type="SUBMIT_RUN", creator=self.user, idempotency_token=token)
        if created is None:  # the idempotency_token's run
            return self.wait(run_id) if wait else {"run_id": run_id}
        result = self.execute(run_id, wait=wait, on_event=on_event)
        return result if wait else {"run_id": run_id}

    def export_run(self, run_id: int, views_to_export: str | None = "CODE") -> dict:
        """runs/export: `{"views": [{content (HTML), name, type: "NOTEBOOK"}]}` of the executed notebook
        of a notebook task run (a job run id exports each of its notebook tasks)."""
        views = (views_to_export or "CODE").upper()
        if views not in ("CODE", "DASHBOARDS", "ALL"):
            raise InvalidParameterValue(f"views_to_export: expected CODE, DASHBOARDS or ALL, got {views_to_export!r}")
        task_row = self.store.get_task_run(int(run_id))
        if task_row is not None:
            if "notebook_task" not in task_row["task"]:
                kind = next((k for k in task_row["task"] if k.endswith("_task")), "non-notebook")
                raise InvalidParameterValue(f"Run {run_id} is a {kind} run of task '{task_row['task_key']}'; "
                                            "only notebook task runs can be exported.")
            rows = [task_row]
        else:
            self._run_row(run_id)
            rows = [r for r in self.store.task_runs(int(run_id)) if "notebook_task" in r["task"]]
            if not rows:
                raise InvalidParameterValue(f"Run {run_id} has no notebook task to export.")
        out: list[dict] = []
        if views == "DASHBOARDS":
            return {"views": out}
        for row in rows:
            path = row.get("output_path")
            if not path or not Path(path).is_file():
                if task_row is not None:
                    raise InvalidParameterValue(
                        f"Run {run_id} has no executed notebook to export (its state is "
                        f"{row['result_state'] or row['life_cycle_state']}).")
                continue
            name = Path(row["task"]["notebook_task"].get("notebook_path") or row["task_key"]).stem
            out.append({"content": notebook_html(Path(path)), "name": name, "type": "NOTEBOOK"})
        return {"views": out}


def parse_key_values(items: Iterable[str] | None, *, flag: str) -> dict[str, str]:
    """`NAME=VALUE` pairs from repeated CLI flags; a clear error names the bad one."""
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidParameterValue(f"{flag} {item!r}: expected NAME=VALUE, e.g. {flag} run_date=2026-01-31")
        out[name] = value
    return out


# -- helpers of the REST verbs --------------------------------------------------------------------

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


_PATH_FIELDS = (("notebook_task", "notebook_path", "notebook"), ("spark_python_task", "python_file", "script"))


def confine_paths(settings: JobSettings | Mapping[str, Any], root: str | os.PathLike) -> dict:
    """Settings sent over the API: task file paths are taken relative to `root` and may not leave it.

    A relative path is joined to `root`; an absolute path inside `root` is kept; any other absolute path
    (a Databricks workspace path such as `/Users/me/etl`) is read as relative to `root`. A path that
    still leads outside `root` (`../x`) is a JobDefinitionError naming the field."""
    from .spec import JobDefinitionError, Problem
    from .spec.validate import is_remote_path

    data = settings.to_dict() if isinstance(settings, JobSettings) else dict(settings)
    base = os.path.normpath(os.path.abspath(os.fspath(root)))
    if data.get("git_source") is not None or not isinstance(data.get("tasks"), list):
        return data
    problems: list = []

    def fix(value: Any, label: str) -> Any:
        if not isinstance(value, str) or not value or is_remote_path(value):
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

    def task_fix(task: Any, label: str) -> Any:
        if not isinstance(task, dict):
            return task
        task = dict(task)
        key = task.get("task_key")
        label += f" ({key})" if isinstance(key, str) and key else ""
        for payload_key, field, _kind in _PATH_FIELDS:
            payload = task.get(payload_key)
            if isinstance(payload, dict) and field in payload and str(payload.get("source", "")).upper() != "GIT":
                task[payload_key] = {**payload, field: fix(payload[field], f"{label}.{payload_key}.{field}")}
        loop = task.get("for_each_task")
        if isinstance(loop, dict) and isinstance(loop.get("task"), dict):
            task["for_each_task"] = {**loop, "task": task_fix(loop["task"], f"{label}.for_each_task.task")}
        return task

    data["tasks"] = [task_fix(t, f"tasks[{i}]") for i, t in enumerate(data["tasks"])]
    if problems:
        raise JobDefinitionError(problems)
    return data


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def notebook_html(path: Path) -> str:
    """An executed notebook rendered as a standalone HTML page (nbconvert; the nbjobs cell left out)."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(str(path), as_version=4)
    exporter = HTMLExporter(template_name="lab")
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"injected-nbjobs"}), enabled=True)
    html, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    return html


# -- helpers of the run verbs ---------------------------------------------------------------------

class _ChildRuns:
    """What a run-job task uses to start and await another job's run (trigger RUN_JOB_TASK)."""

    def __init__(self, workspace: Workspace, concurrency: int | None):
        self.workspace = workspace
        self.concurrency = concurrency

    def start(self, job_id: int, job_parameters: dict[str, str], parent_task_run_id: int) -> int:
        self.workspace._check_call_chain(job_id, parent_task_run_id)
        return self.workspace.start_run(job_id, job_parameters, trigger="RUN_JOB_TASK",
                                        parent_task_run_id=parent_task_run_id)

    async def execute(self, run_id: int) -> dict:
        return await self.workspace.execute_run(run_id, concurrency=self.concurrency)


def _queue_enabled(queue: Mapping[str, Any] | bool | None, settings: JobSettings) -> bool:
    """run-now's `queue` override, else the job's `queue.enabled`, else on (the Jobs API 2.2 default)."""
    if isinstance(queue, Mapping):
        if "enabled" not in queue:
            raise InvalidParameterValue('queue: expected {"enabled": true} or {"enabled": false}')
        return bool(queue["enabled"])
    if queue is not None:
        return bool(queue)
    return True if settings.queue is None else bool(settings.queue.enabled)


def _subset(settings: Mapping[str, Any], selected: set[str] | None) -> dict:
    """Settings JSON (as stored: a validated model's `to_dict()`) restricted to the `selected` tasks;
    dependencies on others are dropped."""
    data = dict(settings)
    if selected is None:
        return data
    tasks = []
    for task in data.get("tasks", []):
        if task["task_key"] not in selected:
            continue
        task = dict(task)
        if task.get("depends_on"):
            task["depends_on"] = [d for d in task["depends_on"] if d.get("task_key") in selected]
        tasks.append(task)
    data["tasks"] = tasks
    return data


def _called_jobs(settings: Mapping[str, Any]) -> list[int]:
    """Job ids the job's run_job_tasks call (also inside for_each_task)."""
    out = []
    for task in settings.get("tasks") or []:
        for candidate in (task, (task.get("for_each_task") or {}).get("task") or {}):
            spec = candidate.get("run_job_task")
            if isinstance(spec, Mapping):
                try:
                    out.append(int(spec.get("job_id")))
                except (TypeError, ValueError):
                    pass
    return out


def _cycle_message(cycle: list[int], store: Store) -> str:
    def label(job_id: int) -> str:
        row = store.get_job(job_id)
        return f"job {job_id} ({row['name']!r})" if row else f"job {job_id}"
    path = " → ".join(label(j) for j in cycle)
    return (f"run_job_task cycle: {path}. Jobs cannot call each other in a loop; remove one of these "
            "run_job_tasks.")
