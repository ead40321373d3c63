"""Health rules (`health.rules`, databricks-sdk `jobs.JobsHealthRules`): their validation and notes."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Problem
from .models import as_text
from .problems import key_label as _key_label, show as _show


HEALTH_METRICS = ("RUN_DURATION_SECONDS", "STREAMING_BACKLOG_BYTES", "STREAMING_BACKLOG_RECORDS",
                  "STREAMING_BACKLOG_SECONDS", "STREAMING_BACKLOG_FILES")  # databricks-sdk jobs.JobsHealthMetric


def health_problems(health: Any, path: str) -> list[tuple[bool, Problem]]:
    """(is a note, problem) of `health.rules` (databricks-sdk `jobs.JobsHealthRules`). RUN_DURATION_SECONDS
    GREATER_THAN n is watched locally (a `duration_warning` event); streaming backlog metrics are accepted
    but have no local meaning (a note)."""
    rules = health.get("rules") if isinstance(health, dict) else None
    if rules is None:
        return []
    if not isinstance(rules, list):
        return [(False, Problem(f"{path}.rules", f"must be a list of rules, not {_show(rules)}",
                                "write rules: [{metric: RUN_DURATION_SECONDS, op: GREATER_THAN, value: n}]"))]
    out = []
    for i, rule in enumerate(rules):
        where = f"{path}.rules[{i}]"
        if not isinstance(rule, dict):
            out.append((False, Problem(where, f"must be a map of fields, not {_show(rule)}",
                                       "write {metric: RUN_DURATION_SECONDS, op: GREATER_THAN, value: n}")))
            continue
        metric, op, value = as_text(rule.get("metric")), as_text(rule.get("op")), rule.get("value")
        if metric not in HEALTH_METRICS:
            out.append((False, Problem(f"{where}.metric", f"{_show(metric)} is not a health metric",
                                       "use one of " + ", ".join(HEALTH_METRICS))))
        elif metric != "RUN_DURATION_SECONDS":
            out.append((True, Problem(f"{where}.metric", f"{metric} has no local meaning (nbjobs runs no "
                                      "streams): the rule is kept but never fires",
                                      "use RUN_DURATION_SECONDS to be warned about long runs")))
        if op != "GREATER_THAN":
            out.append((False, Problem(f"{where}.op", f"{_show(op)} is not a health rule operator",
                                       "use GREATER_THAN")))
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            out.append((False, Problem(f"{where}.value", f"must be a whole number of at least 0, not {_show(value)}",
                                       "give the threshold (seconds, for RUN_DURATION_SECONDS)")))
    return out


def job_notes(data: Any) -> list[Problem]:
    """What a valid job asks for that nbjobs accepts but cannot honour locally (shown as notes)."""
    if not isinstance(data, Mapping):
        return []
    notes = [p for note, p in health_problems(data.get("health"), "health") if note]
    tasks = data.get("tasks")
    for i, task in enumerate(tasks if isinstance(tasks, list) else []):
        if isinstance(task, dict):
            label = f"tasks[{i}]" + _key_label(task)
            notes += [p for note, p in health_problems(task.get("health"), f"{label}.health") if note]
    return notes
