"""For-each tasks (reference §3): the inputs array, limits, and the iteration statistics.

The runner executes the iterations (each one is a task run of the nested task, with ``{{input}}``
bound to its element); this module holds what is pure: parsing ``inputs``, the limits and
``for_each_task.stats`` built from the iterations' task runs. Stdlib only.
"""
from __future__ import annotations

import ast
import json
from collections import Counter
from typing import Any, Iterable, Mapping
from .registry import TaskKind

MAX_ITERATIONS = 5000
MAX_CONCURRENCY = 100
DEFAULT_CONCURRENCY = 1

_SUCCESS = "SUCCESS"
_ACTIVE = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")


class ForEachInputError(ValueError):
    """The inputs are not a usable array; the for-each task fails with this message."""


def parse_inputs(value: Any, source: str) -> list[Any]:
    """The iteration elements: a list as is, or the text of a JSON array (single quotes accepted).

    ``source`` is the inputs as written (for the message)."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        text = str(value).strip()
        items = None
        try:
            items = json.loads(text)
        except ValueError:
            try:
                items = ast.literal_eval(text)  # ['a', 'b'], as the Databricks docs show
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                items = None
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
