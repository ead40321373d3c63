"""The workspace store: one SQLite database (WAL) reached through SQLAlchemy Core."""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from sqlalchemy import create_engine, event, func, insert, select, text, update, delete
from sqlalchemy.engine import Connection, Engine

from . import schema as t

_JSON_COLUMNS = {
    "settings_json": "settings", "tags_json": "tags", "job_parameters_json": "job_parameters",
    "task_json": "task", "resolved_values_json": "resolved_values", "request_json": "request",
    "task_run_ids_json": "task_run_ids",
}

ACTIVE_STATES = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")


def now_ms() -> int:
    return int(time.time() * 1000)


def utc_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _row(row) -> dict[str, Any] | None:
    """A result row as a dict, JSON columns decoded under their short names."""
    if row is None:
        return None
    out = {}
    for key, value in row._mapping.items():
        if key in _JSON_COLUMNS:
            out[_JSON_COLUMNS[key]] = json.loads(value) if value is not None else None
        else:
            out[key] = value
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def _encode(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Short JSON field names (settings, task, ...) back to their columns."""
    reverse = {v: k for k, v in _JSON_COLUMNS.items()}
    return {reverse.get(k, k): (_dumps(v) if k in reverse and v is not None else v) for k, v in fields.items()}


class Store:
    """Jobs, runs, task runs, task values and repairs of one workspace folder."""

    def __init__(self, home: str | os.PathLike):
        self.home = Path(home).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.runs_dir = self.home / "runs"
        self.runs_dir.mkdir(exist_ok=True)
        self.path = self.home / "nbjobs.db"
        self.engine: Engine = create_engine(
            f"sqlite:///{self.path}", connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(self.engine, "connect", _on_connect)
        event.listen(self.engine, "begin", _on_begin)
        self._migrate()

    # -- schema -------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction: BEGIN IMMEDIATE, so concurrent writers wait instead of failing."""
        with self.engine.connect() as conn:
            conn.execution_options(nbjobs_write=True)
            with conn.begin():
                yield conn

    def _migrate(self) -> None:
        with self._write() as conn:
            version = conn.exec_driver_sql("PRAGMA user_version").scalar_one()
            if version > t.SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this nbjobs ({t.SCHEMA_VERSION}); "
                    "upgrade nbjobs or point NBJOBS_HOME at another folder")
            for number in range(version, t.SCHEMA_VERSION):
                for statement in t.MIGRATIONS[number]:
                    conn.exec_driver_sql(statement)
                conn.exec_driver_sql(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA user_version").scalar_one()

    def close(self) -> None:
        self.engine.dispose()

    def _new_ids(self, conn: Connection, kind: str, count: int = 1) -> list[int]:
        ids = []
        for _ in range(count):
            ids.append(conn.execute(insert(t.run_ids).values(kind=kind)).inserted_primary_key[0])
        return ids

    # -- jobs ---------------------------------------------------------------------------------
    def create_job(self, settings: dict, *, source_path: str | None = None, creator: str = "") -> int:
        with self._write() as conn:
            return conn.execute(insert(t.jobs).values(
                name=settings.get("name") or "Untitled", settings_json=_dumps(settings),
                tags_json=_dumps(settings.get("tags") or {}), creator_user_name=creator,
                source_path=source_path, created_time=now_ms())).inserted_primary_key[0]

    def update_job(self, job_id: int, settings: dict, *, source_path: str | None = None) -> None:
        values = dict(name=settings.get("name") or "Untitled", settings_json=_dumps(settings),
                      tags_json=_dumps(settings.get("tags") or {}))
        if source_path is not None:
            values["source_path"] = source_path
        with self._write() as conn:
            conn.execute(update(t.jobs).where(t.jobs.c.job_id == job_id).values(**values))

    def get_job(self, job_id: int) -> dict | None:
        with self.engine.connect() as conn:
            return _row(conn.execute(select(t.jobs).where(t.jobs.c.job_id == job_id)).first())

    def list_jobs(self, *, name: str | None = None) -> list[dict]:
        """Newest first; `name` matches exactly, case-insensitively (as jobs/list does)."""
        query = select(t.jobs).order_by(t.jobs.c.job_id.desc())
        if name is not None:
            query = query.where(func.lower(t.jobs.c.name) == name.lower())
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def delete_job(self, job_id: int) -> None:
        with self._write() as conn:
            conn.execute(delete(t.jobs).where(t.jobs.c.job_id == job_id))

    # -- runs ---------------------------------------------------------------------------------
    def create_run(self, *, job_id: int | None, settings: dict, job_parameters: list[dict], run_name: str,
                   tasks: Iterable[tuple[str, dict]], trigger: str = "ONE_TIME", run_type: str = "JOB_RUN",
                   trigger_time: int | None = None, creator: str = "", idempotency_token: str | None = None,
                   life_cycle_state: str = "PENDING") -> tuple[int, dict[str, int]]:
        """A run and one PENDING task run per task, in one transaction. Returns (run_id, task_run_ids)."""
        tasks = list(tasks)
        start = now_ms()
        with self._write() as conn:
            run_id = self._new_ids(conn, "run")[0]
            conn.execute(insert(t.runs).values(
                run_id=run_id, job_id=job_id, run_name=run_name, run_type=run_type, trigger=trigger,
                life_cycle_state=life_cycle_state, settings_json=_dumps(settings),
                job_parameters_json=_dumps(job_parameters), creator_user_name=creator,
                trigger_time=trigger_time or start, start_time=start, pid=os.getpid(),
                idempotency_token=idempotency_token))
            ids = self._new_ids(conn, "task", len(tasks))
            if tasks:
                conn.execute(insert(t.task_runs), [
                    dict(task_run_id=i, run_id=run_id, task_key=key, life_cycle_state="PENDING",
                         task_json=_dumps(task)) for i, (key, task) in zip(ids, tasks)])
        return run_id, {key: i for i, (key, _) in zip(ids, tasks)}

    def new_task_run(self, run_id: int, task_key: str, task: dict, **fields) -> int:
        """A further task run of a task (retry, repair): older ones of that task stop being the latest."""
        with self._write() as conn:
            task_run_id = self._new_ids(conn, "task")[0]
            if fields.get("parent_task_run_id") is None:
                conn.execute(update(t.task_runs).where(
                    (t.task_runs.c.run_id == run_id) & (t.task_runs.c.task_key == task_key)
                    & t.task_runs.c.parent_task_run_id.is_(None)).values(is_latest=0))
            values = dict(life_cycle_state="PENDING")
            values.update(fields)
            conn.execute(insert(t.task_runs).values(
                task_run_id=task_run_id, run_id=run_id, task_key=task_key, task_json=_dumps(task),
                **_encode(values)))
        return task_run_id

    def update_run(self, run_id: int, **fields) -> None:
        with self._write() as conn:
            conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(**_encode(fields)))

    def update_task_run(self, task_run_id: int, *, values: Mapping[str, Any] | None = None,
                        **fields) -> None:
        """Update a task run; task values (if given) are written in the same transaction."""
        with self._write() as conn:
            if fields:
                conn.execute(update(t.task_runs).where(t.task_runs.c.task_run_id == task_run_id)
                             .values(**_encode(fields)))
            if values:
                row = conn.execute(select(t.task_runs.c.run_id, t.task_runs.c.task_key)
                                   .where(t.task_runs.c.task_run_id == task_run_id)).one()
                for key, value in values.items():
                    conn.execute(text(
                        "INSERT INTO task_values (run_id, task_key, key, value_json, task_run_id) "
                        "VALUES (:r, :t, :k, :v, :i) ON CONFLICT (run_id, task_key, key) "
                        "DO UPDATE SET value_json = excluded.value_json, task_run_id = excluded.task_run_id"),
                        dict(r=row.run_id, t=row.task_key, k=key, v=_dumps(value), i=task_run_id))

    def update_task_runs(self, changes: Mapping[int, Mapping[str, Any]]) -> None:
        """Several task runs in one transaction (the planner's skip cascades)."""
        with self._write() as conn:
            for task_run_id, fields in changes.items():
                conn.execute(update(t.task_runs).where(t.task_runs.c.task_run_id == task_run_id)
                             .values(**_encode(fields)))

    def get_run(self, run_id: int) -> dict | None:
        with self.engine.connect() as conn:
            return _row(conn.execute(select(t.runs).where(t.runs.c.run_id == run_id)).first())

    def get_task_run(self, task_run_id: int) -> dict | None:
        with self.engine.connect() as conn:
            return _row(conn.execute(
                select(t.task_runs).where(t.task_runs.c.task_run_id == task_run_id)).first())

    def task_runs(self, run_id: int, *, latest_only: bool = True, top_level_only: bool = True) -> list[dict]:
        query = select(t.task_runs).where(t.task_runs.c.run_id == run_id).order_by(t.task_runs.c.task_run_id)
        if latest_only:
            query = query.where(t.task_runs.c.is_latest == 1)
        if top_level_only:
            query = query.where(t.task_runs.c.parent_task_run_id.is_(None))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def child_task_runs(self, parent_task_run_id: int) -> list[dict]:
        query = (select(t.task_runs).where(t.task_runs.c.parent_task_run_id == parent_task_run_id)
                 .order_by(t.task_runs.c.iteration_index, t.task_runs.c.task_run_id))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def list_runs(self, *, job_id: int | None = None, active_only: bool = False,
                  completed_only: bool = False, run_type: str | None = None,
                  start_time_from: int | None = None, start_time_to: int | None = None,
                  limit: int | None = None, offset: int = 0) -> list[dict]:
        """Newest first."""
        query = select(t.runs).order_by(t.runs.c.start_time.desc(), t.runs.c.run_id.desc())
        if job_id is not None:
            query = query.where(t.runs.c.job_id == job_id)
        if active_only:
            query = query.where(t.runs.c.life_cycle_state.in_(ACTIVE_STATES))
        if completed_only:
            query = query.where(t.runs.c.life_cycle_state.not_in(ACTIVE_STATES))
        if run_type:
            query = query.where(t.runs.c.run_type == run_type)
        if start_time_from is not None:
            query = query.where(t.runs.c.start_time >= start_time_from)
        if start_time_to is not None:
            query = query.where(t.runs.c.start_time <= start_time_to)
        if limit:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def delete_run(self, run_id: int) -> None:
        with self._write() as conn:
            conn.execute(delete(t.task_values).where(t.task_values.c.run_id == run_id))
            conn.execute(delete(t.task_runs).where(t.task_runs.c.run_id == run_id))
            conn.execute(delete(t.repairs).where(t.repairs.c.run_id == run_id))
            conn.execute(delete(t.runs).where(t.runs.c.run_id == run_id))

    def task_values(self, run_id: int) -> dict[str, dict[str, Any]]:
        """{task_key: {key: value}} for a run (the latest value of each key)."""
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(select(t.task_values).where(t.task_values.c.run_id == run_id)):
                out.setdefault(row.task_key, {})[row.key] = json.loads(row.value_json)
        return out

    # -- repairs ------------------------------------------------------------------------------
    def create_repair(self, run_id: int, request: dict) -> int:
        with self._write() as conn:
            repair_id = self._new_ids(conn, "repair")[0]
            conn.execute(insert(t.repairs).values(
                repair_id=repair_id, run_id=run_id, request_json=_dumps(request), life_cycle_state="PENDING",
                start_time=now_ms()))
            conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(
                repair_count=t.runs.c.repair_count + 1, life_cycle_state="PENDING", result_state=None,
                state_message="", end_time=0, pid=os.getpid()))
        return repair_id

    def update_repair(self, repair_id: int, **fields) -> None:
        with self._write() as conn:
            conn.execute(update(t.repairs).where(t.repairs.c.repair_id == repair_id).values(**_encode(fields)))

    def repairs(self, run_id: int) -> list[dict]:
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(
                select(t.repairs).where(t.repairs.c.run_id == run_id).order_by(t.repairs.c.repair_id))]

    # -- recovery -----------------------------------------------------------------------------
    def recover_orphans(self) -> list[int]:
        """Runs left active by an orchestrator process that no longer exists end as INTERNAL_ERROR.

        Finished task runs, their outputs and task values are kept, so the run can be repaired."""
        recovered = []
        with self._write() as conn:
            rows = conn.execute(select(t.runs.c.run_id, t.runs.c.pid)
                                .where(t.runs.c.life_cycle_state.in_(ACTIVE_STATES))).all()
            for run_id, pid in rows:
                if pid is not None and _alive(pid):
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


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def _on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _on_begin), DDL included
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _on_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("nbjobs_write") else "BEGIN")
