"""Which slots of a job's schedule or periodic trigger are due, pure (the scheduler service calls it each tick).

A slot is one fire time. The scheduler starts a slot's run if it reaches the slot at most `grace` seconds
late (Quartz's default misfire threshold is 60 s, http://www.quartz-scheduler.org/documentation/quartz-2.3.0/configuration/ConfigMain.html,
`org.quartz.jobStore.misfireThreshold`); later slots are MISSED and not backfilled (Databricks does not backfill
a schedule either). Two slots are at least 10 s apart (Databricks' limit for schedule-triggered runs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from .quartz import MIN_SECONDS_BETWEEN_RUNS
from .settings import When, when_of

GAP = timedelta(seconds=MIN_SECONDS_BETWEEN_RUNS) - timedelta(milliseconds=1)
MAX_MISSED_RECORDED = 10


def to_ms(t: datetime) -> int:
    return int(round(t.timestamp() * 1000))


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def next_slot(when: When, after: datetime, anchor: datetime) -> datetime | None:
    """The first slot strictly after `after` (None when the schedule has ended)."""
    found = when.next_after(after, 1, anchor=anchor)
    return found[0] if found else None


@dataclass
class JobTimer:
    """The scheduler's view of one job: its settings text (to notice edits cheaply) and its next slot."""
    text: str
    when: When | None
    anchor: datetime  # a periodic trigger's slots are anchor + k * interval (the job's creation time)
    next: datetime | None = None
    was_paused: bool = False
    fresh: bool = True  # first seen by this scheduler: slots since the last claimed one may be MISSED

    @classmethod
    def of(cls, text: str, settings: Mapping[str, Any], created_ms: int) -> "JobTimer":
        return cls(text, when_of(settings), from_ms(created_ms))

    def changed(self, text: str, settings: Mapping[str, Any]) -> None:
        """New settings: a new expression or interval starts from now; pause and resume as well."""
        when = when_of(settings)
        self.text = text
        if when != self.when:
            self.when, self.next, self.fresh = when, None, False


@dataclass
class Due:
    """What one tick found for one job: slots to start now and slots that were missed."""
    start: list[datetime] = field(default_factory=list)
    missed: list[datetime] = field(default_factory=list)
    missed_count: int = 0


def due(timer: JobTimer, now: datetime, last_slot: datetime | None, grace: float) -> Due:
    """Advance `timer` to `now`: the slots to start (at most `grace` seconds late) and the missed ones."""
    out = Due()
    when = timer.when
    if when is None or when.paused:
        timer.next, timer.was_paused = None, bool(when and when.paused)
        return out
    if timer.next is None:
        start_after = now
        if timer.fresh and not timer.was_paused and last_slot is not None:
            start_after = min(now, last_slot + GAP)  # slots since the last one: late or missed
        elif last_slot is not None:
            start_after = max(now, last_slot + GAP)
        timer.next = next_slot(when, start_after, timer.anchor)
        timer.fresh = timer.was_paused = False
    while timer.next is not None and timer.next <= now:
        slot = timer.next
        if (now - slot).total_seconds() <= grace:
            out.start.append(slot)
        else:
            out.missed_count += 1
            out.missed = (out.missed + [slot])[-MAX_MISSED_RECORDED:]
        timer.next = next_slot(when, slot + GAP, timer.anchor)
        if len(out.start) + out.missed_count > 100_000:  # e.g. every 10 s for a year: skip ahead
            timer.next = next_slot(when, now, timer.anchor)
            out.missed_count += 1
    return out


def trigger_state(settings: Mapping[str, Any], created_ms: int, slots: list[dict], now: datetime,
                  count: int = 3) -> dict[str, Any] | None:
    """jobs/get `trigger_state` for a scheduled job: `pause_status` (the API's field) and nbjobs's
    `next_fire_times` (ISO 8601 in the schedule's zone) and `recent_slots` (newest first: the run each
    slot started, or MISSED / FAILED with why)."""
    when = when_of(settings)
    trigger = settings.get("trigger")
    if when is None and isinstance(trigger, Mapping) and isinstance(trigger.get("file_arrival"), Mapping):
        # TriggerStateProto.file_arrival: nbjobs polls the folder (no file events)
        return {"pause_status": trigger.get("pause_status") or "UNPAUSED",
                "file_arrival": {"using_file_events": False}, "recent_slots": _slots(slots)}
    continuous = settings.get("continuous")
    if when is None and isinstance(continuous, Mapping):
        return {"pause_status": continuous.get("pause_status") or "UNPAUSED", "recent_slots": _slots(slots)}
    if when is None:
        return None
    out: dict[str, Any] = {"pause_status": "PAUSED" if when.paused else "UNPAUSED"}
    if not when.paused:
        last = max((s["slot_time"] for s in slots), default=None)
        after = max(now, from_ms(last) + GAP) if last is not None else now
        times = when.next_after(after, count, anchor=from_ms(created_ms))
        out["next_fire_times"] = [t.isoformat() for t in times]
    out["recent_slots"] = _slots(slots)
    return out


def _slots(slots: list[dict]) -> list[dict[str, Any]]:
    return [{"slot_time": s["slot_time"], "status": s["status"], "run_id": s.get("run_id"),
             **({"message": s["message"]} if s.get("message") else {})} for s in slots]
