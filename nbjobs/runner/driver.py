"""Drive one job run on an asyncio loop: ask the planner what is ready, start it, record results.

The loop lives here: planning, starting ready tasks (an `instant` kind, such as a condition, runs
inline without a slot or a thread), the queue at ``max_concurrent_runs``, cancel requests (polled
from the store, so a run executing in another process can be canceled), the job's timeout_seconds,
health rules (``RUN_DURATION_SECONDS``: a ``duration_warning`` event) and recording results. Stopping
a task means cancelling its coroutine: the compute kills the kernel or subprocess, then re-raises
CancelledError. One attempt of a task, its retries and timeout: `attempts`.
"""
from __future__ import annotations

import asyncio
import os
import traceback
from typing import Callable

from .._aio import set_threadsafe
from .._gc import gc_paused, paused, run_ended, run_started
from ..events import EventBus, RunEvent
from ..plan import JobGraph, Planner, Step
from ..spec import JobSettings, Task
from ..states import LifeCycleState, ResultState, life_cycle_for
from ..store import Store, now_ms
from ..tasks.registry import kind_of
from .attempts import Attempts
from .units import ChildRuns, Unit, interrupted, plan_task, skip_message

POLL_SECONDS = 0.25  # how often a driver looks for cancel requests, queue slots and the job timeout
INSTANT_STRETCH = 1000  # ready tasks handled per garbage-collector pause (conditions run inline)


class RunDriver(Attempts):
    """Executes the pending task runs of one run (the whole run, or the tasks a repair selected).
    Once built, it must be `run()` (which ends what `__init__` started)."""

    @gc_paused(keep=True)  # its rows, models and plan live as long as the run
    def __init__(self, store: Store, run_id: int, settings: JobSettings, *, concurrency: int | None = None,
                 events: EventBus | None = None, done: dict[str, tuple[ResultState, str | None]] | None = None,
                 repair_id: int | None = None, child_runs: ChildRuns | None = None,
                 poll_seconds: float = POLL_SECONDS):
        from ..store.batched import BatchedRunStore
        self.store = store = BatchedRunStore(store, run_id)  # state written in batches, task rows read from memory
        self.run_id = run_id
        self.settings = settings
        self.tasks: dict[str, Task] = {t.task_key: t for t in settings.tasks}
        self.kinds = {key: kind_of(task) for key, task in self.tasks.items()}  # TaskKind (None: not runnable)
        self.graph = JobGraph(plan_task(t) for t in settings.tasks)
        self.concurrency = max(1, concurrency or os.cpu_count() or 1)
        self.events = events
        self.done = done or {}
        self.repair_id = repair_id
        self.child_runs = child_runs
        self.poll_seconds = poll_seconds
        run = store.get_run(run_id)
        self.run_row = run
        self.job_parameters = {p["name"]: p["value"] for p in run["job_parameters"]}
        self.task_run_ids = store.latest_task_run_ids()  # {task_key: its latest top-level task run}
        self.run_dir = store.runs_dir / str(run_id)
        from ..compute.run import RunCompute
        self.compute = RunCompute(settings, home=store.home, done=self.done)  # started with the run
        # control state
        self._units: dict[int, Unit] = {}          # by current task run id
        self._cancel_seen = 0  # a new run and a new repair start with no cancel request
        self._handled_task_cancels: set[int] = set()
        self._pre_canceled: set[str] = set()
        self._user_canceled = False
        self._halt: tuple[ResultState, str] | None = None
        self._halt_applied = False
        self._started_ms = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poke: asyncio.Event | None = None
        self._durations = duration_thresholds(settings)  # health rules: {None (the run) or task_key: seconds}
        self._duration_warned: set[str | None] = set()
        run_started()

    # -- events -------------------------------------------------------------------------------
    def _emit(self, kind: str, **kw) -> None:
        """Publish an event (delivered off this loop by the bus; built only when someone listens)."""
        events = self.events
        if events is not None and events.wants(self.run_id):
            events.publish(RunEvent(kind=kind, run_id=self.run_id, **kw))

    def poke(self) -> None:
        """Look for cancel requests now (thread-safe; the store flag is what counts)."""
        set_threadsafe(self._loop, self._poke)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when poked."""
        if self._poke is None:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(self._poke.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self._poke.clear()

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> dict:
        """Execute the run (or repair) to its end; its runs row."""
        try:
            return await self._run()
        finally:
            run_ended()

    async def _run(self) -> dict:
        self._loop = asyncio.get_running_loop()
        self._poke = asyncio.Event()
        row = self.store.get_run(self.run_id)
        if LifeCycleState(row["life_cycle_state"]).is_terminal:  # skipped at the concurrency limit
            self._emit("run_end", life_cycle_state=row["life_cycle_state"], result_state=row["result_state"],
                       message=row["state_message"], row=row)
            return row
        try:
            admitted = await self._wait_in_queue()
        except BaseException as exc:
            self._cancel_remaining(interrupted(exc))
            raise
        if not admitted:
            return self.store.get_run(self.run_id)
        self.run_row = self.store.get_run(self.run_id)
        count, _ = self.store.cancel_requests(self.run_id)
        if count > self._cancel_seen:  # canceled before it started
            return self._end_unstarted("Canceled by request before it started.")

        self._started_ms = now_ms()
        self.store.update_run(self.run_id, life_cycle_state="RUNNING")
        if self.repair_id is not None:
            self.store.update_repair(self.repair_id, life_cycle_state="RUNNING")
        self._emit("run_start", life_cycle_state="RUNNING")
        self.compute.start()  # pre-start kernels (and job clusters) without waiting
        planner = Planner(self.graph, done=self.done)
        semaphore = asyncio.Semaphore(self.concurrency)
        running: dict[asyncio.Future, Unit] = {}
        ready: list[str] = []

        def apply(step: Step, message: str | None = None) -> None:
            if step.skipped:
                self._record_skips(step.skipped, message)
                for key in step.skipped:
                    self.compute.task_finished(key)
            ready.extend(step.ready)

        def finish(key: str, result: ResultState, outcome: str | None = None) -> None:
            self.compute.task_finished(key)  # a job cluster no other task needs closes now
            apply(planner.finish(key, result, outcome))

        watcher = asyncio.ensure_future(self._watch())
        try:
            apply(planner.start())
            while True:
                if self._halt is not None and not self._halt_applied:
                    self._halt_applied = True
                    apply(planner.cancel(), "Not run: the run timed out.")
                while ready:
                    with paused():  # a stretch of at most INSTANT_STRETCH tasks started or run at once
                        for _ in range(INSTANT_STRETCH):
                            if not ready:
                                break
                            await self._start_ready(ready.pop(0), finish, semaphore, running)
                if not running:
                    break
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for fut in finished:
                    unit = running.pop(fut)
                    outcome = self._finish_stopped(unit) if fut.cancelled() else fut.result()
                    finish(unit.key, outcome.result, outcome.outcome)
        except BaseException as exc:  # Ctrl-C or cancellation: stop the tasks, nothing stays half-running
            for fut in running:
                fut.cancel()
            if running:
                try:
                    await asyncio.wait(running, timeout=30)
                except BaseException:
                    pass
            self._cancel_remaining(interrupted(exc))
            raise
        finally:
            watcher.cancel()
            await self.compute.close()  # job clusters started for this run
            await asyncio.wait([watcher])  # ended: it no longer holds the driver (and its rows) alive
        return self._finish_run(planner)

    async def _start_ready(self, key: str, finish: Callable[..., None], semaphore: asyncio.Semaphore,
                           running: dict[asyncio.Future, Unit]) -> None:
        """Start a ready task; a condition (instant: no slot, no thread) runs here and now."""
        if self._halt is not None:  # the run timed out: nothing new starts
            self._end_row(self.task_run_ids[key], ResultState.CANCELED, "Not run: the run timed out.", emit_key=key)
            finish(key, ResultState.CANCELED)
            return
        if key in self._pre_canceled:
            self._end_row(self.task_run_ids[key], ResultState.CANCELED, "Canceled by request before it started.",
                          emit_key=key)
            finish(key, ResultState.CANCELED)
            return
        unit = self._new_unit(key)
        if unit.kind is not None and unit.kind.instant:
            outcome = await self._run_unit(unit, None)  # never waits: no other coroutine runs meanwhile
            finish(key, outcome.result, outcome.outcome)
            return
        unit.future = asyncio.ensure_future(self._run_unit(unit, semaphore))
        running[unit.future] = unit

    def _new_unit(self, key: str) -> Unit:
        task_run_id = self.task_run_ids[key]
        unit = Unit(driver=self, kind=self.kinds[key], key=key, task=self.tasks[key], task_run_id=task_run_id,
                    first_id=task_run_id)
        self._units[task_run_id] = unit
        return unit

    async def _wait_in_queue(self) -> bool:
        """Wait while the run is QUEUED; False when it ended meanwhile (canceled)."""
        row = self.store.get_run(self.run_id)
        if row["life_cycle_state"] != "QUEUED":
            return True
        self._emit("run_queued", life_cycle_state="QUEUED", message=row["state_message"], row=row)
        while True:
            count, _ = self.store.cancel_requests(self.run_id)
            if count > self._cancel_seen:
                self._end_unstarted("Canceled by request while queued.")
                return False
            state = self.store.try_admit(self.run_id, self._max_concurrent_runs())
            if state != "QUEUED":
                return state == "PENDING"
            await self._sleep(self.poll_seconds)

    def _end_unstarted(self, message: str) -> dict:
        self.store.end_run(self.run_id, life_cycle_state="TERMINATED", result_state="CANCELED", message=message)
        row = self.store.get_run(self.run_id)
        self._emit("run_end", life_cycle_state="TERMINATED", result_state="CANCELED", message=message, row=row)
        return row

    def _job_limits(self) -> dict:
        """The job's current timeout_seconds and max_concurrent_runs (a change applies to active
        runs); the run's own for a run without a job (runs/submit) or whose job was deleted."""
        job_id = self.run_row.get("job_id")
        limits = self.store.job_limits(job_id) if job_id is not None else None
        if limits is None:
            limits = {"timeout_seconds": self.settings.timeout_seconds,
                      "max_concurrent_runs": self.settings.max_concurrent_runs}
        return limits

    def _max_concurrent_runs(self) -> int:
        value = self._job_limits()["max_concurrent_runs"]
        return 1 if value is None else int(value)

    # -- watching for requests ----------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await self._sleep(self.poll_seconds)
            try:
                self._check_requests()
            except Exception:  # e.g. the database is busy: try again at the next poll
                traceback.print_exc()

    def _check_requests(self) -> None:
        count, task_ids = self.store.cancel_requests(self.run_id)
        if count > self._cancel_seen:
            self._cancel_seen = count
            self._user_canceled = True
            self._stop(list(self._units.values()), ResultState.CANCELED, "Canceled: the run was canceled by request.")
        for task_run_id in task_ids:
            if task_run_id in self._handled_task_cancels:
                continue
            self._handled_task_cancels.add(task_run_id)
            unit = self._units.get(task_run_id)
            if unit is not None:
                self._stop([unit], ResultState.CANCELED, f"Canceled: task run {task_run_id} was canceled by request.")
            else:
                key = next((k for k, v in self.task_run_ids.items() if v == task_run_id), None)
                if key is not None:
                    self._pre_canceled.add(key)
        timeout = int(self._job_limits()["timeout_seconds"] or 0)
        if timeout > 0 and self._halt is None and now_ms() - self._started_ms >= timeout * 1000:
            message = f"Timed out: the run exceeded the job's timeout_seconds ({timeout} s)."
            self._halt = (ResultState.TIMEDOUT, message)
            self._stop(list(self._units.values()), ResultState.TIMEDOUT, message)
        if self._durations:
            self._check_durations()

    def _check_durations(self) -> None:
        """Publish `duration_warning` once per health rule RUN_DURATION_SECONDS GREATER_THAN n passed
        while the run (or the task's attempt) is still going."""
        now = now_ms()
        starts = {}
        if any(key is not None for key in self._durations):
            starts = {u.key: (u.started_ms, u.task_run_id) for u in self._units.values()
                      if not u.is_iteration and u.started_ms}
        for key, seconds in self._durations.items():
            if key in self._duration_warned:
                continue
            started, task_run_id = (self._started_ms, None) if key is None else starts.get(key, (0, None))
            if not started or now - started <= seconds * 1000:
                continue
            self._duration_warned.add(key)
            rule = f"health rule RUN_DURATION_SECONDS GREATER_THAN {seconds}"
            what = "The run" if key is None else f"Task '{key}'"
            self._emit("duration_warning", task_key=key, task_run_id=task_run_id, life_cycle_state="RUNNING",
                       message=f"{what} has been running for more than {seconds} s ({rule}).")

    def _stop(self, units: list[Unit], result: ResultState, message: str) -> None:
        for unit in units:
            if unit.stop is None and unit.future is not None and not unit.future.done():
                unit.stop = (result, message)
                unit.future.cancel()

    # -- finishing ------------------------------------------------------------------------------
    def _finish_run(self, planner: Planner) -> dict:
        if self._halt is not None:
            result, message = self._halt
        elif self._user_canceled:
            result, message = ResultState.CANCELED, "Canceled by request."
        else:
            result = planner.job_result()
            failed = sorted(k for k, r in planner.results.items() if r.is_failure or r.is_canceled)
            message = ""
            if result is not ResultState.SUCCESS and failed:
                message = f"Task{'s' if len(failed) > 1 else ''} {', '.join(failed)} did not succeed"
        end = now_ms()
        if self.repair_id is not None:
            self.store.update_repair(self.repair_id, life_cycle_state="TERMINATED", result_state=str(result),
                                     end_time=end)
        self.store.update_run(self.run_id, life_cycle_state="TERMINATED", result_state=str(result),
                              state_message=message, end_time=end)
        row = self.store.get_run(self.run_id)
        self._emit("run_end", life_cycle_state="TERMINATED", result_state=str(result), message=message, row=row)
        return row

    def _record_skips(self, skipped: dict[str, ResultState], message: str | None = None) -> None:
        now = now_ms()
        changes = {}
        for key, result in skipped.items():
            changes[self.task_run_ids[key]] = dict(
                life_cycle_state=str(life_cycle_for(result)), result_state=str(result),
                state_message=message or skip_message(result), start_time=now, end_time=now)
        self.store.update_task_runs(changes)
        for key, result in skipped.items():
            self._emit("task_end", task_key=key, task_run_id=self.task_run_ids[key],
                       life_cycle_state=str(life_cycle_for(result)), result_state=str(result),
                       message=message or skip_message(result))

    def _cancel_remaining(self, message: str) -> None:
        self.store.end_run(self.run_id, life_cycle_state="TERMINATED", result_state="CANCELED", message=message)

    def _end_row(self, task_run_id: int, result: ResultState, message: str, *, emit_key: str | None = None,
                 **extra) -> dict:
        fields = dict(life_cycle_state="TERMINATED", result_state=str(result), state_message=message,
                      end_time=now_ms(), **extra)
        row = self.store.get_task_run(task_run_id)
        if row is not None and not row.get("start_time"):
            fields["start_time"] = fields["end_time"]
        self.store.update_task_run(task_run_id, **fields)
        if emit_key is not None:
            self._emit("task_end", task_key=emit_key, task_run_id=task_run_id, life_cycle_state="TERMINATED",
                       result_state=str(result), message=message, row=self.store.get_task_run(task_run_id))
        return fields


def duration_thresholds(settings: JobSettings) -> dict[str | None, int]:
    """The RUN_DURATION_SECONDS GREATER_THAN thresholds of the job's (key None) and its tasks' health
    rules (databricks-sdk `jobs.JobsHealthRules`); the lowest when several apply."""
    out: dict[str | None, int] = {}
    for key, health in [(None, settings.health)] + [(t.task_key, t.health) for t in settings.tasks]:
        rules = health.get("rules") if isinstance(health, dict) else None
        for rule in rules if isinstance(rules, list) else ():
            if (isinstance(rule, dict) and rule.get("metric") == "RUN_DURATION_SECONDS"
                    and rule.get("op") == "GREATER_THAN" and isinstance(rule.get("value"), int)):
                out[key] = min(out.get(key, rule["value"]), rule["value"])
    return out

