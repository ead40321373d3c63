"""`recovery`: ends the runs whose orchestrating process died, without waiting for a runs/get.

A run records the pid of the process that executes it; when that process is gone (killed, crashed)
the run would stay RUNNING until some client looked at it. This service checks every `interval`
seconds and ends such runs as INTERNAL_ERROR through `Store.recover_orphans()` (finished tasks keep
their results, so the run can be repaired). Once per workspace: one process does it.
"""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from .._proc import pid_alive
from ..service.recovery import recover_orphans
from ..store import ACTIVE_STATES, schema
from .base import LoopService, in_thread


class RecoveryService(LoopService):
    name = "recovery"
    once_per_workspace = True
    description = "ends runs whose executing process died (INTERNAL_ERROR), so they can be repaired"
    interval = 10.0
    interval_env = "NBJOBS_RECOVERY_INTERVAL"

    def __init__(self, interval: float | None = None) -> None:
        super().__init__(interval)
        self.recovered: list[int] = []
        self.last_check: float | None = None

    async def run_once(self) -> None:
        assert self.context is not None
        ids = await in_thread(self._recover, self.context.store)
        self.last_check = time.time()
        if ids:
            self.recovered = (self.recovered + ids)[-100:]
            self.context.log.warning("nbjobs service recovery: run%s %s ended INTERNAL_ERROR (their process "
                                     "died)", "s" if len(ids) > 1 else "", ", ".join(map(str, ids)))

    @staticmethod
    def _recover(store: Any) -> list[int]:
        # A read first: the write transaction (BEGIN IMMEDIATE) only when an active run's process is gone.
        query = select(schema.runs.c.pid).where(schema.runs.c.life_cycle_state.in_(ACTIVE_STATES))
        with store.engine.connect() as conn:
            pids = {pid for (pid,) in conn.execute(query)}
        if all(pid is not None and pid_alive(pid) for pid in pids):
            return []
        return recover_orphans(store)

    def health(self) -> dict[str, Any]:
        return {**super().health(), "interval": self.interval, "last_check": self.last_check,
                "recovered_runs": self.recovered[-10:]}
