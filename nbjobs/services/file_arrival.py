"""`file_arrival`: starts a run when new files arrive in a job's `trigger.file_arrival.url`.

Once per workspace. Every `interval` seconds (`NBJOBS_FILE_ARRIVAL_POLL`, default 2) it lists each watched
folder; new files since the last trigger start one run (trigger FILE_ARRIVAL) once the folder has not
changed for `wait_after_last_change_seconds` and at least `min_time_between_triggers_seconds` after the
previous trigger. Each trigger is a claimed slot in the store, like the scheduler's, so a takeover never
starts it twice; after a restart, files modified since the last trigger's scan count as new.
"""
from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select

from ..schedule.file_arrival import FileWatch, listing, local_path
from ..store import schema
from .base import LoopService, in_thread

TRIGGER = "FILE_ARRIVAL"


def _config(settings: dict) -> dict | None:
    trigger = settings.get("trigger")
    if isinstance(trigger, dict) and isinstance(trigger.get("file_arrival"), dict) \
            and trigger.get("pause_status") != "PAUSED":
        return trigger["file_arrival"]
    return None


class FileArrivalService(LoopService):
    name = "file_arrival"
    once_per_workspace = True
    description = "starts runs when new files arrive in a job's trigger.file_arrival location"
    interval = 2.0
    interval_env = "NBJOBS_FILE_ARRIVAL_POLL"

    def __init__(self, interval: float | None = None) -> None:
        super().__init__(interval)
        self.watches: dict[int, FileWatch] = {}
        self._texts: dict[int, str] = {}
        self.started: list[int] = []
        self.last_check: float | None = None

    async def run_once(self) -> None:
        await in_thread(self.tick)

    def tick(self, now: float | None = None) -> None:
        assert self.context is not None
        store, home = self.context.store, self.context.home
        jobs = schema.jobs
        query = select(jobs.c.job_id, jobs.c.settings_json).where(jobs.c.settings_json.like('%"file_arrival"%'))
        with store.engine.connect() as conn:
            rows = list(conn.execute(query))
        seen = set()
        for job_id, text in rows:
            if self._texts.get(job_id) != text:
                self._texts[job_id] = text
                config = _config(json.loads(text))
                watch = self.watches.get(job_id)
                if config is None:
                    self.watches.pop(job_id, None)
                elif watch is None or not watch.same_config(config):
                    self.watches[job_id] = self._new_watch(job_id, config)
            if job_id not in self.watches:
                continue
            seen.add(job_id)
            watch = self.watches[job_id]
            files = listing(local_path(watch.url, home))
            new = watch.observe(files, time.time() if now is None else now)
            if new:
                self._start(job_id, watch, new)
        for job_id in set(self.watches) - seen:
            del self.watches[job_id]
        for job_id in set(self._texts) - {r[0] for r in rows}:
            del self._texts[job_id]
        self.last_check = time.time()

    def _new_watch(self, job_id: int, config: dict) -> FileWatch:
        """A watch whose baseline is the folder now, or, after a restart, the files of the last trigger's scan."""
        assert self.context is not None
        watch = FileWatch.of(config)
        previous = next((s for s in self.context.store.job_slots(job_id, 5)
                         if s["trigger"] == TRIGGER and s.get("detail")), None)
        files = listing(local_path(watch.url, self.context.home))
        if previous is not None and previous["detail"].get("url") == watch.url:
            watch.start(files, since_ns=previous["detail"]["scan_time_ns"])
            watch.last_trigger = previous["slot_time"] / 1000
        else:
            watch.start(files)
        return watch

    def _start(self, job_id: int, watch: FileWatch, new: list[str]) -> None:
        assert self.context is not None
        store = self.context.store
        slot_ms = int(time.time() * 1000)
        detail = {"url": watch.url, "scan_time_ns": max((m for m, _ in watch.last_listing.values()), default=0),
                  "new_files": len(new)}
        if not store.claim_slot(job_id, slot_ms, TRIGGER, self.context.holder, detail=detail):
            return
        info = {"file_arrival_location": watch.url, "new_files": new[:20]}
        try:
            workspace = self.context.workspace()
            run_id = workspace.start_run(job_id, trigger=TRIGGER, trigger_time=slot_ms, trigger_info=info)
            workspace.execute(run_id, wait=False)
        except Exception as exc:  # noqa: BLE001 - recorded on the slot
            store.finish_slot(job_id, slot_ms, status="FAILED", message=f"{type(exc).__name__}: {exc}")
            self.context.log.warning("nbjobs file_arrival: job %s: %s", job_id, exc)
            return
        store.finish_slot(job_id, slot_ms, status="STARTED", run_id=run_id)
        self.started = (self.started + [run_id])[-100:]
        self.context.log.info("nbjobs file_arrival: job %s: run %s for %d new file(s) in %s", job_id, run_id,
                              len(new), watch.url)

    def health(self) -> dict[str, Any]:
        return {**super().health(), "interval": self.interval, "last_check": self.last_check,
                "watched_jobs": len(self.watches), "started_runs": self.started[-10:]}
