"""`scheduler`: starts the runs of jobs' schedules (`schedule`) and periodic triggers (`trigger.periodic`).

Once per workspace (a lease), and each slot is also claimed in the store (`trigger_slots`, one row per
job and slot), so a slot starts at most one run however many hosts share the workspace, also across a
lease takeover. Runs start through `Workspace.start_run(trigger="PERIODIC", trigger_time=slot)` (the
Jobs API's TriggerType for schedules), so `max_concurrent_runs` and the queue apply and
`{{job.trigger.time.*}}` is the slot's time. The job settings are re-read every `interval` seconds (a
cheap query; only changed settings are parsed), so jobs/update, jobs/reset and a re-`run` of a file take
effect without a restart. A slot reached more than `grace` seconds late is recorded MISSED, not run.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import or_, select

from ..schedule.slots import JobTimer, due, from_ms, to_ms
from ..store import schema
from .base import LoopService, ServiceContext, in_thread

TRIGGER = "PERIODIC"


class SchedulerService(LoopService):
    name = "scheduler"
    once_per_workspace = True
    description = "starts the runs of job schedules and periodic triggers (each slot once)"
    interval = 1.0
    interval_env = "NBJOBS_SCHEDULER_INTERVAL"

    def __init__(self, interval: float | None = None, grace: float | None = None) -> None:
        super().__init__(interval)
        self.grace = float(grace if grace is not None else os.environ.get("NBJOBS_SCHEDULER_GRACE", 60))
        self.timers: dict[int, JobTimer] = {}
        self.started: list[int] = []
        self.missed = 0
        self.last_check: float | None = None

    async def start(self, context: ServiceContext) -> None:
        self.last_check = None  # the first check settles the slots a dead lease holder left half-started
        await super().start(context)

    def next_wait(self) -> float:
        """Wake at the next slot when it comes before the next check."""
        upcoming = [t.next.timestamp() for t in self.timers.values() if t.next is not None]
        return max(0.0, min(self.interval, min(upcoming) - time.time())) if upcoming else self.interval

    async def run_once(self) -> None:
        assert self.context is not None
        await in_thread(self.tick)

    def tick(self, now: datetime | None = None) -> None:
        """One check: notice changed settings, start the due slots, record missed ones."""
        assert self.context is not None
        store = self.context.store
        now = now or datetime.now(timezone.utc)
        if self.last_check is None:  # first check while holding the lease: a dead holder's half-started slots
            store.settle_claims(self.context.holder)
        jobs = schema.jobs
        query = select(jobs.c.job_id, jobs.c.settings_json, jobs.c.created_time).where(
            or_(jobs.c.settings_json.like('%"schedule"%'), jobs.c.settings_json.like('%"trigger"%')))
        with store.engine.connect() as conn:
            rows = list(conn.execute(query))
        seen = set()
        last_slots: dict[int, int] | None = None
        for job_id, text, created in rows:
            seen.add(job_id)
            timer = self.timers.get(job_id)
            if timer is None or timer.text != text:
                try:
                    settings = json.loads(text)
                    if timer is None:
                        timer = self.timers[job_id] = JobTimer.of(text, settings, created)
                    else:
                        timer.changed(text, settings)
                except (ValueError, KeyError, TypeError) as exc:  # stored settings nbjobs cannot read
                    self.context.log.warning("nbjobs scheduler: job %s: %s", job_id, exc)
                    continue
            if timer.when is None:
                continue
            if timer.next is None and not timer.when.paused:
                if last_slots is None:
                    last_slots = store.last_slot_times()
            last = last_slots.get(job_id) if last_slots else None
            found = due(timer, now, from_ms(last) if last is not None else None, self.grace)
            for slot in found.missed:
                store.claim_slot(job_id, to_ms(slot), TRIGGER, self.context.holder, status="MISSED",
                                 message=_missed_message(found.missed_count))
            self.missed += found.missed_count
            for slot in found.start:
                self._start(job_id, slot)
        for job_id in set(self.timers) - seen:  # deleted, or no longer scheduled
            del self.timers[job_id]
        self.last_check = time.time()

    def _start(self, job_id: int, slot: datetime) -> None:
        assert self.context is not None
        store, slot_ms = self.context.store, to_ms(slot)
        if not store.claim_slot(job_id, slot_ms, TRIGGER, self.context.holder):
            return  # another scheduler started it
        try:
            workspace = self.context.workspace()
            run_id = workspace.start_run(job_id, trigger=TRIGGER, trigger_time=slot_ms)
            workspace.execute(run_id, wait=False)
        except Exception as exc:  # noqa: BLE001 - recorded on the slot, the other jobs go on
            store.finish_slot(job_id, slot_ms, status="FAILED", message=f"{type(exc).__name__}: {exc}")
            self.context.log.warning("nbjobs scheduler: job %s slot %s: %s", job_id, slot.isoformat(), exc)
            return
        store.finish_slot(job_id, slot_ms, status="STARTED", run_id=run_id)
        self.started = (self.started + [run_id])[-100:]
        self.context.log.info("nbjobs scheduler: job %s: run %s for %s", job_id, run_id, slot.isoformat())

    def health(self) -> dict[str, Any]:
        upcoming = [t.next for t in self.timers.values() if t.next is not None]
        return {**super().health(), "interval": self.interval, "last_check": self.last_check,
                "scheduled_jobs": len(upcoming), "next_slot": min(upcoming).isoformat() if upcoming else None,
                "started_runs": self.started[-10:], "missed_slots": self.missed}


def _missed_message(count: int) -> str:
    more = f" ({count} slots missed in all; the last {min(count, 10)} are listed)" if count > 10 else ""
    return ("no run: the scheduler was not running at this time and missed slots are not backfilled" + more)
