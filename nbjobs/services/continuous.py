"""`continuous`: keeps exactly one active run of each continuous job (Jobs API `continuous`).

Once per workspace. Every `interval` seconds, a continuous job that is not paused and has no active run
gets a new run (trigger CONTINUOUS). After failed runs the next one waits `first * 2 ** (failures - 1)`
seconds, at most `cap` (`NBJOBS_CONTINUOUS_BACKOFF=first,cap`, default `10,600`); a successful run resets
it. The job's queue and max_concurrent_runs (1) apply as for any run.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

from sqlalchemy import select

from ..store import ACTIVE_STATES, schema
from .base import LoopService, in_thread

TRIGGER = "CONTINUOUS"
# Ended runs after which a continuous job starts its next run at once; any other result backs off.
_FINE = ("SUCCESS", "SUCCESS_WITH_FAILURES", "CANCELED")


def backoff_seconds(failures: int, first: float, cap: float) -> float:
    return 0.0 if failures <= 0 else min(cap, first * 2 ** (failures - 1))


def consecutive_failures(runs: list[dict]) -> int:
    """How many of the newest ended runs (newest first) failed in a row."""
    count = 0
    for run in runs:
        if run["result_state"] in _FINE:
            break
        count += 1
    return count


class ContinuousService(LoopService):
    name = "continuous"
    once_per_workspace = True
    description = "keeps one active run of each continuous job, restarting after failures with backoff"
    interval = 1.0
    interval_env = "NBJOBS_CONTINUOUS_INTERVAL"

    def __init__(self, interval: float | None = None, backoff: tuple[float, float] | None = None) -> None:
        super().__init__(interval)
        if backoff is None:
            first, _, cap = os.environ.get("NBJOBS_CONTINUOUS_BACKOFF", "10,600").partition(",")
            backoff = (float(first), float(cap or 600))
        self.backoff = backoff
        self.started: list[int] = []
        self.waiting: dict[int, float] = {}  # job_id -> when its next run may start (backing off)
        self.last_check: float | None = None

    async def run_once(self) -> None:
        await in_thread(self.tick)

    def tick(self) -> None:
        assert self.context is not None
        store = self.context.store
        jobs, runs = schema.jobs, schema.runs
        with store.engine.connect() as conn:
            rows = list(conn.execute(select(jobs.c.job_id, jobs.c.settings_json)
                                     .where(jobs.c.settings_json.like('%"continuous"%'))))
        waiting: dict[int, float] = {}
        for job_id, text in rows:
            continuous = json.loads(text).get("continuous")
            if not isinstance(continuous, dict) or continuous.get("pause_status") == "PAUSED":
                continue
            with store.engine.connect() as conn:
                recent = [dict(r._mapping) for r in conn.execute(
                    select(runs.c.run_id, runs.c.life_cycle_state, runs.c.result_state, runs.c.end_time)
                    .where(runs.c.job_id == job_id).order_by(runs.c.run_id.desc()).limit(20))]
            if any(r["life_cycle_state"] in ACTIVE_STATES for r in recent):
                continue
            failures = consecutive_failures(recent)
            if failures:
                ready = recent[0]["end_time"] / 1000 + backoff_seconds(failures, *self.backoff)
                if time.time() < ready:
                    waiting[job_id] = ready
                    continue
            self._start(job_id, failures)
        self.waiting = waiting
        self.last_check = time.time()

    def _start(self, job_id: int, failures: int) -> None:
        assert self.context is not None
        store, now_ms = self.context.store, int(time.time() * 1000)
        if not store.claim_slot(job_id, now_ms, TRIGGER, self.context.holder,
                                detail={"after_failures": failures} if failures else None):
            return
        try:
            workspace = self.context.workspace()
            run_id = workspace.start_run(job_id, trigger=TRIGGER, trigger_time=now_ms)
            workspace.execute(run_id, wait=False)
        except Exception as exc:  # noqa: BLE001 - recorded on the slot; retried next tick
            store.finish_slot(job_id, now_ms, status="FAILED", message=f"{type(exc).__name__}: {exc}")
            self.context.log.warning("nbjobs continuous: job %s: %s", job_id, exc)
            return
        store.finish_slot(job_id, now_ms, status="STARTED", run_id=run_id)
        self.started = (self.started + [run_id])[-100:]

    def health(self) -> dict[str, Any]:
        return {**super().health(), "interval": self.interval, "backoff": list(self.backoff),
                "last_check": self.last_check, "started_runs": self.started[-10:],
                "backing_off": {str(k): v for k, v in self.waiting.items()}}
