"""For-each tasks (`for_each_task`, databricks-sdk `jobs.ForEachTask`): the inputs array, limits,
the iterations and their statistics (`for_each_task.stats`, `jobs.ForEachStats`).

Each iteration is a task run of the nested task with ``{{input}}`` bound to its element; the run
driver starts them (`TaskRun.run_iterations`), this module decides which and sums them up.
"""
from __future__ import annotations

import ast
import json
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any, Iterable, Mapping

from pydantic import BeforeValidator

from ..refs import ReferenceResolutionError, value_of
from ..states import ResultState
from .api_model import ApiModel, as_text
from .registry import Outcome, TaskKind, TaskRun

if TYPE_CHECKING:  # pragma: no cover
    from ..spec.models import Task

MAX_ITERATIONS = 5000
MAX_CONCURRENCY = 100
DEFAULT_CONCURRENCY = 1

_SUCCESS = "SUCCESS"
_ACTIVE = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")


def _inputs_text(value: Any) -> Any:
    """for_each inputs: a YAML list is accepted and stored as its JSON text."""
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), default=str)
    return as_text(value)


Inputs = Annotated[str, BeforeValidator(_inputs_text)]


class ForEachTask(ApiModel):
    inputs: Inputs
    task: Task  # resolved by nbjobs.spec.models (which defines Task)
    concurrency: int | None = None


class ForEachInputError(ValueError):
    """The inputs are not a usable array; the for-each task fails with this message."""


def parse_inputs(value: Any, source: str) -> list[Any]:
    """The iteration elements: a list as is, or the text of a JSON array (single quotes accepted).

    ``source`` is the inputs as written (for the message)."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        text = str(value).strip()
        items = as_list(text)
        if not isinstance(items, (list, tuple)):
            shown = text if len(text) <= 120 else text[:120] + "…"
            resolved = "" if shown == source.strip() else f" resolved to {shown!r}, which"
            raise ForEachInputError(
                f"for_each_task.inputs: {source.strip()!r}{resolved} is not a JSON array; give a JSON array "
                'such as ["a", "b"] or [{"x": 1}], or a reference to a task value or job parameter holding one')
        items = list(items)
    if len(items) > MAX_ITERATIONS:
        raise ForEachInputError(
            f"for_each_task.inputs has {len(items):,} elements; the limit is {MAX_ITERATIONS:,} iterations. "
            "Split the inputs over several for-each tasks, or batch several elements per iteration")
    return items


def as_list(text: str) -> Any:
    """The JSON (or Python literal: ['a', 'b'], as the Databricks docs show) value of `text`, or None."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def concurrency_of(value: int | None) -> int:
    """Iterations at once: default 1, at most 100 (validation refuses other values up front)."""
    if value is None:
        return DEFAULT_CONCURRENCY
    return max(1, min(int(value), MAX_CONCURRENCY))


def iteration_label(index: int, element: Any) -> str:
    text = element if isinstance(element, str) else json.dumps(element, ensure_ascii=False, default=str)
    if len(text) > 60:
        text = text[:60] + "…"
    return f"iteration {index} ({text})"


def stats(rows: Iterable[Mapping[str, Any]]) -> dict:
    """``for_each_task.stats`` from the latest task run of each iteration.

    scheduled = waiting to start, active = running or waiting for a retry, completed = ended (any
    result), succeeded / failed = ended with SUCCESS / anything else."""
    rows = list(rows)
    total = len(rows)
    active = scheduled = completed = succeeded = 0
    errors: Counter = Counter()
    categories: dict[str, str] = {}
    for row in rows:
        life = row.get("life_cycle_state")
        if life in ("RUNNING", "TERMINATING", "WAITING_FOR_RETRY"):
            active += 1
        elif life in _ACTIVE:
            scheduled += 1
        else:
            completed += 1
            if row.get("result_state") == _SUCCESS:
                succeeded += 1
            else:
                message = (row.get("error") or row.get("state_message") or str(row.get("result_state"))).strip()
                message = message.splitlines()[0][:500] if message else "failed"
                errors[message] += 1
                categories.setdefault(message, _category(row.get("result_state")))
    out: dict = {"task_run_stats": {
        "total_iterations": total, "scheduled_iterations": scheduled, "active_iterations": active,
        "completed_iterations": completed, "succeeded_iterations": succeeded,
        "failed_iterations": completed - succeeded}}
    if errors:
        out["error_message_stats"] = [{"error_message": m, "count": n, "termination_category": categories[m]}
                                      for m, n in errors.most_common(3)]
    return out


def _category(result: str | None) -> str:
    return {"TIMEDOUT": "CANCELED", "CANCELED": "USER_CANCELED", "UPSTREAM_FAILED": "SKIPPED",
            "UPSTREAM_CANCELED": "SKIPPED"}.get(result or "", "RUN_EXECUTION_ERROR")


def summary(rows: list[Mapping[str, Any]]) -> str | None:
    """The for-each task's error message when some iterations did not succeed, else None."""
    bad = [r for r in rows if r.get("result_state") != _SUCCESS]
    if not bad:
        return None
    first = bad[0]
    detail = (first.get("error") or first.get("state_message") or first.get("result_state") or "").strip()
    detail = detail.splitlines()[0] if detail else str(first.get("result_state"))
    label = iteration_label(first.get("iteration_index") or 0, first.get("input"))
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return f"{len(bad)} of {len(rows)} iterations did not succeed; {label}: {detail}{more}"


class ForEachKind(TaskKind):
    field = "for_each_task"
    name = "for_each"
    label = "For each"
    retryable = False
    needs_compute = False
    nested_tasks = ("task",)
    model = ForEachTask

    def validate(self, payload, path, check, *, upstream, nested):
        inputs = payload.get("inputs")
        if isinstance(inputs, str):
            if "{{" in inputs:
                check.refs(inputs, f"{path}.inputs", upstream=upstream, in_for_each=nested)
            elif not isinstance(as_list(inputs), list):
                check.add(f"{path}.inputs", f"{inputs!r} is not a JSON array",
                          'write a JSON array such as "[1, 2]" or a {{...}} reference to one')
        check.check_range(f"{path}.concurrency", payload.get("concurrency"), 1, MAX_CONCURRENCY)
        inner = payload.get("task")
        if not isinstance(inner, dict):
            return
        key = as_text(inner.get("task_key"))
        label = f"{path}.task" + (f" ({key})" if isinstance(key, str) and key else "")
        if inner.get(self.field) is not None:
            check.add(f"{label}.{self.field}", "a for_each_task cannot run another for_each_task",
                      "put the inner loop in its own job and call that job with a run_job_task")
            check.suppress(f"{label}.{self.field}.")
            return
        check.check_task(inner, label, upstream, nested=True)

    async def run(self, run: TaskRun) -> Outcome:
        if run.is_iteration:
            return Outcome.failed("a for_each_task cannot run another for_each_task")
        from ..plan import iterations_to_reuse
        loop, store, task_run_id = run.task.for_each_task, run.store, run.task_run_id
        try:
            items = parse_inputs(value_of(loop.inputs, run.refs), loop.inputs)
        except (ForEachInputError, ReferenceResolutionError) as exc:
            return Outcome.failed(str(exc))

        # a rerun (repair or retry) keeps the iterations that succeeded with the same input
        keep: dict[int, dict] = {}
        previous, children = None, {}
        for row in store.previous_task_runs(store.run_id, run.task.task_key, before=task_run_id):
            found = store.child_task_runs(row["task_run_id"])
            if found:  # the newest earlier task run that ran iterations (not one that was skipped)
                previous, children = row, {r["iteration_index"]: r for r in found}
                break
        if previous is not None and previous.get("result_state"):
            states = {i: (r.get("input"), ResultState(r["result_state"])) for i, r in children.items()
                      if r.get("result_state")}
            reuse = iterations_to_reuse(states, items, previous_succeeded=previous["result_state"] == "SUCCESS")
            keep = {i: children[i] for i in reuse}
            store.move_task_runs([r["task_run_id"] for r in keep.values()], task_run_id)

        todo = [(i, items[i]) for i in range(len(items)) if i not in keep]
        await run.run_iterations(loop.task, todo, keep, concurrency_of(loop.concurrency))
        rows = store.child_task_runs(task_run_id)
        message = summary(rows)
        if message is None:
            return Outcome.succeeded(resolved_values={},
                                     state_message=f"{len(rows)} iteration{'s' if len(rows) != 1 else ''} succeeded")
        return Outcome.failed(message, resolved_values={})

    def progress(self, iterations) -> dict:
        return stats(iterations)

    def run_json(self, out: dict, row: dict, iterations) -> None:
        if iterations is not None:
            out["for_each_task"] = {**out["for_each_task"], "stats": stats(iterations)}
