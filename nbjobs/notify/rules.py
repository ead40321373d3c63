"""Which notifications an event sends: a pure function of the event and the job's (or task's) settings.

Fields after the Jobs API (databricks-sdk `jobs.JobEmailNotifications`, `jobs.WebhookNotifications`,
`jobs.JobNotificationSettings`, `jobs.TaskNotificationSettings`):

- `on_start`: a run starts (job level), an attempt of a task starts (task level);
- `on_success`: the run ends SUCCESS or SUCCESS_WITH_FAILURES (the run succeeded; the tasks that failed
  send their own task-level `on_failure`), a task ends SUCCESS;
- `on_failure`: FAILED, TIMEDOUT, INTERNAL_ERROR; also a CANCELED run or task unless
  `no_alert_for_canceled_runs`, and a SKIPPED run (MAXIMUM_CONCURRENT_RUNS_REACHED) or a task skipped
  because an upstream task failed or was canceled unless `no_alert_for_skipped_runs` (the deprecated
  `email_notifications.no_alert_for_skipped_runs` drops the emails only);
- `on_duration_warning_threshold_exceeded`: the `duration_warning` event of a health rule
  RUN_DURATION_SECONDS GREATER_THAN n, the run's (job level) or the task's (task level);
- task level `alert_on_last_attempt`: no `on_start` for retries, no `on_failure` before the last attempt
  (without it, every failed attempt sends `on_failure`).

EXCLUDED and DISABLED tasks (a condition branch not taken, a disabled task) send nothing.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["NOTIFICATION_EVENTS", "Notice", "classify", "notices_for"]

# The events nbjobs sends (databricks-sdk `jobs.WebhookNotifications` fields that have a local meaning).
NOTIFICATION_EVENTS = ("on_start", "on_success", "on_failure", "on_duration_warning_threshold_exceeded")

_FAILED = frozenset({"FAILED", "TIMEDOUT"})
_SKIPPED = frozenset({"MAXIMUM_CONCURRENT_RUNS_REACHED", "UPSTREAM_FAILED", "UPSTREAM_CANCELED"})
_SUCCEEDED = frozenset({"SUCCESS", "SUCCESS_WITH_FAILURES"})


@dataclass(frozen=True)
class Notice:
    """One notification to send: `event` (on_failure ...) of the run (task_key None) or of a task, to an
    email address (channel "email") or a destination id (channel "webhook")."""
    event: str
    channel: str
    target: str
    task_key: str | None = None


def classify(kind: str, *, task_level: bool, result_state: str | None = None,
             life_cycle_state: str | None = None, attempt_number: int = 0) -> tuple[str | None, str]:
    """(notification event or None, why: "" | "skipped" | "canceled" | "retry") of a bus event kind."""
    if kind == "duration_warning":
        return "on_duration_warning_threshold_exceeded", ""
    if kind in ("run_start", "task_start"):
        return "on_start", "retry" if attempt_number > 0 else ""
    if kind == "task_retry":  # a failed attempt that will be retried
        return "on_failure", "retry"
    if kind not in ("run_end", "task_end"):
        return None, ""
    if life_cycle_state == "INTERNAL_ERROR":
        return "on_failure", ""
    if result_state in _SUCCEEDED:
        return "on_success", ""
    if result_state in _FAILED:
        return "on_failure", ""
    if result_state == "CANCELED":
        return "on_failure", "canceled"
    if result_state in _SKIPPED or (not task_level and life_cycle_state == "SKIPPED"):
        return "on_failure", "skipped"
    return None, ""  # EXCLUDED, DISABLED: nothing happened worth a message


def _flag(section: Any, name: str) -> bool:
    return isinstance(section, Mapping) and section.get(name) is True


def _recipients(settings: Mapping[str, Any], event: str, why: str, task_key: str | None) -> list[Notice]:
    notify = settings.get("notification_settings")
    if why == "skipped" and _flag(notify, "no_alert_for_skipped_runs"):
        return []
    if why == "canceled" and _flag(notify, "no_alert_for_canceled_runs"):
        return []
    if why == "retry" and task_key is not None and _flag(notify, "alert_on_last_attempt"):
        return []
    out = []
    emails = settings.get("email_notifications")
    if isinstance(emails, Mapping) and not (why == "skipped" and _flag(emails, "no_alert_for_skipped_runs")):
        for address in emails.get(event) or ():
            if isinstance(address, str) and address:
                out.append(Notice(event, "email", address, task_key))
    hooks = settings.get("webhook_notifications")
    if isinstance(hooks, Mapping):
        for hook in hooks.get(event) or ():
            if isinstance(hook, Mapping) and isinstance(hook.get("id"), str):
                out.append(Notice(event, "webhook", hook["id"], task_key))
    return list(dict.fromkeys(out))  # one message per recipient and event


def notices_for(kind: str, job: Mapping[str, Any], *, task_key: str | None = None,
                result_state: str | None = None, life_cycle_state: str | None = None,
                attempt_number: int = 0) -> list[Notice]:
    """The notifications a bus event (`kind`, see nbjobs.events.EVENT_KINDS) of a run of `job` (JobSettings
    as a dict) sends: the job's for run events, the task's for task events (task_key given)."""
    if kind in ("run_start", "run_end") or (kind == "duration_warning" and task_key is None):
        event, why = classify(kind, task_level=False, result_state=result_state, life_cycle_state=life_cycle_state)
        return _recipients(job, event, why, None) if event else []
    if task_key is None:
        return []
    task = next((t for t in job.get("tasks") or () if isinstance(t, Mapping) and t.get("task_key") == task_key),
                None)
    if task is None:
        return []
    event, why = classify(kind, task_level=True, result_state=result_state, life_cycle_state=life_cycle_state,
                          attempt_number=attempt_number)
    return _recipients(task, event, why, task_key) if event else []
