"""Starting and executing runs: jobs/run-now, runs/submit, waiting for a run and following its events."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from .._gc import gc_paused
from ..engine import RunEngine
from ..errors import InvalidParameterValue
from ..events import EventBus, EventHandler
from ..follow import RunFollower, poll_run
from ..refs import ReferenceResolutionError, RefContext, resolve
from ..runner import RunDriver
from ..spec import JobSettings
from ..store import ACTIVE_STATES, Store, TokenOfDeletedRun, utc_from_ms
from .recovery import recover_orphans
from ..tasks.run_job import called_job_ids


class RunsMixin:
    """The run verbs of `Workspace` that start, execute and wait for runs."""

    store: Store
    user: str
    concurrency: int | None
    events: EventBus
    _engine: RunEngine | None
    _validated: dict[int, JobSettings]
    _drivers: dict[int, RunDriver | None]

    def start_run(self, job_id: int, job_parameters: Mapping[str, str] | None = None, *,
                  trigger: str = "ONE_TIME", trigger_time: int | None = None,
                  idempotency_token: str | None = None, only: Iterable[str] | str | None = None,
                  queue: Mapping[str, Any] | bool | None = None, parent_task_run_id: int | None = None,
                  trigger_info: Mapping[str, Any] | None = None) -> int:
        """Create a run of the job's current settings with resolved job parameters.

        At the job's `max_concurrent_runs` the run is QUEUED (queue enabled) or ends SKIPPED with
        MAXIMUM_CONCURRENT_RUNS_REACHED; otherwise it is PENDING. An `idempotency_token` already used
        by a run of this job returns that run's id and starts nothing. `only` runs a subset of tasks
        (`key`, `+key` with its upstream, `key+` with its downstream). `trigger_info`: what triggered it
        (a file arrival's `file_arrival_location`)."""
        return self._start_run(job_id, job_parameters, trigger=trigger, trigger_time=trigger_time,
                               idempotency_token=idempotency_token, only=only, queue=queue,
                               parent_task_run_id=parent_task_run_id, trigger_info=trigger_info)[0]

    def _create_run(self, **kwargs) -> tuple[int, dict[str, int] | None]:
        try:
            return self.store.create_run(**kwargs)
        except TokenOfDeletedRun as exc:
            raise InvalidParameterValue(str(exc)) from None

    @gc_paused(keep=True)  # the run's validated settings live as long as the run
    def _start_run(self, job_id, job_parameters=None, *, trigger="ONE_TIME", trigger_time=None,
                   idempotency_token=None, only=None, queue=None, parent_task_run_id=None,
                   trigger_info=None) -> tuple[int, bool]:
        """start_run; the bool says whether a new run was created (False: idempotency_token reuse)."""
        from ..plan import JobGraph, select_only
        from ..runner import plan_task
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
            only=sorted(selected) if selected is not None else None, parent_task_run_id=parent_task_run_id,
            trigger_info=dict(trigger_info) if trigger_info else None)
        if ids is None:
            return run_id, False
        if selected is None:  # the run's settings are the job's, just validated: execute_run reuses them
            self._validated[run_id] = settings
            while len(self._validated) > 64:
                self._validated.pop(next(iter(self._validated)))
        run = self.store.get_run(run_id)
        ctx = RefContext(job_id=row["job_id"], job_name=row["name"], run_id=run_id,
                         start_time=utc_from_ms(run["start_time"]), trigger_type=trigger.lower(),
                         trigger_time=utc_from_ms(run["trigger_time"]),
                         file_arrival_location=(trigger_info or {}).get("file_arrival_location"))
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
        driver = watch = None
        subscription = self.events.subscribe(on_event, run_id=run_id) if on_event is not None else None
        try:
            settings = self._validated.pop(run_id, None) if repair_id is None else None
            if settings is None:
                settings = JobSettings.model_validate(self._run_row(run_id)["settings"])
            from ..notify.notifier import watch_run  # notifications of this execution (none asked: None)
            watch = watch_run(self.store.home, run_id, settings)
            driver = RunDriver(self.store, run_id, settings, concurrency=concurrency or self.concurrency,
                               events=self.events, done=dict(done) if done else None, repair_id=repair_id,
                               child_runs=_ChildRuns(self, concurrency))
            self._drivers[run_id] = driver
            await driver.run()
        finally:
            if self._drivers.get(run_id) in (None, driver):
                self._drivers.pop(run_id, None)
            if watch is not None:
                watch.release()
            if subscription is not None:  # the caller's handler has seen every event when this returns
                await asyncio.to_thread(subscription.close)
        del driver, settings  # its rows and task models are freed before runs/get builds its answer
        return self.get_run(run_id)

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
            return self.wait(run_id, on_event=on_event) if wait else {"run_id": run_id, "number_in_job": run_id}
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

    def submit_run(self, body: Mapping[str, Any], *, wait: bool = False, base_dir: Path | None = None,
                   on_event: EventHandler | None = None) -> dict:
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
        model = self._settings(settings, base_dir)
        tasks = [(t.task_key, t.model_dump(exclude_none=True)) for t in model.tasks]
        run_id, created = self._create_run(
            job_id=None, settings=model.to_dict(), job_parameters=[], run_name=run_name, tasks=tasks,
            run_type="SUBMIT_RUN", creator=self.user, idempotency_token=token)
        if created is None:  # the idempotency_token's run
            return self.wait(run_id, on_event=on_event) if wait else {"run_id": run_id}
        result = self.execute(run_id, wait=wait, on_event=on_event)
        return result if wait else {"run_id": run_id}

    def wait(self, run_id: int, timeout: float | None = None, *, on_event: EventHandler | None = None) -> dict:
        """Wait for a run (or its latest repair) to end, also one executing in another process; its
        runs/get JSON (still active if `timeout` seconds passed first). `on_event` gets the run's events
        meanwhile: from the event bus for a run executing in this process (every kind), else derived
        from runs/get (task_start, task_end, run_end), as `nbjobs.client.Client.wait` does."""
        if on_event is None:
            return self._wait(run_id, timeout)
        follower = RunFollower(int(run_id), on_event)
        if int(run_id) not in self._drivers:  # executing in another process (or ended)
            return poll_run(self.get_run, int(run_id), timeout=timeout, follower=follower, interval=0.1,
                            tick=lambda _run: self._recover_if_orphaned(int(run_id)))
        subscription = follower.attach(lambda handler: self.events.subscribe(handler, run_id=int(run_id)),
                                       lambda: self.get_run(run_id))
        try:
            run = self._wait(run_id, timeout)
        finally:
            subscription.close()  # after delivering what was published
        follower.update(run)
        return run

    def _wait(self, run_id: int, timeout: float | None) -> dict:
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
            self._recover_if_orphaned(row)
            time.sleep(0.1)
        return self.get_run(run_id)

    def _recover_if_orphaned(self, run: dict | int) -> None:
        """An active run whose process is gone ends INTERNAL_ERROR (Store.recover_orphans)."""
        row = self._run_row(run) if isinstance(run, int) else run
        if row["life_cycle_state"] in ACTIVE_STATES and row.get("pid") not in (None, os.getpid()) \
                and not self._driven(row):
            recover_orphans(self.store)

    # -- run_job_task helpers -------------------------------------------------------------------
    def _run_job_cycle(self, job_id: int, settings: Mapping[str, Any] | None = None) -> list[int] | None:
        """A loop of run_job_tasks reachable from `job_id` (as job ids, closed), or None.
        `settings`: the job's, when the caller has them already."""
        from ..plan import find_cycle
        calls: dict[int, list[int]] = {}
        if settings is not None:
            calls[int(job_id)] = called_job_ids(settings)
        todo = list(calls.get(int(job_id), [int(job_id)]))
        while todo:
            current = todo.pop()
            if current in calls:
                continue
            row = self.store.get_job(current)
            calls[current] = called_job_ids(row["settings"]) if row else []
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


class _ChildRuns:
    """What a run-job task uses to start and await another job's run (trigger RUN_JOB_TASK)."""

    def __init__(self, workspace: Any, concurrency: int | None):
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


def _cycle_message(cycle: list[int], store: Store) -> str:
    def label(job_id: int) -> str:
        row = store.get_job(job_id)
        return f"job {job_id} ({row['name']!r})" if row else f"job {job_id}"
    path = " → ".join(label(j) for j in cycle)
    return (f"run_job_task cycle: {path}. Jobs cannot call each other in a loop; remove one of these "
            "run_job_tasks.")
