"""What the run driver keeps per started task: `Unit` (one task or for-each iteration across its
attempts; the `TaskRun` its kind's `run` gets), the planner's and retries' view of a task, and the
lazy task states `{{tasks.<key>...}}` references read."""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Protocol

from ..plan import Dependency, PlanTask, RetryPolicy
from ..refs import MISSING, TaskRefState
from ..spec import Task
from ..states import ResultState, RunIf
from ..tasks.registry import Outcome, TaskKind, kind_of

if TYPE_CHECKING:  # pragma: no cover
    from .driver import RunDriver


class ChildRuns(Protocol):
    """How a run-job task starts and awaits another job's run (the service implements it)."""

    def start(self, job_id: int, job_parameters: dict[str, str], parent_task_run_id: int) -> int: ...

    def execute(self, run_id: int) -> Awaitable[dict]: ...


@dataclass(eq=False)
class Unit:
    """A started task (or one for-each iteration) across its attempts: the `TaskRun` of its kind."""
    driver: RunDriver
    kind: TaskKind | None          # None: a task type nbjobs does not run
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
    loop_unit: Unit | None = None    # an iteration's for-each
    iterations: dict[int, dict] | None = None  # a for-each's iteration states (for its stats)
    refs: Any = None               # this attempt's RefContext
    started_ms: int = 0            # when this attempt started

    @property
    def is_iteration(self) -> bool:
        return self.parent is not None

    # -- the TaskRun a kind's run() uses (nbjobs.tasks.registry.TaskRun) ------------------------
    @property
    def store(self) -> Any:
        return self.driver.store

    @property
    def child_runs(self) -> ChildRuns | None:
        return self.driver.child_runs

    @property
    def job_parameters(self) -> dict[str, str]:
        return self.driver.job_parameters

    def task_context(self, parameters: dict[str, str]) -> Any:
        return self.driver.task_context(self, parameters)

    def on_compute(self, resolved: dict, execute: Any) -> Awaitable[Outcome]:
        return self.driver.on_compute(self, resolved, execute)

    def run_iterations(self, nested: Any, items: list[tuple[int, Any]], kept: dict[int, dict],
                       concurrency: int) -> Awaitable[None]:
        return self.driver.run_iterations(self, nested, items, kept, concurrency)


def plan_task(task: Task) -> PlanTask:
    return PlanTask(
        task_key=task.task_key,
        depends_on=tuple(Dependency(d.task_key, d.outcome) for d in task.depends_on or ()),
        run_if=RunIf(task.run_if or "ALL_SUCCESS"),
        disabled=bool(task.disabled),
    )


def retry_policy(task: Task, kind: TaskKind | None = MISSING) -> RetryPolicy:
    """The task's retry settings; a kind that is not `retryable` (condition, for-each) never retries."""
    if kind is MISSING:
        kind = kind_of(task)
    return RetryPolicy(max_retries=task.max_retries or 0,
                       min_retry_interval_millis=task.min_retry_interval_millis or 0,
                       retry_on_timeout=bool(task.retry_on_timeout),
                       retryable=kind is None or kind.retryable)


class TaskStates(Mapping):
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
            state = self._cache[key] = TaskRefState(
                run_id=row["task_run_id"],
                result_state=(row["result_state"] or "").lower() or None,
                error_code="" if row["result_state"] in (None, "SUCCESS") else "RunExecutionError",
                execution_count=row["execution_count"],
                notebook_path=notebook_path(self._tasks.get(key)),
                values=self._store.values_of(key))
        return state

    def __iter__(self):
        return iter(self._store.task_keys())

    def __len__(self) -> int:
        return sum(1 for _ in self)


def notebook_path(task: Task | None) -> str | None:
    """The notebook a task runs (for `{{task.notebook_path}}`), or None."""
    kind = kind_of(task) if task is not None else None
    return kind.notebook_path(task) if kind is not None else None


def interrupted(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "Run canceled: interrupted (Ctrl-C)."
    if isinstance(exc, asyncio.CancelledError):
        return "Run canceled: the process executing it stopped it (its caller was canceled or is shutting down)."
    return f"Run canceled: the run driver failed ({type(exc).__name__}: {exc})."


def from_output(output, resolved: dict) -> Outcome:
    fields = dict(resolved_values=resolved, exit_value=output.exit_value, error=output.error,
                  error_trace=output.error_trace,
                  output_path=str(output.output_path) if output.output_path else None,
                  logs_path=str(output.logs_path) if output.logs_path else None)
    result = ResultState.SUCCESS if output.error is None else ResultState.FAILED
    return Outcome(result, fields, values=dict(output.values or {}))


def skip_message(result: ResultState) -> str:
    return {
        ResultState.EXCLUDED: "Excluded: its dependency conditions were not met (branch not taken or run_if).",
        ResultState.UPSTREAM_FAILED: "Not run: an upstream task failed.",
        ResultState.UPSTREAM_CANCELED: "Not run: an upstream task was canceled.",
        ResultState.DISABLED: "Not run: the task is disabled.",
    }.get(result, "")
