"""Trigger slots in the workspace store: each fire time of a job's schedule or trigger is claimed once.

A slot row is inserted in one BEGIN IMMEDIATE transaction with the primary key (job_id, slot_time), so
however many schedulers share the workspace, one of them claims a slot and starts its run; the others see
the row. Slots the scheduler could not start in time are kept with status MISSED (no backfill).
"""
from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from typing import Any, Callable

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from . import schema as t

# Slot statuses: STARTED (its run_id), MISSED (the scheduler was not running in time), FAILED (message).
KEEP_PER_JOB = 100  # older rows of a job are removed when new ones are claimed


class SlotStore:
    """Mixed into `Store`: claim a slot, record its outcome, read a job's recent slots."""

    engine: Engine
    _write: Callable[[], AbstractContextManager[Connection]]

    def claim_slot(self, job_id: int, slot_time: int, trigger: str, holder: str, *, status: str = "CLAIMED",
                   message: str = "", detail: dict[str, Any] | None = None) -> bool:
        """Insert the slot; False when it was claimed already (by this or another process)."""
        with self._write() as conn:
            exists = conn.execute(select(t.trigger_slots.c.status).where(
                (t.trigger_slots.c.job_id == job_id) & (t.trigger_slots.c.slot_time == slot_time))).first()
            if exists is not None:
                return False
            conn.execute(insert(t.trigger_slots).values(
                job_id=job_id, slot_time=slot_time, trigger=trigger, status=status, holder=holder,
                message=message, detail_json=json.dumps(detail) if detail else None,
                claimed_time=int(time.time() * 1000)))
            count = conn.execute(select(func.count()).select_from(t.trigger_slots)
                                 .where(t.trigger_slots.c.job_id == job_id)).scalar_one()
            if count > KEEP_PER_JOB:
                oldest = select(t.trigger_slots.c.slot_time).where(t.trigger_slots.c.job_id == job_id) \
                    .order_by(t.trigger_slots.c.slot_time).limit(count - KEEP_PER_JOB)
                conn.execute(delete(t.trigger_slots).where((t.trigger_slots.c.job_id == job_id)
                                                           & t.trigger_slots.c.slot_time.in_(oldest)))
            return True

    def finish_slot(self, job_id: int, slot_time: int, *, status: str, run_id: int | None = None,
                    message: str = "") -> None:
        with self._write() as conn:
            conn.execute(update(t.trigger_slots).where(
                (t.trigger_slots.c.job_id == job_id) & (t.trigger_slots.c.slot_time == slot_time))
                .values(status=status, run_id=run_id, message=message))

    def settle_claims(self, holder: str) -> int:
        """Slots another holder claimed but never finished (it died between the claim and its run):
        STARTED with the run it created, if any, else FAILED. Only the lease holder calls this, so no
        other scheduler is mid-claim. Returns how many were settled."""
        slots, runs = t.trigger_slots, t.runs
        with self._write() as conn:
            stale = list(conn.execute(select(slots.c.job_id, slots.c.slot_time, slots.c.trigger, slots.c.holder)
                                      .where((slots.c.status == "CLAIMED") & (slots.c.holder != holder))))
            for job_id, slot_time, trigger, dead in stale:
                run_id = conn.execute(select(runs.c.run_id).where(
                    (runs.c.job_id == job_id) & (runs.c.trigger == trigger) & (runs.c.trigger_time == slot_time))
                    .order_by(runs.c.run_id).limit(1)).scalar()
                values = dict(status="STARTED", run_id=run_id) if run_id is not None else dict(
                    status="FAILED", message=f"the scheduler that claimed this slot ({dead}) stopped before "
                                             "starting its run")
                conn.execute(update(slots).where((slots.c.job_id == job_id) & (slots.c.slot_time == slot_time))
                             .values(**values))
            return len(stale)

    def job_slots(self, job_id: int, limit: int = 10) -> list[dict[str, Any]]:
        """The job's most recent slots, newest first."""
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                select(t.trigger_slots).where(t.trigger_slots.c.job_id == job_id)
                .order_by(t.trigger_slots.c.slot_time.desc()).limit(limit))]
        for row in rows:
            row["detail"] = json.loads(row.pop("detail_json") or "null")
        return rows

    def last_slot_times(self) -> dict[int, int]:
        """{job_id: its latest claimed slot time} (STARTED, FAILED or MISSED)."""
        with self.engine.connect() as conn:
            return {job_id: slot for job_id, slot in conn.execute(
                select(t.trigger_slots.c.job_id, func.max(t.trigger_slots.c.slot_time))
                .group_by(t.trigger_slots.c.job_id))}
