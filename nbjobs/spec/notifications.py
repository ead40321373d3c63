"""Notification fields of a job and of its tasks: their validation and notes.

Fields after databricks-sdk `jobs.JobEmailNotifications` / `TaskEmailNotifications` (lists of addresses),
`jobs.WebhookNotifications` (lists of `{id}`, at most 3 per event) and `jobs.JobNotificationSettings` /
`TaskNotificationSettings`. With the workspace's destination ids known (`destinations`), a webhook naming
another id is an error listing the known ones; without a workspace (None) ids are not checked.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ..errors import Problem
from ..notify.rules import NOTIFICATION_EVENTS
from .problems import key_label as _key_label, show as _show

WEBHOOKS_PER_EVENT = 3  # Jobs API: at most 3 destinations per event
# Accepted, never sent locally (a note): nbjobs runs no streams and has no platform maintenance.
_NO_LOCAL_MEANING = {
    "on_streaming_backlog_exceeded": "nbjobs runs no streams",
    "on_maintenance_start": "nbjobs has no platform maintenance",
    "on_maintenance_complete": "nbjobs has no platform maintenance",
}
_SETTINGS = {"job": ("no_alert_for_skipped_runs", "no_alert_for_canceled_runs"),
             "task": ("no_alert_for_skipped_runs", "no_alert_for_canceled_runs", "alert_on_last_attempt")}
_EVENTS_FIX = "use " + ", ".join(NOTIFICATION_EVENTS)


def _level(holder: Mapping, path: str, level: str, destinations: Collection[str] | None) -> list[tuple[bool, Problem]]:
    out: list[tuple[bool, Problem]] = []
    prefix = f"{path}." if path else ""
    for section, item_kind in (("email_notifications", "email"), ("webhook_notifications", "webhook")):
        value = holder.get(section)
        where = prefix + section
        if value is None:
            continue
        if not isinstance(value, Mapping):
            out.append((False, Problem(where, f"must be a map of events to recipients, not {_show(value)}",
                                       "write on_failure: [...] (" + _EVENTS_FIX + ")")))
            continue
        for event, recipients in value.items():
            at = f"{where}.{event}"
            if section == "email_notifications" and event == "no_alert_for_skipped_runs":
                if not isinstance(recipients, bool):
                    out.append((False, Problem(at, f"must be true or false, not {_show(recipients)}",
                                               "write true or false")))
                continue
            if event in _NO_LOCAL_MEANING:
                if recipients:
                    out.append((True, Problem(at, f"is never sent: {_NO_LOCAL_MEANING[event]}", "")))
                continue
            if event not in NOTIFICATION_EVENTS:
                out.append((False, Problem(at, f"{_show(event)} is not a notification event", _EVENTS_FIX)))
                continue
            if recipients is None:
                continue
            if not isinstance(recipients, list):
                out.append((False, Problem(at, f"must be a list, not {_show(recipients)}",
                                           "write a list of addresses" if item_kind == "email"
                                           else "write a list of {id: <destination id>}")))
                continue
            if item_kind == "email":
                for i, address in enumerate(recipients):
                    if not isinstance(address, str) or "@" not in address:
                        out.append((False, Problem(f"{at}[{i}]", f"{_show(address)} is not an email address",
                                                   "write an address such as oncall@example.com")))
                continue
            if len(recipients) > WEBHOOKS_PER_EVENT:
                out.append((False, Problem(at, f"names {len(recipients)} destinations; at most "
                                               f"{WEBHOOKS_PER_EVENT} per event", "remove some")))
            for i, hook in enumerate(recipients):
                hook_id = hook.get("id") if isinstance(hook, Mapping) else None
                if not isinstance(hook_id, str) or not hook_id:
                    out.append((False, Problem(f"{at}[{i}]", f"must be {{id: <destination id>}}, not {_show(hook)}",
                                               "name a destination of the workspace config's notifications:")))
                elif destinations is not None and hook_id not in destinations:
                    known = ", ".join(sorted(destinations)) or "none (the workspace config has no destinations)"
                    out.append((False, Problem(f"{at}[{i}].id", f"{hook_id!r} is not a notification destination "
                                                                f"of this workspace; known ids: {known}",
                                               "use a known id, or add it under notifications.destinations in "
                                               "<NBJOBS_HOME>/config.yml")))
    settings = holder.get("notification_settings")
    if settings is not None:
        where = prefix + "notification_settings"
        if not isinstance(settings, Mapping):
            out.append((False, Problem(where, f"must be a map, not {_show(settings)}",
                                       "write {" + ", ".join(f"{k}: true" for k in _SETTINGS[level]) + "}")))
        else:
            for key, value in settings.items():
                if key not in _SETTINGS[level]:
                    out.append((False, Problem(f"{where}.{key}", f"is not a {level} notification setting",
                                               "use " + ", ".join(_SETTINGS[level]))))
                elif value is not None and not isinstance(value, bool):
                    out.append((False, Problem(f"{where}.{key}", f"must be true or false, not {_show(value)}",
                                               "write true or false")))
    return out


def notification_problems(data: Any, destinations: Collection[str] | None = None) -> list[tuple[bool, Problem]]:
    """(is a note, problem) of the job's and its tasks' notification fields."""
    if not isinstance(data, Mapping):
        return []
    out = _level(data, "", "job", destinations)
    tasks = data.get("tasks")
    for i, task in enumerate(tasks if isinstance(tasks, list) else []):
        if not isinstance(task, Mapping):
            continue
        label = f"tasks[{i}]" + _key_label(task)
        out += _level(task, label, "task", destinations)
        nested = task.get("for_each_task", {}).get("task") if isinstance(task.get("for_each_task"), Mapping) else None
        if isinstance(nested, Mapping):
            for section in ("email_notifications", "webhook_notifications"):
                if nested.get(section):
                    out.append((True, Problem(f"{label}.for_each_task.task.{section}",
                                              "is never sent: iterations send no notifications",
                                              f"set {section} on {label} (the for-each task) instead")))
    return out


def notification_notes(data: Any) -> list[Problem]:
    return [p for note, p in notification_problems(data) if note]
