"""The scheduler's slot logic (pure): no backfill (MISSED), late-but-in-grace slots, pause and resume, the
10 s spacing, settings changes, trigger_state, and one slot claimed once by two schedulers on one store."""
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from nbjobs.schedule.slots import JobTimer, due, to_ms, trigger_state
from nbjobs.services.base import ServiceContext
from nbjobs.services.scheduler import SchedulerService
from nbjobs.store import Store

pytestmark = pytest.mark.pure

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
EVERY_MINUTE = {"schedule": {"quartz_cron_expression": "0 * * * * ?", "timezone_id": "UTC"}}


def timer(settings, created=T0):
    return JobTimer.of(json.dumps(settings), settings, to_ms(created))


def test_first_sight_starts_from_now_and_fires_each_slot_once():
    t = timer(EVERY_MINUTE)
    assert due(t, T0 + timedelta(seconds=30), None, 60).start == []
    assert t.next == T0 + timedelta(minutes=1)
    found = due(t, T0 + timedelta(minutes=1, seconds=0.2), None, 60)
    assert found.start == [T0 + timedelta(minutes=1)] and found.missed == []
    assert due(t, T0 + timedelta(minutes=1, seconds=0.5), None, 60).start == []


def test_a_scheduler_that_was_down_records_missed_slots_and_does_not_backfill():
    t = timer(EVERY_MINUTE)
    last = T0 + timedelta(minutes=1)
    now = T0 + timedelta(minutes=5, seconds=30)  # slots 2, 3, 4 are > 60 s late; 5 is 30 s late
    found = due(t, now, last, grace=60)
    assert found.missed == [T0 + timedelta(minutes=m) for m in (2, 3, 4)] and found.missed_count == 3
    assert found.start == [T0 + timedelta(minutes=5)]
    assert t.next == T0 + timedelta(minutes=6)


def test_paused_slots_are_neither_run_nor_missed_and_resume_starts_from_now():
    paused = {"schedule": {**EVERY_MINUTE["schedule"], "pause_status": "PAUSED"}}
    t = timer(paused)
    assert due(t, T0 + timedelta(minutes=3), T0, 60).start == [] and t.next is None
    t.changed(json.dumps(EVERY_MINUTE), EVERY_MINUTE)
    found = due(t, T0 + timedelta(minutes=10, seconds=5), T0, 60)
    assert found.start == [] and found.missed == []
    assert t.next == T0 + timedelta(minutes=11)


def test_schedule_runs_are_at_least_10_seconds_apart_also_after_a_restart():
    every_second = {"schedule": {"quartz_cron_expression": "* * * * * ?", "timezone_id": "UTC"}}
    t = timer(every_second)
    t.fresh = False
    due(t, T0, T0 - timedelta(seconds=3), 60)  # a restart 3 s after the last slot
    assert t.next == T0 + timedelta(seconds=7)
    starts = due(t, T0 + timedelta(seconds=30), None, 60).start
    assert [(s - T0).total_seconds() for s in starts] == [7, 17, 27]


def test_a_changed_expression_starts_from_now():
    t = timer(EVERY_MINUTE)
    due(t, T0, None, 60)
    hourly = {"schedule": {"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC"}}
    t.changed(json.dumps(hourly), hourly)
    assert due(t, T0 + timedelta(minutes=2), None, 60).start == []
    assert t.next == T0 + timedelta(hours=1)


def test_periodic_slots_count_from_the_job_creation():
    periodic = {"trigger": {"periodic": {"interval": 2, "unit": "MINUTES"}}}
    t = timer(periodic, created=T0 + timedelta(seconds=7))
    due(t, T0 + timedelta(minutes=3), None, 60)
    assert t.next == T0 + timedelta(minutes=4, seconds=7)


def test_trigger_state():
    state = trigger_state(EVERY_MINUTE, to_ms(T0), [{"slot_time": to_ms(T0), "status": "STARTED", "run_id": 4,
                                                    "message": ""}], T0 + timedelta(seconds=1), count=2)
    assert state == {"pause_status": "UNPAUSED",
                     "next_fire_times": ["2026-01-01T00:01:00+00:00", "2026-01-01T00:02:00+00:00"],
                     "recent_slots": [{"slot_time": to_ms(T0), "status": "STARTED", "run_id": 4}]}
    assert trigger_state({"name": "x"}, 0, [], T0) is None


class _Recorder:
    """Stands in for the Workspace: records the runs a scheduler starts."""

    def __init__(self, fail_job=None):
        self.started, self.fail_job = [], fail_job

    def start_run(self, job_id, job_parameters=None, *, trigger, trigger_time):
        if job_id == self.fail_job:
            raise ValueError("job_parameters: bad")
        self.started.append((job_id, trigger, trigger_time))
        return 100 + len(self.started)

    def execute(self, run_id, *, wait):
        assert wait is False


def _scheduler(store, workspace, holder):
    service = SchedulerService(interval=1, grace=60)
    service.context = ServiceContext(home=store.home, store=store, holder=holder, log=logging.getLogger("t"),
                                     _workspace=workspace)
    return service


def test_two_schedulers_on_one_store_start_each_slot_once_and_failures_are_recorded(tmp_path):
    store = Store(tmp_path)
    job = {"name": "j", "tasks": [], **EVERY_MINUTE}
    ok = store.create_job(job)
    bad = store.create_job({**job, "name": "bad"})
    plain = store.create_job({"name": "plain", "tasks": []})
    a, b = _Recorder(fail_job=bad), _Recorder(fail_job=bad)
    first, second = _scheduler(store, a, "A"), _scheduler(store, b, "B")
    for service in (first, second):
        service.tick(T0 + timedelta(seconds=30))
    for service in (first, second):
        service.tick(T0 + timedelta(minutes=1, seconds=1))
    slot = to_ms(T0 + timedelta(minutes=1))
    assert a.started + b.started == [(ok, "PERIODIC", slot)]
    assert store.job_slots(ok)[0] | {"claimed_time": 0} == {
        "job_id": ok, "slot_time": slot, "trigger": "PERIODIC", "status": "STARTED", "run_id": 101,
        "holder": "A", "message": "", "detail": None, "claimed_time": 0}
    failed = store.job_slots(bad)[0]
    assert failed["status"] == "FAILED" and "job_parameters: bad" in failed["message"]
    assert store.job_slots(plain) == [] and plain not in first.timers
    store.delete_job(ok)
    first.tick(T0 + timedelta(minutes=1, seconds=2))
    assert ok not in first.timers
    store.close()
