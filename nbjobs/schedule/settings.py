"""A job's `schedule`, `trigger` and `continuous` settings: validation, what the scheduler runs, pause/resume.

Field names are the Jobs API's (databricks-sdk `CronSchedule`, `TriggerSettings`, `PeriodicTriggerConfiguration`,
`Continuous`). A setting nbjobs cannot honour locally is a validation problem naming it, never ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from ..errors import Problem
from .file_arrival import url_problem
from .quartz import CronError, next_fire_times, parse, zone

PAUSE_STATUSES = ("PAUSED", "UNPAUSED")
# databricks-sdk PeriodicTriggerConfigurationTimeUnit
PERIODIC_UNITS = {"MINUTES": 60, "HOURS": 3600, "DAYS": 86400, "WEEKS": 7 * 86400}
# TriggerSettings fields nbjobs runs, and those it cannot (with the reason shown to the user)
TRIGGER_KINDS = ("periodic", "file_arrival")
UNSUPPORTED_TRIGGERS = {
    "table_update": "table-update triggers need the embedded SQL warehouse, which this nbjobs does not have yet",
    "table": "table-update triggers (`table` is table_update's old name) need the embedded SQL warehouse, "
             "which this nbjobs does not have yet",
    "model": "model triggers watch a Databricks model registry, which has no local equivalent",
    "sql_condition": "SQL-condition triggers need a Databricks SQL warehouse, which has no local equivalent",
    "job_completion": "job-completion triggers are not available in this nbjobs",
}
TASK_RETRY_MODES = ("NEVER", "ON_FAILURE")  # databricks-sdk TaskRetryMode; nbjobs runs NEVER


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def check_when(data: Mapping[str, Any]) -> list[Problem]:
    """Problems of a job's `schedule`, `trigger` and `continuous` (empty when they are fine or absent)."""
    problems: list[Problem] = []
    add = lambda path, message, fix="": problems.append(Problem(path, message, fix))  # noqa: E731
    present = [k for k in ("schedule", "trigger", "continuous") if data.get(k) is not None]
    if len(present) > 1:
        add(present[1], f"a job has at most one of schedule, trigger and continuous (this one sets "
            f"{' and '.join(present)})", f"keep one of {', '.join(present)}")
    schedule, trigger, continuous = data.get("schedule"), data.get("trigger"), data.get("continuous")
    if isinstance(schedule, Mapping):
        _check_schedule(schedule, add)
    if isinstance(trigger, Mapping):
        _check_trigger(trigger, add)
    elif trigger is not None:
        add("trigger", f"expected an object such as {{periodic: {{interval: 1, unit: HOURS}}}}, not {trigger!r}")
    if isinstance(continuous, Mapping):
        _check_pause(continuous.get("pause_status"), "continuous.pause_status", add)
        mode = continuous.get("task_retry_mode")
        if mode == "ON_FAILURE":
            add("continuous.task_retry_mode", "ON_FAILURE (retry a failed task while another task still runs "
                "its first attempt) is not available in nbjobs", "leave task_retry_mode out or set NEVER: a "
                "failed run ends and a new one starts, with backoff")
        elif mode is not None and mode not in TASK_RETRY_MODES:
            add("continuous.task_retry_mode", f"{mode!r} is not a task retry mode", "use NEVER or ON_FAILURE")
        if continuous.get("maintenance_window") is not None:
            add("continuous.maintenance_window", "platform maintenance windows have no local equivalent",
                "remove continuous.maintenance_window")
        limit = data.get("max_concurrent_runs")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 1:
            add("max_concurrent_runs", f"a continuous job has exactly one active run; {limit} is more",
                "leave max_concurrent_runs out or set it to 1")
    elif continuous is not None:
        add("continuous", f"expected an object such as {{pause_status: UNPAUSED}}, not {continuous!r}")
    return problems


def _check_pause(value: Any, path: str, add) -> None:
    if value is not None and value not in PAUSE_STATUSES:
        add(path, f"{value!r} is not a pause status", "use PAUSED or UNPAUSED")


def _check_schedule(schedule: Mapping[str, Any], add) -> None:
    expr, tz = _text(schedule.get("quartz_cron_expression")), schedule.get("timezone_id")
    if expr is None:
        add("schedule.quartz_cron_expression", "a schedule needs a Quartz cron expression",
            "set quartz_cron_expression, e.g. '0 0 6 * * ?' (every day at 06:00)")
    elif isinstance(expr, str):
        try:
            parse(expr)
        except CronError as exc:
            add("schedule.quartz_cron_expression", str(exc),
                "write seconds minutes hours day-of-month month day-of-week [year], with '?' in exactly one "
                "of the day fields, e.g. '0 15 10 ? * MON-FRI'")
    if tz is None:
        add("schedule.timezone_id", "a schedule needs a time zone", "set timezone_id, e.g. UTC or Europe/Paris")
    elif isinstance(tz, str):
        try:
            zone(tz)
        except CronError as exc:
            add("schedule.timezone_id", str(exc), "use a Java time-zone id such as Europe/Paris or UTC")
    _check_pause(schedule.get("pause_status"), "schedule.pause_status", add)
    if schedule.get("sql_condition") is not None:
        add("schedule.sql_condition", UNSUPPORTED_TRIGGERS["sql_condition"], "remove schedule.sql_condition")


def _check_trigger(trigger: Mapping[str, Any], add) -> None:
    _check_pause(trigger.get("pause_status"), "trigger.pause_status", add)
    kinds = [k for k in trigger if k != "pause_status" and trigger.get(k) is not None]
    for kind in kinds:
        if kind in UNSUPPORTED_TRIGGERS:
            add(f"trigger.{kind}", UNSUPPORTED_TRIGGERS[kind],
                f"remove trigger.{kind}; nbjobs runs schedule, trigger.periodic and trigger.file_arrival")
        elif kind not in TRIGGER_KINDS:
            add(f"trigger.{kind}", "is not a trigger type",
                "use trigger.periodic {interval, unit} or trigger.file_arrival {url}")
    if not kinds:
        add("trigger", "names no trigger type", "add periodic: {interval: 1, unit: HOURS}")
    elif len(kinds) > 1:
        add("trigger", f"sets {' and '.join(kinds)}; a trigger has exactly one type", "keep one of them")
    periodic = trigger.get("periodic")
    if isinstance(periodic, Mapping):
        interval, unit = periodic.get("interval"), periodic.get("unit")
        try:
            ok = int(_text(interval)) >= 1 and not isinstance(interval, bool)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            add("trigger.periodic.interval", f"{interval!r} is not a positive whole number",
                "set interval: 1 or more (with unit: MINUTES, HOURS, DAYS or WEEKS)")
        if unit not in PERIODIC_UNITS:
            add("trigger.periodic.unit", f"{unit!r} is not a time unit", f"use one of {', '.join(PERIODIC_UNITS)}")
    elif periodic is not None:
        add("trigger.periodic", f"expected {{interval, unit}}, not {periodic!r}")
    arrival = trigger.get("file_arrival")
    if isinstance(arrival, Mapping):
        problem = url_problem(arrival.get("url"))
        if problem:
            add("trigger.file_arrival.url", problem, "e.g. url: /Volumes/main/default/landing/ or /data/incoming")
        for name in ("min_time_between_triggers_seconds", "wait_after_last_change_seconds"):
            value = arrival.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                add(f"trigger.file_arrival.{name}", f"{value!r} is not a whole number of seconds >= 0",
                    "leave it out, or give seconds (Databricks requires at least 60)")
    elif arrival is not None:
        add("trigger.file_arrival", f"expected {{url, ...}}, not {arrival!r}")


# -- what the scheduler reads ---------------------------------------------------------------------
@dataclass(frozen=True)
class When:
    """When a job runs by itself: `kind` is "schedule" or "periodic"."""
    kind: str
    paused: bool
    expression: str | None = None
    timezone_id: str | None = None
    period_seconds: int | None = None

    def next_after(self, after: datetime, count: int = 1, *, anchor: datetime | None = None) -> list[datetime]:
        """The next `count` fire times after `after` (aware). A periodic trigger counts its interval from
        `anchor` (its last slot, or when it was set up)."""
        if self.kind == "schedule":
            return next_fire_times(self.expression or "", self.timezone_id or "UTC", after, count)
        period = timedelta(seconds=self.period_seconds or 60)
        base = anchor or after
        steps = max(0, int((after - base) / period)) + 1
        return [base + period * (steps + i) for i in range(count)]


def when_of(settings: Mapping[str, Any]) -> When | None:
    """The schedule or periodic trigger of valid job settings (None: the job runs only when started)."""
    schedule, trigger = settings.get("schedule"), settings.get("trigger")
    if isinstance(schedule, Mapping) and schedule.get("quartz_cron_expression"):
        return When("schedule", schedule.get("pause_status") == "PAUSED",
                    expression=str(schedule["quartz_cron_expression"]),
                    timezone_id=str(schedule.get("timezone_id") or "UTC"))
    if isinstance(trigger, Mapping) and isinstance(trigger.get("periodic"), Mapping):
        periodic = trigger["periodic"]
        return When("periodic", trigger.get("pause_status") == "PAUSED",
                    period_seconds=int(periodic["interval"]) * PERIODIC_UNITS[str(periodic["unit"])])
    return None


def with_pause_status(settings: Mapping[str, Any], status: str) -> dict[str, Any]:
    """The `{schedule|trigger|continuous: ...}` fields of a jobs/update `new_settings` that set the pause
    status of whichever of them the job has (ValueError when it has none)."""
    if status not in PAUSE_STATUSES:
        raise ValueError(f"pause_status {status!r}: use PAUSED or UNPAUSED")
    for field in ("schedule", "trigger", "continuous"):
        value = settings.get(field)
        if isinstance(value, Mapping):
            return {field: {**value, "pause_status": status}}
    raise ValueError("the job has no schedule, trigger or continuous setting to pause or resume; add one "
                     "(e.g. schedule: {quartz_cron_expression: '0 0 6 * * ?', timezone_id: UTC})")
