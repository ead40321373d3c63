"""Repairs and recovery in the workspace store (mixed into `Store`)."""
from __future__ import annotations

import os
from typing import Iterable

from sqlalchemy import insert, select, update

from .._proc import pid_alive
from . import schema as t
from .rows import ACTIVE_STATES, _dumps, _encode, now_ms, rows_of as _rows


class RepairStore:
    """Repairs of finished runs, and runs whose orchestrator died ended as INTERNAL_ERROR."""

    def create_repair(self, run_id: int, request: dict, *, tasks: Iterable[tuple[str, dict]] = (),
                      settings: dict | None = None, job_parameters: list[dict] | None = None
                      ) -> tuple[int, dict[str, int]]:
        """Open a repair of a finished run, in one transaction: the run is PENDING again (with
        repair_count + 1) and each task to rerun has a new PENDING task run. Returns
        (repair_id, {task_key: task_run_id})."""
        tasks = list(tasks)
        with self._write() as conn:
            repair_id = self._new_ids(conn, "repair")[0]
            conn.execute(insert(t.repairs).values(
                repair_id=repair_id, run_id=run_id, request_json=_dumps(request), life_cycle_state="PENDING",
                start_time=now_ms()))
            values = dict(repair_count=t.runs.c.repair_count + 1, life_cycle_state="PENDING", result_state=None,
                          state_message="", end_time=0, pid=os.getpid(), cancel_requested=0)
            if settings is not None:
                values["settings_json"] = _dumps(settings)
            if job_parameters is not None:
                values["job_parameters_json"] = _dumps(job_parameters)
            conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(**values))
            ids = self._new_ids(conn, "task", len(tasks))
            for task_run_id, (key, task) in zip(ids, tasks):
                conn.execute(update(t.task_runs).where(
                    (t.task_runs.c.run_id == run_id) & (t.task_runs.c.task_key == key)
                    & t.task_runs.c.parent_task_run_id.is_(None)).values(is_latest=0))
                conn.execute(insert(t.task_runs).values(
                    task_run_id=task_run_id, run_id=run_id, task_key=key, task_json=_dumps(task),
                    life_cycle_state="PENDING", repair_id=repair_id, original_attempt_run_id=task_run_id))
        return repair_id, {key: i for i, (key, _) in zip(ids, tasks)}

    def update_repair(self, repair_id: int, **fields) -> None:
        with self._write() as conn:
            conn.execute(update(t.repairs).where(t.repairs.c.repair_id == repair_id).values(**_encode(fields)))

    def repairs(self, run_id: int) -> list[dict]:
        with self.engine.connect() as conn:
            return _rows(conn.execute(
                select(t.repairs).where(t.repairs.c.run_id == run_id).order_by(t.repairs.c.repair_id)))

    # -- recovery -----------------------------------------------------------------------------
    def recover_orphans(self) -> list[int]:
        """Runs left active by an orchestrator process that no longer exists end as INTERNAL_ERROR.

        Finished task runs, their outputs and task values are kept, so the run can be repaired."""
        recovered = []
        with self._write() as conn:
            rows = conn.execute(select(t.runs.c.run_id, t.runs.c.pid)
                                .where(t.runs.c.life_cycle_state.in_(ACTIVE_STATES))).all()
            for run_id, pid in rows:
                if pid is not None and pid_alive(pid):
                    continue
                message = (f"The nbjobs process (pid {pid}) that ran this run ended before the run finished; "
                           "finished tasks kept their results. Repair the run to finish it.")
                end = now_ms()
                conn.execute(update(t.task_runs).where(
                    (t.task_runs.c.run_id == run_id)
                    & t.task_runs.c.life_cycle_state.in_(ACTIVE_STATES)).values(
                    life_cycle_state="INTERNAL_ERROR", result_state="FAILED", state_message=message,
                    error=message, end_time=end))
                conn.execute(update(t.repairs).where(
                    (t.repairs.c.run_id == run_id) & t.repairs.c.life_cycle_state.in_(ACTIVE_STATES)).values(
                    life_cycle_state="INTERNAL_ERROR", result_state="FAILED", end_time=end))
                conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(
                    life_cycle_state="INTERNAL_ERROR", result_state="FAILED", state_message=message,
                    end_time=end))
                recovered.append(run_id)
        return recovered
