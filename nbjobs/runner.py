"""Drive one job run on an asyncio loop: ask the planner what is ready, start it, record results.

Control flow lives here: retries (``plan.retry_delay``), task and job timeouts, cancel requests
(polled from the store, so a run executing in another process can be canceled), the queue at
``max_concurrent_runs``, for-each iterations and run-job children. Stopping a task means cancelling
its coroutine: the executors kill the kernel or subprocess, then re-raise CancelledError.
"""
from __future__ import annotations

import asyncio
import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

from ._gc import gc_paused, paused, run_ended, run_started
from .plan import Dependency, JobGraph, PlanTask, Planner, RetryPolicy, Step, iterations_to_reuse, retry_delay
from .refs import MISSING, ReferenceResolutionError, RefContext, TaskRefState, resolve_all, value_of
from .events import EventBus, EventHandler, RunEvent  # noqa: F401 (RunEvent, EventHandler re-exported)
from .spec import JobSettings, Task
from .states import LifeCycleState, ResultState, RunIf, life_cycle_for
from .store import Store, now_ms, utc_from_ms

POLL_SECONDS = 0.25  # how often a driver looks for cancel requests, queue slots and the job timeout
INSTANT_STRETCH = 1000  # ready tasks handled per garbage-collector pause (conditions run inline)


class ChildRuns(Protocol):
    """How a run-job task starts and awaits another job's run (the service implements it)."""

    def start(self, job_id: int, job_parameters: dict[str, str], parent_task_run_id: int) -> int: ...

    def execute(self, run_id: int) -> Awaitable[dict]: ...


@dataclass
class _Outcome:
    result: ResultState
    fields: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None


@dataclass(eq=False)
class _Unit:
    """A started task (or one for-each iteration) across its attempts."""
    key: str                       # the job task it belongs to (the for-each task for an iteration)
    task: Task                     # what runs (the nested task for an iteration)
    task_run_id: int               # the current attempt's task run
    parent: int | None = None      # the for-each task run of an iteration
    index: int | None = None       # the iteration index
    input: Any = MISSING           # the iteration's element
    attempt: int = 0
    first_id: int = 0
    future: asyncio.Future | None = None
    stop: tuple[ResultState, str] | None = None
    loop_unit: "_Unit | None" = None    # an iteration's for-each
    iterations: dict[int, dict] | None = None  # a for-each's iteration states (for its stats)

    @property
    def is_iteration(self) -> bool:
        return self.parent is not None


def plan_task(task: Task) -> PlanTask:
    return PlanTask(
        task_key=task.task_key,
        depends_on=tuple(Dependency(d.task_key, d.outcome) for d in task.depends_on or ()),
        run_if=RunIf(task.run_if or "ALL_SUCCESS"),
        disabled=bool(task.disabled),
    )


def retry_policy(task: Task) -> RetryPolicy:
    return RetryPolicy(max_retries=task.max_retries or 0,
                       min_retry_interval_millis=task.min_retry_interval_millis or 0,
                       retry_on_timeout=bool(task.retry_on_timeout),
                       retryable=task.condition_task is None and task.for_each_task is None)


class RunDriver:
    """Executes the pending task runs of one run (the whole run, or the tasks a repair selected).
    Once built, it must be `run()` (which ends what `__init__` started)."""

    @gc_paused(keep=True)  # its rows, models and plan live as long as the run
    def __init__(self, store: Store, run_id: int, settings: JobSettings, *, concurrency: int | None = None,
                 events: EventBus | None = None, done: dict[str, tuple[ResultState, str | None]] | None = None,
                 repair_id: int | None = None, child_runs: ChildRuns | None = None,
                 poll_seconds: float = POLL_SECONDS):
        from .store.batched import BatchedRunStore
        self.store = store = BatchedRunStore(store, run_id)  # state written in batches, task rows read from memory
        self.run_id = run_id
        self.settings = settings
        self.tasks: dict[str, Task] = {t.task_key: t for t in settings.tasks}
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
        from .compute.run import RunCompute
        self.compute = RunCompute(settings, home=store.home, done=self.done)  # started with the run
        # control state
        self._units: dict[int, _Unit] = {}          # by current task run id
        self._cancel_seen = 0  # a new run and a new repair start with no cancel request
        self._handled_task_cancels: set[int] = set()
        self._pre_canceled: set[str] = set()
        self._user_canceled = False
        self._halt: tuple[ResultState, str] | None = None
        self._halt_applied = False
        self._started_ms = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poke: asyncio.Event | None = None
        run_started()

    # -- events -------------------------------------------------------------------------------
    def _emit(self, kind: str, **kw) -> None:
        """Publish an event (delivered off this loop by the bus; built only when someone listens)."""
        events = self.events
        if events is not None and events.wants(self.run_id):
            events.publish(RunEvent(kind=kind, run_id=self.run_id, **kw))

    def poke(self) -> None:
        """Look for cancel requests now (thread-safe; the store flag is what counts)."""
        loop, event = self._loop, self._poke
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass

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
            self._cancel_remaining(_interrupted(exc))
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
        running: dict[asyncio.Future, _Unit] = {}
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
            self._cancel_remaining(_interrupted(exc))
            raise
        finally:
            watcher.cancel()
            await self.compute.close()  # job clusters started for this run
            await asyncio.wait([watcher])  # ended: it no longer holds the driver (and its rows) alive
        return self._finish_run(planner)

    async def _start_ready(self, key: str, finish: Callable[..., None], semaphore: asyncio.Semaphore,
                           running: dict[asyncio.Future, _Unit]) -> None:
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
        if self.tasks[key].condition_task is not None:
            outcome = await self._run_unit(unit, None)  # never waits: no other coroutine runs meanwhile
            finish(key, outcome.result, outcome.outcome)
            return
        unit.future = asyncio.ensure_future(self._run_unit(unit, semaphore))
        running[unit.future] = unit

    def _new_unit(self, key: str) -> _Unit:
        task_run_id = self.task_run_ids[key]
        unit = _Unit(key=key, task=self.tasks[key], task_run_id=task_run_id, first_id=task_run_id)
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

    def _stop(self, units: list[_Unit], result: ResultState, message: str) -> None:
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
                state_message=message or _skip_message(result), start_time=now, end_time=now)
        self.store.update_task_runs(changes)
        for key, result in skipped.items():
            self._emit("task_end", task_key=key, task_run_id=self.task_run_ids[key],
                       life_cycle_state=str(life_cycle_for(result)), result_state=str(result),
                       message=message or _skip_message(result))

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

    def _finish_stopped(self, unit: _Unit) -> _Outcome:
        """Record a stopped unit (canceled or timed out): its current task run ends with that result."""
        result, message = unit.stop or (ResultState.CANCELED, "Canceled.")
        extra = self._files(unit)
        if result is ResultState.TIMEDOUT:
            extra["error"] = message
        fields = self._end_row(unit.task_run_id, result, message, **extra)
        self._units.pop(unit.task_run_id, None)
        self._unit_ended(unit, result, message)
        return _Outcome(result, fields)

    def _files(self, unit: _Unit) -> dict:
        folder = self.run_dir / f"{unit.task.task_key}-{unit.task_run_id}"
        out = {}
        if (folder / "notebook.ipynb").exists():
            out["output_path"] = str(folder / "notebook.ipynb")
        if (folder / "logs.txt").exists():
            out["logs_path"] = str(folder / "logs.txt")
        return out

    # -- one task (or iteration), across its attempts ---------------------------------------------
    async def _run_unit(self, unit: _Unit, semaphore: asyncio.Semaphore | None) -> _Outcome:
        acquired = False
        try:
            if semaphore is not None:
                await semaphore.acquire()
                acquired = True
            policy = retry_policy(unit.task)
            while True:
                outcome, started = await self._attempt(unit)
                delay = retry_delay(policy, attempt_number=unit.attempt, result=outcome.result, started_ms=started,
                                    now_ms=now_ms())
                if delay is None:
                    self._units.pop(unit.task_run_id, None)
                    self._unit_ended(unit, outcome.result, outcome.fields.get("state_message", ""),
                                     row=self.store.get_task_run(unit.task_run_id))
                    return outcome
                self._retry(unit, outcome, delay)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if unit.stop is None:
                raise
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
            return self._finish_stopped(unit)
        finally:
            if acquired:
                semaphore.release()

    def _retry(self, unit: _Unit, outcome: _Outcome, delay: float) -> None:
        """A failed attempt will be retried: the next attempt's task run waits WAITING_FOR_RETRY."""
        previous = unit.task_run_id
        attempt = unit.attempt + 1
        limit = unit.task.max_retries
        of = "" if limit is None or limit < 0 else f" of {limit}"
        reason = (outcome.fields.get("error") or outcome.fields.get("state_message") or str(outcome.result))
        reason = reason.strip().splitlines()[0] if reason.strip() else str(outcome.result)
        message = f"Waiting for retry {attempt}{of} in {delay:.1f} s; attempt {unit.attempt} ended {outcome.result}: {reason}"
        fields = dict(attempt_number=attempt, life_cycle_state="WAITING_FOR_RETRY", state_message=message,
                      original_attempt_run_id=unit.first_id, repair_id=self.repair_id)
        if unit.is_iteration:
            fields.update(parent_task_run_id=unit.parent, iteration_index=unit.index, input=unit.input)
        new_id = self.store.new_task_run(self.run_id, unit.task.task_key, unit.task.model_dump(exclude_none=True),
                                         **fields)
        self._units.pop(previous, None)
        unit.task_run_id, unit.attempt = new_id, attempt
        self._units[new_id] = unit
        if unit.is_iteration:
            self._iteration_changed(unit, "WAITING_FOR_RETRY", None)
        else:
            self.task_run_ids[unit.key] = new_id
            self._emit("task_retry", task_key=unit.key, task_run_id=new_id, life_cycle_state="WAITING_FOR_RETRY",
                       result_state=str(outcome.result), message=message, attempt_number=attempt,
                       row=self.store.get_task_run(previous))

    def _unit_ended(self, unit: _Unit, result: ResultState, message: str, row: dict | None = None) -> None:
        if unit.is_iteration:
            self._iteration_changed(unit, "TERMINATED", result, message)
        else:
            self._emit("task_end", task_key=unit.key, task_run_id=unit.task_run_id, life_cycle_state="TERMINATED",
                       result_state=str(result), message=message, attempt_number=unit.attempt,
                       row=row or self.store.get_task_run(unit.task_run_id))

    async def _attempt(self, unit: _Unit) -> tuple[_Outcome, int]:
        task, task_run_id = unit.task, unit.task_run_id
        execution_count = self.store.execution_count(
            self.run_id, task.task_key, parent_task_run_id=unit.parent, iteration_index=unit.index) + 1
        start = now_ms()
        self.store.update_task_run(task_run_id, life_cycle_state="RUNNING", start_time=start,
                                   execution_count=execution_count, attempt_number=unit.attempt,
                                   state_message="")  # its task JSON was stored when the task run was made
        if unit.is_iteration:
            self._iteration_changed(unit, "RUNNING", None)
        else:
            self._emit("task_start", task_key=unit.key, task_run_id=task_run_id, life_cycle_state="RUNNING",
                       attempt_number=unit.attempt)
        timeout = int(task.timeout_seconds or 0)
        try:
            work = self._dispatch(unit, execution_count)
            outcome = await (asyncio.wait_for(work, timeout) if timeout > 0 and task.condition_task is None
                             else work)
        except asyncio.TimeoutError:
            message = (f"Timed out after {timeout} s (the task's timeout_seconds); "
                       f"its {'kernel' if task.notebook_task else 'process'} was stopped.")
            outcome = _Outcome(ResultState.TIMEDOUT, dict(error=message, state_message=message, **self._files(unit)))
        except ReferenceResolutionError as exc:
            outcome = _Outcome(ResultState.FAILED, dict(error=str(exc), state_message=str(exc)))
        except Exception as exc:  # a bug of ours must still end the task clearly
            message = f"nbjobs could not run task '{task.task_key}': {type(exc).__name__}: {exc}"
            outcome = _Outcome(ResultState.FAILED, dict(error=message, error_trace=traceback.format_exc(),
                                                         state_message=message))
        fields = dict(outcome.fields)
        fields.setdefault("state_message", fields.get("error") or "")
        fields.update(life_cycle_state="TERMINATED", result_state=str(outcome.result), end_time=now_ms())
        if outcome.outcome is not None:
            fields["condition_outcome"] = outcome.outcome
        values = None if unit.is_iteration else outcome.values  # iterations' values stay in their folder
        self.store.update_task_run(task_run_id, values=values, **fields)
        outcome.fields = fields
        return outcome, start

    # -- references and dispatch --------------------------------------------------------------
    def ref_context(self, key: str, task_run_id: int, execution_count: int, element: Any = MISSING) -> RefContext:
        run = self.run_row
        tasks = _TaskStates(self.store, self.tasks)  # built per task a reference names: O(1), not O(tasks)
        unit = self._units.get(task_run_id)
        task = unit.task if unit is not None else self.tasks[key]
        return RefContext(
            job_id=run["job_id"], job_name=self.settings.name or "Untitled", run_id=self.run_id,
            repair_count=run["repair_count"], start_time=utc_from_ms(run["start_time"]),
            trigger_type=(run["trigger"] or "ONE_TIME").lower(), trigger_time=utc_from_ms(run["trigger_time"]),
            job_parameters=self.job_parameters, task_key=task.task_key, task_run_id=task_run_id,
            execution_count=execution_count,
            notebook_path=task.notebook_task.notebook_path if task.notebook_task else None,
            tasks=tasks, input=element)

    async def _dispatch(self, unit: _Unit, execution_count: int) -> _Outcome:
        task, task_run_id = unit.task, unit.task_run_id
        ctx = self.ref_context(unit.key, task_run_id, execution_count, unit.input)
        if task.condition_task is not None:
            return self._condition(task, ctx)
        if task.notebook_task is not None:
            return await self._notebook(task, task_run_id, ctx)
        if task.spark_python_task is not None:
            return await self._python(task, task_run_id, ctx)
        if task.for_each_task is not None:
            if unit.is_iteration:
                return _Outcome(ResultState.FAILED, dict(error="a for_each_task cannot run another for_each_task"))
            return await self._for_each(unit, ctx)
        if task.run_job_task is not None:
            return await self._run_job(task, task_run_id, ctx)
        kind = task.task_type
        message = f"task '{task.task_key}': nbjobs cannot run {kind} tasks yet"
        return _Outcome(ResultState.FAILED, dict(error=message))

    def _condition(self, task: Task, ctx: RefContext) -> _Outcome:
        from .tasks.condition import ConditionError, evaluate, operand
        cond = task.condition_task
        try:
            left = operand(cond.left, ctx, "left")
            right = operand(cond.right, ctx, "right")
            resolved = {"condition_task": {"left": left, "right": right}}
            outcome = "true" if evaluate(cond.op, left, right) else "false"
        except (ConditionError, ReferenceResolutionError) as exc:
            return _Outcome(ResultState.FAILED, dict(error=str(exc)))
        return _Outcome(ResultState.SUCCESS, dict(resolved_values=resolved), outcome=outcome)

    def _task_context(self, task: Task, task_run_id: int, ctx: RefContext, parameters: dict[str, str]):
        from .kernel.context import TaskContext
        unit = self._units.get(task_run_id)
        key = unit.key if unit is not None else task.task_key   # an iteration sees its for-each's upstream
        upstream = sorted(self.graph.upstream(key))
        values = self.store.task_values(self.run_id)
        run_dir = self.run_dir / f"{task.task_key}-{task_run_id}"
        run_dir.mkdir(parents=True, exist_ok=True)
        return TaskContext(
            job_id=self.run_row["job_id"], job_name=ctx.job_name, run_id=self.run_id, task_key=task.task_key,
            task_run_id=task_run_id, attempt_number=unit.attempt if unit is not None else 0,
            parameters=parameters, upstream_values={k: values[k] for k in upstream if k in values},
            task_keys=list(self.tasks), upstream_tasks=upstream, run_dir=str(run_dir),
            notebook_path=ctx.notebook_path)

    async def _notebook(self, task: Task, task_run_id: int, ctx: RefContext) -> _Outcome:
        from .tasks.notebook import run_notebook_task
        nb = task.notebook_task
        parameters = {k: str(v) for k, v in resolve_all(dict(nb.base_parameters or {}), ctx).items()}
        parameters.update(self.job_parameters)  # job parameters are pushed down and win on the same key
        resolved = {"notebook_task": {"base_parameters": parameters}}
        context = self._task_context(task, task_run_id, ctx, parameters)
        path = Path(nb.notebook_path)
        return await self._on_compute(task, resolved, lambda target: run_notebook_task(
            path, parameters, context, path.parent, backend=target.backend, kernel=target.kernel,
            environment=target.environment))

    async def _python(self, task: Task, task_run_id: int, ctx: RefContext) -> _Outcome:
        from .tasks.python_script import run_python_task
        py = task.spark_python_task
        args = [str(a) for a in resolve_all(list(py.parameters or []), ctx)]
        resolved = {"spark_python_task": {"parameters": args}}
        context = self._task_context(task, task_run_id, ctx, dict(self.job_parameters))
        path = Path(py.python_file)
        return await self._on_compute(task, resolved, lambda target: run_python_task(
            path, args, context, path.parent, backend=target.backend, kernel=target.kernel,
            environment=target.environment))

    async def _on_compute(self, task: Task, resolved: dict, execute: Callable[[Any], Awaitable[Any]]) -> _Outcome:
        """Run an executor on the task's compute (nbjobs.compute); the store records which compute ran it."""
        from .compute import ComputeError
        try:
            target = await self.compute.target(task)
        except ComputeError as exc:
            message = f"task '{task.task_key}': {exc}"
            return _Outcome(ResultState.FAILED, dict(error=message, resolved_values=resolved,
                                                     compute=self.compute.describe(task)))
        try:
            output = await execute(target)
        finally:
            await self.compute.release(target)
        outcome = _from_output(output, resolved)
        outcome.fields["compute"] = output.compute or target.label
        return outcome

    # -- run-job tasks ----------------------------------------------------------------------------
    async def _run_job(self, task: Task, task_run_id: int, ctx: RefContext) -> _Outcome:
        spec = task.run_job_task
        params = {k: str(v) for k, v in resolve_all(dict(spec.job_parameters or {}), ctx).items()}
        resolved = {"run_job_task": {"job_parameters": params}}
        if self.child_runs is None:
            return _Outcome(ResultState.FAILED, dict(
                error="run_job_task needs a workspace to start the other job's run", resolved_values=resolved))
        try:
            child_id = self.child_runs.start(int(spec.job_id), params, task_run_id)
        except Exception as exc:  # unknown job, bad parameters, a cycle: the task fails with the reason
            message = f"run_job_task could not start job {spec.job_id}: {exc}"
            return _Outcome(ResultState.FAILED, dict(error=message, resolved_values=resolved))
        self.store.update_task_run(task_run_id, child_run_id=child_id)
        child = await self.child_runs.execute(child_id)
        state = child.get("state", {})
        result = state.get("result_state") or state.get("life_cycle_state")
        if result in ("SUCCESS", "SUCCESS_WITH_FAILURES"):
            return _Outcome(ResultState.SUCCESS, dict(resolved_values=resolved,
                                                      state_message=f"Run {child_id} of job {spec.job_id}: {result}"))
        detail = state.get("state_message") or ""
        message = (f"Run {child_id} of job {spec.job_id} ('{child.get('run_name', '')}') ended {result}"
                   + (f": {detail}" if detail else ""))
        return _Outcome(ResultState.FAILED, dict(error=message, resolved_values=resolved))

    # -- for-each tasks ---------------------------------------------------------------------------
    async def _for_each(self, unit: _Unit, ctx: RefContext) -> _Outcome:
        from .tasks.for_each import ForEachInputError, concurrency_of, parse_inputs, summary
        task, task_run_id = unit.task, unit.task_run_id
        loop = task.for_each_task
        try:
            items = parse_inputs(value_of(loop.inputs, ctx), loop.inputs)
        except (ForEachInputError, ReferenceResolutionError) as exc:
            return _Outcome(ResultState.FAILED, dict(error=str(exc)))
        nested = loop.task
        nested_json = nested.model_dump(exclude_none=True)

        # a rerun (repair or retry) keeps the iterations that succeeded with the same input
        keep: dict[int, dict] = {}
        previous, children = None, {}
        for row in self.store.previous_task_runs(self.run_id, task.task_key, before=task_run_id):
            found = self.store.child_task_runs(row["task_run_id"])
            if found:  # the newest earlier task run that ran iterations (not one that was skipped)
                previous, children = row, {r["iteration_index"]: r for r in found}
                break
        if previous is not None and previous.get("result_state"):
            states = {i: (r.get("input"), ResultState(r["result_state"])) for i, r in children.items()
                      if r.get("result_state")}
            reuse = iterations_to_reuse(states, items, previous_succeeded=previous["result_state"] == "SUCCESS")
            keep = {i: children[i] for i in reuse}
            self.store.move_task_runs([r["task_run_id"] for r in keep.values()], task_run_id)

        todo = [i for i in range(len(items)) if i not in keep]
        ids = self.store.new_task_runs(self.run_id, [
            (nested.task_key, nested_json, dict(parent_task_run_id=task_run_id, iteration_index=i, input=items[i],
                                                repair_id=self.repair_id)) for i in todo])
        unit.iterations = {i: dict(life_cycle_state=r["life_cycle_state"], result_state=r["result_state"],
                                   error=r.get("error"), iteration_index=i, input=r.get("input"))
                           for i, r in keep.items()}
        semaphore = asyncio.Semaphore(concurrency_of(loop.concurrency))
        children: dict[asyncio.Future, _Unit] = {}
        for index, child_id in zip(todo, ids):
            child = _Unit(key=unit.key, task=nested, task_run_id=child_id, first_id=child_id, parent=task_run_id,
                          index=index, input=items[index], loop_unit=unit)
            unit.iterations[index] = dict(life_cycle_state="PENDING", result_state=None, error=None,
                                          iteration_index=index, input=items[index])
            self._units[child_id] = child
            child.future = asyncio.ensure_future(self._run_unit(child, semaphore))
            children[child.future] = child
        self._progress(unit)
        try:
            if children:
                await asyncio.wait(children)
        except asyncio.CancelledError:  # the for-each was stopped: stop its iterations and their kernels
            reason = unit.stop or (ResultState.CANCELED, "Canceled: its for-each task was stopped "
                                                         "(canceled or timed out).")
            for fut, child in children.items():
                if not fut.done():
                    if child.stop is None:
                        child.stop = reason
                    fut.cancel()
            await asyncio.wait(children, timeout=30)
            for fut, child in children.items():
                if fut.cancelled():
                    self._finish_stopped(child)
            raise
        for fut, child in children.items():
            if fut.cancelled():
                self._finish_stopped(child)
        rows = self.store.child_task_runs(task_run_id)
        message = summary(rows)
        fields: dict[str, Any] = {"resolved_values": {}}
        if message is None:
            fields["state_message"] = f"{len(rows)} iteration{'s' if len(rows) != 1 else ''} succeeded"
            return _Outcome(ResultState.SUCCESS, fields)
        fields["error"] = message
        return _Outcome(ResultState.FAILED, fields)

    def _iteration_changed(self, child: _Unit, life: str, result: ResultState | None, message: str = "") -> None:
        owner = child.loop_unit
        if owner is None or owner.iterations is None:
            return
        state = owner.iterations.setdefault(child.index, dict(iteration_index=child.index, input=child.input))
        state.update(life_cycle_state=life, result_state=str(result) if result is not None else None,
                     error=message or None)
        self._progress(owner)

    def _progress(self, unit: _Unit) -> None:
        from .tasks.for_each import stats
        self._emit("task_progress", task_key=unit.key, task_run_id=unit.task_run_id, life_cycle_state="RUNNING",
                   stats=stats(unit.iterations.values()), attempt_number=unit.attempt)


class _TaskStates(Mapping):
    """`RefContext.tasks`, read lazily from the driver's in-memory task rows and values."""

    def __init__(self, store: Any, tasks: Mapping[str, Task]):
        self._store = store
        self._tasks = tasks
        self._cache: dict[str, TaskRefState] = {}

    def __getitem__(self, key: str) -> TaskRefState:
        state = self._cache.get(key)
        if state is None:
            row = self._store.latest_task_row(key)
            if row is None:
                raise KeyError(key)
            task = self._tasks.get(key)
            state = self._cache[key] = TaskRefState(
                run_id=row["task_run_id"],
                result_state=(row["result_state"] or "").lower() or None,
                error_code="" if row["result_state"] in (None, "SUCCESS") else "RunExecutionError",
                execution_count=row["execution_count"],
                notebook_path=task.notebook_task.notebook_path if task and task.notebook_task else None,
                values=self._store.values_of(key))
        return state

    def __iter__(self):
        return iter(self._store.task_keys())

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _interrupted(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "Run canceled: interrupted (Ctrl-C)."
    if isinstance(exc, asyncio.CancelledError):
        return "Run canceled: the process executing it stopped it (its caller was canceled or is shutting down)."
    return f"Run canceled: the run driver failed ({type(exc).__name__}: {exc})."


def _from_output(output, resolved: dict) -> _Outcome:
    fields = dict(resolved_values=resolved, exit_value=output.exit_value, error=output.error,
                  error_trace=output.error_trace,
                  output_path=str(output.output_path) if output.output_path else None,
                  logs_path=str(output.logs_path) if output.logs_path else None)
    result = ResultState.SUCCESS if output.error is None else ResultState.FAILED
    return _Outcome(result, fields, values=dict(output.values or {}))


def _skip_message(result: ResultState) -> str:
    return {
        ResultState.EXCLUDED: "Excluded: its dependency conditions were not met (branch not taken or run_if).",
        ResultState.UPSTREAM_FAILED: "Not run: an upstream task failed.",
        ResultState.UPSTREAM_CANCELED: "Not run: an upstream task was canceled.",
        ResultState.DISABLED: "Not run: the task is disabled.",
    }.get(result, "")
