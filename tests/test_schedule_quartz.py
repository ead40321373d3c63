"""Quartz cron next fire times, table-driven (pure): L, W, LW, #, names, year field, leap years, DST."""
from datetime import datetime, timezone

import pytest

from nbjobs.schedule.quartz import CronError, next_fire_times, parse, zone
from nbjobs.schedule.settings import When, when_of, with_pause_status

pytestmark = pytest.mark.pure


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


FIRE_TIMES = [
    # expression, zone, after (UTC), expected ISO times in the zone
    ("0 15 10 ? * 6L", "Europe/Paris", "2026-01-01T00:00",  # last Friday of the month
     ["2026-01-30T10:15:00+01:00", "2026-02-27T10:15:00+01:00", "2026-03-27T10:15:00+01:00",
      "2026-04-24T10:15:00+02:00"]),
    ("0 15 10 ? * FRIL", "UTC", "2026-01-01T00:00", ["2026-01-30T10:15:00+00:00"]),
    ("0 0 12 LW * ?", "UTC", "2026-01-01T00:00",  # last weekday: Sat 31 Jan -> Fri 30, Sat 28 Feb -> 27
     ["2026-01-30T12:00:00+00:00", "2026-02-27T12:00:00+00:00", "2026-03-31T12:00:00+00:00"]),
    ("0 0 0 L * ?", "UTC", "2028-02-01T00:00", ["2028-02-29T00:00:00+00:00", "2028-03-31T00:00:00+00:00"]),
    ("0 0 0 L * ?", "UTC", "2026-02-01T00:00", ["2026-02-28T00:00:00+00:00"]),
    ("0 0 0 L-2 * ?", "UTC", "2026-02-01T00:00", ["2026-02-26T00:00:00+00:00", "2026-03-29T00:00:00+00:00"]),
    ("0 0 0 15W * ?", "UTC", "2026-08-01T00:00", ["2026-08-14T00:00:00+00:00",  # Sat 15 -> Fri 14
                                                   "2026-09-15T00:00:00+00:00"]),
    ("0 0 0 1W * ?", "UTC", "2026-07-31T12:00", ["2026-08-03T00:00:00+00:00"]),  # Sat 1 -> Mon 3, not July
    ("0 0 0 31W * ?", "UTC", "2026-05-01T00:00", ["2026-05-29T00:00:00+00:00",  # Sun 31 -> Fri 29
                                                   "2026-07-31T00:00:00+00:00"]),  # months without a 31st skip
    ("0 0 12 ? * 2#1", "UTC", "2026-01-01T00:00", ["2026-01-05T12:00:00+00:00", "2026-02-02T12:00:00+00:00"]),
    ("0 0 12 ? * MON#5", "UTC", "2026-01-01T00:00", ["2026-03-30T12:00:00+00:00", "2026-06-29T12:00:00+00:00"]),
    ("0 0 9 ? JAN,JUL MON-FRI", "UTC", "2026-06-30T12:00", ["2026-07-01T09:00:00+00:00"]),
    ("0 0 8 ? * 1", "UTC", "2026-01-01T00:00", ["2026-01-04T08:00:00+00:00"]),  # 1 = Sunday
    ("0 0 8 ? * 7", "UTC", "2026-01-01T00:00", ["2026-01-03T08:00:00+00:00"]),  # 7 = Saturday
    ("0 0 8 ? * L", "UTC", "2026-01-01T00:00", ["2026-01-03T08:00:00+00:00"]),  # L alone = Saturday
    ("0 0 8 ? * sun", "UTC", "2026-01-01T00:00", ["2026-01-04T08:00:00+00:00"]),  # names in any case
    ("0 0 8 ? * FRI-MON", "UTC", "2026-01-01T00:00",  # a wrapping range
     ["2026-01-02T08:00:00+00:00", "2026-01-03T08:00:00+00:00", "2026-01-04T08:00:00+00:00",
      "2026-01-05T08:00:00+00:00", "2026-01-09T08:00:00+00:00"]),
    ("0 0 22-1 * * ?", "UTC", "2026-01-01T21:30", ["2026-01-01T22:00:00+00:00", "2026-01-01T23:00:00+00:00",
                                                    "2026-01-02T00:00:00+00:00", "2026-01-02T01:00:00+00:00",
                                                    "2026-01-02T22:00:00+00:00"]),
    ("0/20 * * * * ?", "UTC", "2026-01-01T00:00", ["2026-01-01T00:00:20+00:00", "2026-01-01T00:00:40+00:00",
                                                    "2026-01-01T00:01:00+00:00"]),
    ("0 10-40/15 * * * ?", "UTC", "2026-01-01T00:00", ["2026-01-01T00:10:00+00:00", "2026-01-01T00:25:00+00:00",
                                                        "2026-01-01T00:40:00+00:00", "2026-01-01T01:10:00+00:00"]),
    ("0 0 12 1 */5 ?", "UTC", "2026-01-01T13:00", ["2026-06-01T12:00:00+00:00", "2026-11-01T12:00:00+00:00",
                                                    "2027-01-01T12:00:00+00:00"]),
    ("* * * * * ?", "UTC", "2026-01-01T00:00",  # at least 10 s between schedule-triggered runs
     ["2026-01-01T00:00:01+00:00", "2026-01-01T00:00:11+00:00", "2026-01-01T00:00:21+00:00"]),
    # year field and leap years
    ("0 0 0 1 1 ? 2025", "UTC", "2026-01-01T00:00", []),
    ("0 0 0 1 1 ? 2027-2028", "UTC", "2026-01-01T00:00", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"]),
    ("0 0 0 29 2 ?", "UTC", "2026-01-01T00:00", ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]),
    ("0 0 0 29 2 ? 2096/4", "UTC", "2026-01-01T00:00", ["2096-02-29T00:00:00+00:00"]),
    # DST, Europe/Paris: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00
    ("0 30 2 * * ?", "Europe/Paris", "2026-03-28T00:00",  # 02:30 does not exist on the 29th: skipped
     ["2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00"]),
    ("0 30 2 * * ?", "Europe/Paris", "2026-10-24T12:00",  # 02:30 twice on the 25th: the first one only
     ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
    ("0 0 10 * * ?", "Europe/Paris", "2026-03-28T12:00", ["2026-03-29T10:00:00+02:00"]),
    # DST, America/New_York: 2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00
    ("0 30 2 * * ?", "America/New_York", "2026-03-07T12:00", ["2026-03-09T02:30:00-04:00"]),
    ("0 0/30 * * * ?", "America/New_York", "2026-11-01T04:45",  # the repeated hour fires nothing
     ["2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T02:00:00-05:00",
      "2026-11-01T02:30:00-05:00"]),
    ("0 0/30 * * * ?", "America/New_York", "2026-11-01T06:10",  # from inside the repeated hour
     ["2026-11-01T02:00:00-05:00"]),
    ("0 0/30 1-3 * * ?", "America/New_York", "2026-03-08T05:00",  # 02:00 and 02:30 do not exist
     ["2026-03-08T01:00:00-05:00", "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00",
      "2026-03-08T03:30:00-04:00"]),
]


@pytest.mark.parametrize("expression,tz,after,expected", FIRE_TIMES, ids=[f"{c[0]}@{c[1]}" for c in FIRE_TIMES])
def test_next_fire_times(expression, tz, after, expected):
    got = next_fire_times(expression, tz, utc(after), max(len(expected), 1) if expected else 5)
    assert [t.isoformat() for t in got] == expected


INVALID = [
    ("0 0 12 * * MON", "day-of-month", "exactly one of day-of-month and day-of-week"),
    ("0 0 12 ? * ?", "day-of-week", "both are '?'"),
    ("0 0 25 * * ?", "hours", "25 is outside 0-23"),
    ("60 * * * * ?", "seconds", "60 is outside 0-59"),
    ("0 0 12 ? * 2#6", "day-of-week", "1-5"),
    ("0 0 12 ? * 1,2#1", "day-of-week", "'#' takes one day"),
    ("0 0 12 1,L * ?", "day-of-month", "cannot be combined with other days"),
    ("0 0 12 1-5W * ?", "day-of-month", "'W' follows one day number"),
    ("0 0 12 ? FOO *", "month", "'FOO' is not a number 1-12 or JAN-DEC"),
    ("0 0 12 ? * MON 1969", "year", "1969 is outside 1970-2099"),
    ("0 0 12 ? * MON 2030-2020", "year", "start year"),
    ("0 0 L * * ?", "hours", "only in day-of-month and day-of-week"),
    ("0 0/0 * * * ?", "minutes", "positive integer"),
    ("0 ? 12 * * ?", "minutes", "'?' is allowed only"),
]


@pytest.mark.parametrize("expression,field,text", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_expressions_name_the_field_and_part(expression, field, text):
    with pytest.raises(CronError) as info:
        parse(expression)
    assert info.value.field == field
    assert text in str(info.value)
    assert info.value.part and info.value.part in expression.upper()


def test_field_count_and_unix_hint():
    with pytest.raises(CronError, match="has 5 fields.*Unix cron"):
        parse("0 6 * * *")


def test_time_zones():
    assert zone("Europe/Paris").key == "Europe/Paris"
    assert zone("UTC").key == "UTC"
    with pytest.raises(CronError, match="did you mean Europe/Paris"):
        zone("Europe/Pari")


def test_when_and_pause_status():
    settings = {"schedule": {"quartz_cron_expression": "0 0 6 * * ?", "timezone_id": "UTC", "pause_status": "PAUSED"}}
    when = when_of(settings)
    assert when == When("schedule", True, expression="0 0 6 * * ?", timezone_id="UTC")
    assert with_pause_status(settings, "UNPAUSED")["schedule"]["pause_status"] == "UNPAUSED"
    periodic = when_of({"trigger": {"periodic": {"interval": 2, "unit": "HOURS"}}})
    assert periodic.period_seconds == 7200 and not periodic.paused
    anchor = utc("2026-01-01T00:00")
    assert periodic.next_after(utc("2026-01-01T03:00"), 2, anchor=anchor) == [utc("2026-01-01T04:00"),
                                                                             utc("2026-01-01T06:00")]
    with pytest.raises(ValueError, match="no schedule, trigger or continuous"):
        with_pause_status({}, "PAUSED")


TASKS = [{"task_key": "a", "spark_python_task": {"python_file": "a.py"}}]
VALIDATION = [
    ({"schedule": {"quartz_cron_expression": "0 0 6 * * *", "timezone_id": "UTC"}},
     "schedule.quartz_cron_expression", "day-of-month is '*' and day-of-week is '*'"),
    ({"schedule": {"quartz_cron_expression": "0 0 6 ? * MON", "timezone_id": "Europe/Pari"}},
     "schedule.timezone_id", "'Europe/Pari' is not a known time-zone id"),
    ({"schedule": {"quartz_cron_expression": "0 0 6 ? * MON"}}, "schedule.timezone_id", "needs a time zone"),
    ({"schedule": {"quartz_cron_expression": "0 0 6 ? * MON", "timezone_id": "UTC", "pause_status": "OFF"}},
     "schedule.pause_status", "'OFF' is not a pause status"),
    ({"schedule": {"quartz_cron_expression": "0 0 6 ? * MON", "timezone_id": "UTC", "sql_condition": {}}},
     "schedule.sql_condition", "SQL warehouse"),
    ({"trigger": {"model": {"condition": "MODEL_CREATED"}}}, "trigger.model", "model registry"),
    ({"trigger": {"sql_condition": {}}}, "trigger.sql_condition", "SQL warehouse"),
    ({"trigger": {"table_update": {"table_names": ["a.b.c"]}}}, "trigger.table_update", "SQL warehouse"),
    ({"trigger": {"job_completion": {}}}, "trigger.job_completion", "not available"),
    ({"trigger": {"periodic": {"interval": 0, "unit": "HOURS"}}}, "trigger.periodic.interval", "positive"),
    ({"trigger": {"periodic": {"interval": 1, "unit": "SECONDS"}}}, "trigger.periodic.unit", "is not a time unit"),
    ({"trigger": {"pause_status": "PAUSED"}}, "trigger", "names no trigger type"),
    ({"schedule": {"quartz_cron_expression": "0 0 6 ? * MON", "timezone_id": "UTC"},
      "trigger": {"periodic": {"interval": 1, "unit": "HOURS"}}}, "trigger", "at most one of"),
]


@pytest.mark.parametrize("extra,path,text", VALIDATION, ids=[c[1] for c in VALIDATION])
def test_validation_names_the_field(extra, path, text):
    from nbjobs.spec.validate import validate_job_settings
    problems = validate_job_settings({"name": "j", "tasks": TASKS, **extra})
    assert any(p.path == path and text in p.message for p in problems), problems


def test_valid_schedule_and_periodic_trigger():
    from nbjobs.spec.validate import validate_job_settings
    for extra in ({"schedule": {"quartz_cron_expression": "0 15 10 ? * 6L 2026-2030", "timezone_id": "Asia/Tokyo",
                                "pause_status": "PAUSED"}},
                  {"trigger": {"periodic": {"interval": 3, "unit": "WEEKS"}, "pause_status": "UNPAUSED"}}):
        assert validate_job_settings({"name": "j", "tasks": TASKS, **extra}) == []


@pytest.mark.parametrize("expression,words", [
    ("0 15 10 ? * 6L", "at 10:15 on the last Friday of every month, Europe/Paris"),
    ("0 30 2 * * ?", "at 02:30 every day, Europe/Paris"),
    ("0 0 12 LW * ?", "at 12:00 on the last weekday of every month, Europe/Paris"),
    ("0 0 9 ? JAN,JUL MON-FRI", "at 09:00 on Monday to Friday in January and July, Europe/Paris"),
    ("0 0/15 * * * ?", "every 15 minutes, Europe/Paris"),
    ("0 0 12 ? * 2#1 2026", "at 12:00 on the first Monday of every month in 2026, Europe/Paris"),
    ("0 0 0 15W * ?", "at 00:00 on the weekday nearest the 15th of every month, Europe/Paris"),
    ("0 0 8 ? * 1,3,5", "at 08:00 on Sunday, Tuesday and Thursday, Europe/Paris"),
    ("0 5 * * * ?", "at minute 5 of every hour, Europe/Paris"),
    ("0 0/30 9-17 ? * MON-FRI", "every 30 minutes between 09:00-17:59 on Monday to Friday, Europe/Paris"),
    ("0 0 0 L-2 * ?", "at 00:00 2 days before the last day of every month, Europe/Paris"),
    ("0 0 6,18 1,15 * ?", "at 06:00 and 18:00 on the 1st and 15th of every month, Europe/Paris"),
])
def test_describe_in_words(expression, words):
    from nbjobs.schedule.describe import describe
    assert describe(expression, "Europe/Paris") == words
