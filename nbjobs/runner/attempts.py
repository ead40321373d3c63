"""One task (or for-each iteration) across its attempts: retries (`plan.retry_delay`), the task's
timeout_seconds, one attempt dispatched to its kind (`TaskKind.run`), and what kinds call back
(the task's compute, its dbutils context, for-each iterations). A mixin of `RunDriver`."""
from __future__ import annotations

import asyncio
import traceback
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..plan import retry_delay
from ..refs import MISSING, ReferenceResolutionError, RefContext
from ..states import ResultState
from ..store import now_ms, utc_from_ms
from ..tasks.registry import Outcome, kind_of
from .units import TaskStates, Unit, from_output, retry_policy

if TYPE_CHECKING:  # pragma: no cover
    from .driver import RunDriver

    _Base = RunDriver
else:
    _Base = object


class Attempts(_Base):
    """The attempts of the driver's units (see `RunDriver`)."""

    # -- one task (or iteration), across its attempts ---------------------------------------------
    async def _run_unit(self, unit: Unit, semaphore: asyncio.Semaphore | None) -> Outcome:
        acquired = False
        try:
            if semaphore is not None:
                await semaphore.acquire()
                acquired = True
            policy = retry_policy(unit.task, unit.kind)
            if self.settings.continuous is not None:  # a continuous job's task_retry_mode NEVER (the only
                policy = replace(policy, max_retries=0)  # one nbjobs runs): the run ends, a new one starts
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

    def _retry(self, unit: Unit, outcome: Outcome, delay: float) -> None:
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

    def _unit_ended(self, unit: Unit, result: ResultState, message: str, row: dict | None = None) -> None:
        if unit.is_iteration:
            self._iteration_changed(unit, "TERMINATED", result, message)
        else:
            self._emit("task_end", task_key=unit.key, task_run_id=unit.task_run_id, life_cycle_state="TERMINATED",
                       result_state=str(result), message=message, attempt_number=unit.attempt,
                       row=row or self.store.get_task_run(unit.task_run_id))

    async def _attempt(self, unit: Unit) -> tuple[Outcome, int]:
        task, task_run_id, kind = unit.task, unit.task_run_id, unit.kind
        execution_count = self.store.execution_count(
            self.run_id, task.task_key, parent_task_run_id=unit.parent, iteration_index=unit.index) + 1
        start = unit.started_ms = now_ms()
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
            if kind is None:
                message = f"task '{task.task_key}': nbjobs cannot run {task.task_type} tasks yet"
                outcome = Outcome(ResultState.FAILED, dict(error=message))
            else:
                unit.refs = self.ref_context(unit.key, task_run_id, execution_count, unit.input)
                work = kind.run(unit)
                outcome = await (asyncio.wait_for(work, timeout) if timeout > 0 and not kind.instant else work)
        except asyncio.TimeoutError:
            message = (f"Timed out after {timeout} s (the task's timeout_seconds); "
                       f"its {kind.stops} was stopped.")
            outcome = Outcome(ResultState.TIMEDOUT, dict(error=message, state_message=message, **self._files(unit)))
        except ReferenceResolutionError as exc:
            outcome = Outcome(ResultState.FAILED, dict(error=str(exc), state_message=str(exc)))
        except Exception as exc:  # a bug of ours (or of a plug-in kind) must still end the task clearly
            message = f"nbjobs could not run task '{task.task_key}': {type(exc).__name__}: {exc}"
            outcome = Outcome(ResultState.FAILED, dict(error=message, error_trace=traceback.format_exc(),
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

    def _finish_stopped(self, unit: Unit) -> Outcome:
        """Record a stopped unit (canceled or timed out): its current task run ends with that result."""
        result, message = unit.stop or (ResultState.CANCELED, "Canceled.")
        extra = self._files(unit)
        if result is ResultState.TIMEDOUT:
            extra["error"] = message
        fields = self._end_row(unit.task_run_id, result, message, **extra)
        self._units.pop(unit.task_run_id, None)
        self._unit_ended(unit, result, message)
        return Outcome(result, fields)

    def _files(self, unit: Unit) -> dict:
        folder = self.run_dir / f"{unit.task.task_key}-{unit.task_run_id}"
        out = {}
        if (folder / "notebook.ipynb").exists():
            out["output_path"] = str(folder / "notebook.ipynb")
        if (folder / "logs.txt").exists():
            out["logs_path"] = str(folder / "logs.txt")
        return out

    # -- what a kind's run() calls back (through its Unit) ------------------------------------
    def ref_context(self, key: str, task_run_id: int, execution_count: int, element: Any = MISSING) -> RefContext:
        run = self.run_row
        tasks = TaskStates(self.store, self.tasks)  # built per task a reference names: O(1), not O(tasks)
        unit = self._units.get(task_run_id)
        task = unit.task if unit is not None else self.tasks[key]
        kind = unit.kind if unit is not None else kind_of(task)
        return RefContext(
            job_id=run["job_id"], job_name=self.settings.name or "Untitled", run_id=self.run_id,
            repair_count=run["repair_count"], start_time=utc_from_ms(run["start_time"]),
            trigger_type=(run["trigger"] or "ONE_TIME").lower(), trigger_time=utc_from_ms(run["trigger_time"]),
            file_arrival_location=(run.get("trigger_info") or {}).get("file_arrival_location"),
            job_parameters=self.job_parameters, task_key=task.task_key, task_run_id=task_run_id,
            execution_count=execution_count, notebook_path=kind.notebook_path(task) if kind else None,
            tasks=tasks, input=element)

    def task_context(self, unit: Unit, parameters: dict[str, str]):
        """The TaskContext dbutils sees in the task; an iteration sees its for-each's upstream."""
        from ..kernel.context import TaskContext
        task, task_run_id, ctx = unit.task, unit.task_run_id, unit.refs
        upstream = sorted(self.graph.upstream(unit.key))
        values = self.store.task_values(self.run_id)
        run_dir = self.run_dir / f"{task.task_key}-{task_run_id}"
        run_dir.mkdir(parents=True, exist_ok=True)
        return TaskContext(
            job_id=self.run_row["job_id"], job_name=ctx.job_name, run_id=self.run_id, task_key=task.task_key,
            task_run_id=task_run_id, attempt_number=unit.attempt,
            parameters=parameters, upstream_values={k: values[k] for k in upstream if k in values},
            task_keys=list(self.tasks), upstream_tasks=upstream, run_dir=str(run_dir),
            notebook_path=ctx.notebook_path)

    async def on_compute(self, unit: Unit, resolved: dict, execute: Callable[[Any], Awaitable[Any]]) -> Outcome:
        """Run an executor on the task's compute (nbjobs.compute); the store records which compute ran it."""
        from ..compute import ComputeError
        task = unit.task
        try:
            target = await self.compute.target(task)
        except ComputeError as exc:
            message = f"task '{task.task_key}': {exc}"
            return Outcome(ResultState.FAILED, dict(error=message, resolved_values=resolved,
                                                    compute=self.compute.describe(task)))
        try:
            output = await execute(target)
        finally:
            await self.compute.release(target)
        outcome = from_output(output, resolved)
        outcome.fields["compute"] = output.compute or target.label
        return outcome

    async def run_iterations(self, unit: Unit, nested: Any, items: list[tuple[int, Any]], kept: dict[int, dict],
                             concurrency: int) -> None:
        """Run `nested` once per (index, element) as iterations of `unit` (a for-each task), at most
        `concurrency` at once; `kept`: earlier iterations (task run rows) reused by index."""
        task_run_id = unit.task_run_id
        nested_json = nested.model_dump(exclude_none=True)
        ids = self.store.new_task_runs(self.run_id, [
            (nested.task_key, nested_json, dict(parent_task_run_id=task_run_id, iteration_index=i, input=element,
                                                repair_id=self.repair_id)) for i, element in items])
        unit.iterations = {i: dict(life_cycle_state=r["life_cycle_state"], result_state=r["result_state"],
                                   error=r.get("error"), iteration_index=i, input=r.get("input"))
                           for i, r in kept.items()}
        semaphore = asyncio.Semaphore(concurrency)
        nested_kind = kind_of(nested)
        children: dict[asyncio.Future, Unit] = {}
        for (index, element), child_id in zip(items, ids):
            child = Unit(driver=self, kind=nested_kind, key=unit.key, task=nested, task_run_id=child_id,
                         first_id=child_id, parent=task_run_id, index=index, input=element, loop_unit=unit)
            unit.iterations[index] = dict(life_cycle_state="PENDING", result_state=None, error=None,
                                          iteration_index=index, input=element)
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

    def _iteration_changed(self, child: Unit, life: str, result: ResultState | None, message: str = "") -> None:
        owner = child.loop_unit
        if owner is None or owner.iterations is None:
            return
        state = owner.iterations.setdefault(child.index, dict(iteration_index=child.index, input=child.input))
        state.update(life_cycle_state=life, result_state=str(result) if result is not None else None,
                     error=message or None)
        self._progress(owner)

    def _progress(self, unit: Unit) -> None:
        if self.events is None or not self.events.wants(self.run_id):
            return
        self._emit("task_progress", task_key=unit.key, task_run_id=unit.task_run_id, life_cycle_state="RUNNING",
                   stats=unit.kind.progress(unit.iterations.values()), attempt_number=unit.attempt)
