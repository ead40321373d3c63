"""The states a graph node shows, their colours, and how a runs/get task maps to one. Pure."""
from __future__ import annotations

from typing import Any, Mapping

from ..tasks.registry import iteration_stats

# (state, legend label, fill, border, text colour) in legend order.
STATES: tuple[tuple[str, str, str, str, str], ...] = (
    ("pending", "pending", "#eceff1", "#90a4ae", "#37474f"),
    ("queued", "queued", "#cfd8dc", "#607d8b", "#263238"),
    ("running", "running", "#90caf9", "#1565c0", "#0d47a1"),
    ("waiting_for_retry", "waiting for retry", "#ffe0b2", "#ef6c00", "#e65100"),
    ("succeeded", "succeeded", "#a5d6a7", "#2e7d32", "#1b5e20"),
    ("failed", "failed", "#ef9a9a", "#c62828", "#b71c1c"),
    ("timed_out", "timed out", "#f48fb1", "#ad1457", "#880e4f"),
    ("canceled", "canceled", "#ce93d8", "#6a1b9a", "#4a148c"),
    ("excluded", "excluded", "#fafafa", "#bdbdbd", "#9e9e9e"),
    ("upstream_failed", "upstream failed", "#fff59d", "#f9a825", "#795548"),
    ("upstream_canceled", "upstream canceled", "#f3e5f5", "#ab47bc", "#6a1b9a"),
    ("skipped", "skipped", "#f5f5f5", "#9e9e9e", "#757575"),
    ("disabled", "disabled", "#e0e0e0", "#757575", "#616161"),
)
STATE_NAMES: tuple[str, ...] = tuple(s[0] for s in STATES)
NO_RUN = "none"  # design mode, or a task the displayed run does not have

_RESULT = {
    "SUCCESS": "succeeded", "SUCCESS_WITH_FAILURES": "succeeded", "FAILED": "failed", "TIMEDOUT": "timed_out",
    "CANCELED": "canceled", "EXCLUDED": "excluded", "UPSTREAM_FAILED": "upstream_failed",
    "UPSTREAM_CANCELED": "upstream_canceled", "DISABLED": "disabled", "MAXIMUM_CONCURRENT_RUNS_REACHED": "skipped",
}
_LIFE = {
    "PENDING": "pending", "QUEUED": "queued", "BLOCKED": "queued", "RUNNING": "running", "TERMINATING": "running",
    "WAITING_FOR_RETRY": "waiting_for_retry", "SKIPPED": "skipped", "INTERNAL_ERROR": "failed",
    "TERMINATED": "succeeded",
}
TERMINAL_LIFE = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})


def ui_state(task: Mapping[str, Any]) -> str:
    """The node state of a runs/get task (or run) object."""
    state = task.get("state") or {}
    result = state.get("result_state")
    if result:
        return _RESULT.get(result, "skipped")
    return _LIFE.get(state.get("life_cycle_state", ""), "pending")


def is_active(run: Mapping[str, Any]) -> bool:
    """The run (or task run) has not ended."""
    return (run.get("state") or {}).get("life_cycle_state") not in TERMINAL_LIFE


def progress(task: Mapping[str, Any]) -> str | None:
    """`done/total` of a for-each task run, from `for_each_task.stats` (None for other tasks)."""
    stats = iteration_stats(dict(task)) or {}
    total = stats.get("total_iterations")
    if total is None:
        return None
    done = stats.get("completed_iterations")
    if done is None:
        done = (stats.get("succeeded_iterations") or 0) + (stats.get("failed_iterations") or 0)
    return f"{done}/{total}"


def legend_html() -> str:
    """The colour legend: one swatch per state."""
    items = "".join(
        f'<span class="nbjobs-legend-item" data-state="{name}" style="display:inline-flex;align-items:center;'
        f'margin:0 10px 2px 0;white-space:nowrap"><span style="display:inline-block;width:12px;height:12px;'
        f'border-radius:3px;margin-right:4px;background:{fill};border:2px solid {border}"></span>{label}</span>'
        for name, label, fill, border, _ in STATES)
    return f'<div class="nbjobs-legend" style="font-size:11px;line-height:16px;color:#424242">{items}</div>'
