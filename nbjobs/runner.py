"""Drive one job run on an asyncio loop: ask the planner what is ready, start it, record results."""
from __future__ import annotations

import asyncio
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .plan import Dependency, JobGraph, PlanTask, Planner, Step
from .refs import ReferenceResolutionError, RefContext, TaskRefState, resolve_all
from .spec import JobSettings, Task
from .states import LifeCycleState, ResultState, RunIf, life_cycle_for
from .store import Store, now_ms, utc_from_ms


@dataclass
class RunEvent:
    """What the runner reports to observers: run_start, task_start, task_end, run_end."""
    kind: str
    run_id: int
    task_key: str | None = None
    task_run_id: int | None = None
    life_cycle_state: str | None = None
    result_state: str | None = None
    message: str = ""
    row: dict = field(default_factory=dict)


EventHandler = Callable[[RunEvent], None]


@dataclass
class _Outcome:
    result: ResultState
    fields: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None


def plan_task(task: Task) -> PlanTask:
    return PlanTask(
        task_key=task.task_key,
        depends_on=tuple(Dependency(d.task_key, d.outcome) for d in task.depends_on or ()),
        run_if=RunIf(task.run_if or "ALL_SUCCESS"),
        disabled=bool(task.disabled),
    )


class RunDriver:
    """Executes the pending task runs of one run (the whole run, or the tasks a repair selected)."""

    def __init__(self, store: Store, run_id: int, settings: JobSettings, *, concurrency: int | None = None,
                 on_event: EventHandler | None = None, done: dict[str, tuple[ResultState, str | None]] | None = None,
                 repair_id: int | None = None):
        self.store = store
        self.run_id = run_id
        self.settings = settings
        self.tasks: dict[str, Task] = {t.task_key: t for t in settings.tasks}
        self.graph = JobGraph(plan_task(t) for t in settings.tasks)
        self.concurrency = max(1, concurrency or os.cpu_count() or 1)
        self.on_event = on_event
        self.done = done or {}
        self.repair_id = repair_id
        run = store.get_run(run_id)
        self.run_row = run
        self.job_parameters = {p["name"]: p["value"] for p in run["job_parameters"]}
        self.task_run_ids = {r["task_key"]: r["task_run_id"] for r in store.task_runs(run_id)}
        self.rows = {r["task_key"]: r for r in store.task_runs(run_id)}
        self.run_dir = store.runs_dir / str(run_id)

    # -- events -------------------------------------------------------------------------------
    def _emit(self, kind: str, **kw) -> None:
        if self.on_event is not None:
            try:
                self.on_event(RunEvent(kind=kind, run_id=self.run_id, **kw))
            except Exception:  # an observer must never break a run
                traceback.print_exc()

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> dict:
        self.store.update_run(self.run_id, life_cycle_state="RUNNING")
        if self.repair_id is not None:
            self.store.update_repair(self.repair_id, life_cycle_state="RUNNING")
        self._emit("run_start", life_cycle_state="RUNNING")
        planner = Planner(self.graph, done=self.done)
        semaphore = asyncio.Semaphore(self.concurrency)
        running: dict[asyncio.Task, str] = {}
        ready: list[str] = []

        def apply(step: Step) -> None:
            if step.skipped:
                self._record_skips(step.skipped)
            ready.extend(step.ready)

        try:
            apply(planner.start())
            while ready or running:
                while ready:
                    key = ready.pop(0)
                    if self.tasks[key].condition_task is not None:  # instant: no slot, no thread
                        outcome = await self._execute(key)
                        apply(planner.finish(key, outcome.result, outcome.outcome))
                        continue
                    running[asyncio.ensure_future(self._execute_bounded(key, semaphore))] = key
                if not running:
                    break
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for fut in finished:
                    key = running.pop(fut)
                    outcome = fut.result()
                    apply(planner.finish(key, outcome.result, outcome.outcome))
        except BaseException as exc:  # Ctrl-C or cancellation: nothing stays half-running in the store
            for fut in running:
                fut.cancel()
            self._cancel_remaining(f"Run interrupted ({type(exc).__name__})")
            raise
        result = planner.job_result()
        return self._finish_run(result, planner)

    async def _execute_bounded(self, key: str, semaphore: asyncio.Semaphore) -> _Outcome:
        async with semaphore:
            return await self._execute(key)

    def _finish_run(self, result: ResultState, planner: Planner) -> dict:
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

    def _record_skips(self, skipped: dict[str, ResultState]) -> None:
        now = now_ms()
        changes = {}
        for key, result in skipped.items():
            changes[self.task_run_ids[key]] = dict(
                life_cycle_state=str(life_cycle_for(result)), result_state=str(result),
                state_message=_skip_message(result), start_time=now, end_time=now)
        self.store.update_task_runs(changes)
        for key, result in skipped.items():
            self._emit("task_end", task_key=key, task_run_id=self.task_run_ids[key],
                       life_cycle_state=str(life_cycle_for(result)), result_state=str(result),
                       message=_skip_message(result))

    def _cancel_remaining(self, message: str) -> None:
        end = now_ms()
        changes = {}
        for row in self.store.task_runs(self.run_id):
            if row["life_cycle_state"] in ("PENDING", "RUNNING", "QUEUED", "BLOCKED", "WAITING_FOR_RETRY"):
                changes[row["task_run_id"]] = dict(life_cycle_state="TERMINATED", result_state="CANCELED",
                                                   state_message=message, end_time=end)
        self.store.update_task_runs(changes)
        if self.repair_id is not None:
            self.store.update_repair(self.repair_id, life_cycle_state="TERMINATED", result_state="CANCELED",
                                     end_time=end)
        self.store.update_run(self.run_id, life_cycle_state="TERMINATED", result_state="CANCELED",
                              state_message=message, end_time=end)

    # -- one task -----------------------------------------------------------------------------
    def ref_context(self, key: str, task_run_id: int, execution_count: int) -> RefContext:
        run = self.run_row
        values = self.store.task_values(self.run_id)
        tasks = {}
        for row in self.store.task_runs(self.run_id):
            task = row["task"]
            tasks[row["task_key"]] = TaskRefState(
                run_id=row["task_run_id"],
                result_state=(row["result_state"] or "").lower() or None,
                error_code="" if row["result_state"] in (None, "SUCCESS") else "RunExecutionError",
                execution_count=row["execution_count"],
                notebook_path=(task.get("notebook_task") or {}).get("notebook_path"),
                values=values.get(row["task_key"], {}))
        task = self.tasks[key]
        return RefContext(
            job_id=run["job_id"], job_name=self.settings.name or "Untitled", run_id=self.run_id,
            repair_count=run["repair_count"], start_time=utc_from_ms(run["start_time"]),
            trigger_type=(run["trigger"] or "ONE_TIME").lower(), trigger_time=utc_from_ms(run["trigger_time"]),
            job_parameters=self.job_parameters, task_key=key, task_run_id=task_run_id,
            execution_count=execution_count,
            notebook_path=task.notebook_task.notebook_path if task.notebook_task else None,
            tasks=tasks)

    async def _execute(self, key: str) -> _Outcome:
        task = self.tasks[key]
        task_run_id = self.task_run_ids[key]
        previous = self.rows.get(key, {}).get("execution_count") or 0
        execution_count = previous + 1
        start = now_ms()
        self.store.update_task_run(task_run_id, life_cycle_state="RUNNING", start_time=start,
                                   execution_count=execution_count, task=task.model_dump(exclude_none=True))
        self._emit("task_start", task_key=key, task_run_id=task_run_id, life_cycle_state="RUNNING")
        try:
            outcome = await self._dispatch(task, task_run_id, execution_count)
        except asyncio.CancelledError:
            raise
        except ReferenceResolutionError as exc:
            outcome = _Outcome(ResultState.FAILED, dict(error=str(exc), state_message=str(exc)))
        except Exception as exc:  # a bug of ours must still end the task clearly
            message = f"nbjobs could not run task '{key}': {type(exc).__name__}: {exc}"
            outcome = _Outcome(ResultState.FAILED, dict(error=message, error_trace=traceback.format_exc(),
                                                         state_message=message))
        fields = dict(outcome.fields)
        fields.setdefault("state_message", fields.get("error") or "")
        fields.update(life_cycle_state="TERMINATED", result_state=str(outcome.result), end_time=now_ms())
        if outcome.outcome is not None:
            fields["condition_outcome"] = outcome.outcome
        self.store.update_task_run(task_run_id, values=outcome.values, **fields)
        self._emit("task_end", task_key=key, task_run_id=task_run_id, life_cycle_state="TERMINATED",
                   result_state=str(outcome.result), message=fields.get("state_message", ""),
                   row=self.store.get_task_run(task_run_id))
        return outcome

    async def _dispatch(self, task: Task, task_run_id: int, execution_count: int) -> _Outcome:
        ctx = self.ref_context(task.task_key, task_run_id, execution_count)
        if task.condition_task is not None:
            return self._condition(task, ctx)
        if task.notebook_task is not None:
            return await self._notebook(task, task_run_id, ctx)
        if task.spark_python_task is not None:
            return await self._python(task, task_run_id, ctx)
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
        upstream = sorted(self.graph.upstream(task.task_key))
        values = self.store.task_values(self.run_id)
        run_dir = self.run_dir / f"{task.task_key}-{task_run_id}"
        run_dir.mkdir(parents=True, exist_ok=True)
        return TaskContext(
            job_id=self.run_row["job_id"], job_name=ctx.job_name, run_id=self.run_id, task_key=task.task_key,
            task_run_id=task_run_id, attempt_number=0, parameters=parameters,
            upstream_values={k: values[k] for k in upstream if k in values},
            task_keys=list(self.tasks), upstream_tasks=upstream, run_dir=str(run_dir),
            notebook_path=ctx.notebook_path)

    async def _notebook(self, task: Task, task_run_id: int, ctx: RefContext) -> _Outcome:
        from .tasks.notebook import run_notebook_task
        nb = task.notebook_task
        parameters = {k: str(v) for k, v in resolve_all(dict(nb.base_parameters or {}), ctx).items()}
        parameters.update(self.job_parameters)  # job parameters are pushed down and win on the same key
        context = self._task_context(task, task_run_id, ctx, parameters)
        path = Path(nb.notebook_path)
        output = await run_notebook_task(path, parameters, context, path.parent)
        return _from_output(output, {"notebook_task": {"base_parameters": parameters}})

    async def _python(self, task: Task, task_run_id: int, ctx: RefContext) -> _Outcome:
        from .tasks.python_script import run_python_task
        py = task.spark_python_task
        args = [str(a) for a in resolve_all(list(py.parameters or []), ctx)]
        context = self._task_context(task, task_run_id, ctx, dict(self.job_parameters))
        path = Path(py.python_file)
        output = await run_python_task(path, args, context, path.parent)
        return _from_output(output, {"spark_python_task": {"parameters": args}})


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
