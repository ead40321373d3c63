"""The workspace store: one SQLite database (WAL) reached through SQLAlchemy Core."""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from sqlalchemy import create_engine, event, func, insert, select, text, update, delete
from sqlalchemy.engine import Connection, Engine

from . import schema as t
from .jobs import JobStore
from .leases import LeaseStore
from .notifications import NotificationStore
from .repairs import RepairStore
from .rows import ACTIVE_STATES, ADMITTED_STATES, _columns, _dumps, _encode, _first, _insert_many, now_ms
from .rows import rows_of as _rows
from .slots import SlotStore

class TokenOfDeletedRun(Exception):
    """An idempotency token whose run was deleted: a new run with it is refused (databricks-sdk `JobsAPI.run_now`: idempotency_token)."""

    def __init__(self, token: str, run_id: int):
        super().__init__(f"idempotency_token {token!r} belongs to run {run_id}, which was deleted; "
                         "use a new idempotency_token to start a new run")
        self.token, self.run_id = token, run_id


class Store(JobStore, RepairStore, LeaseStore, NotificationStore, SlotStore):
    """Runs, task runs and task values of one workspace folder; jobs (`JobStore`), repairs and recovery
    (`RepairStore`), leases (`LeaseStore`), notification deliveries (`NotificationStore`), trigger slots
    (`SlotStore`)."""

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
        """`count` new ids of the one sequence runs and task runs share (in a write transaction)."""
        if count <= 0:
            return []
        first = conn.execute(insert(t.run_ids).values(kind=kind)).inserted_primary_key[0]
        if count > 1:  # reserve the block: AUTOINCREMENT continues after its last id (the write lock is ours)
            conn.execute(insert(t.run_ids).values(id=first + count - 1, kind=kind))
        return list(range(first, first + count))

    # -- runs ---------------------------------------------------------------------------------
    def create_run(self, *, job_id: int | None, settings: dict, job_parameters: list[dict], run_name: str,
                   tasks: Iterable[tuple[str, dict]], trigger: str = "ONE_TIME", run_type: str = "JOB_RUN",
                   trigger_time: int | None = None, creator: str = "", idempotency_token: str | None = None,
                   life_cycle_state: str = "PENDING", admission: tuple[int, bool] | None = None,
                   only: list[str] | None = None, parent_task_run_id: int | None = None,
                   queue_enabled: bool | None = None,
                   trigger_info: dict | None = None) -> tuple[int, dict[str, int] | None]:
        """A run and one task run per task, in one transaction. Returns (run_id, task_run_ids).

        ``idempotency_token``: when a run of the job already has it, that run's id is returned with
        ``None`` for the task run ids and nothing is created. ``admission=(max_concurrent_runs,
        queue_enabled)`` decides, atomically with the other runs of the job, whether the new run is
        PENDING (admitted), QUEUED, or SKIPPED with MAXIMUM_CONCURRENT_RUNS_REACHED."""
        tasks = list(tasks)
        start = now_ms()
        state_message = ""
        result_state = None
        with self._write() as conn:
            if idempotency_token is not None:
                existing = conn.execute(select(t.runs.c.run_id).where(
                    (t.runs.c.idempotency_token == idempotency_token)
                    & (t.runs.c.job_id.is_(None) if job_id is None else t.runs.c.job_id == job_id))).first()
                if existing is not None:
                    return existing[0], None
                deleted = conn.execute(select(t.deleted_run_tokens.c.run_id).where(
                    (t.deleted_run_tokens.c.idempotency_token == idempotency_token)
                    & (t.deleted_run_tokens.c.job_id.is_(None) if job_id is None
                       else t.deleted_run_tokens.c.job_id == job_id))).first()
                if deleted is not None:
                    raise TokenOfDeletedRun(idempotency_token, deleted[0])
            if admission is not None and job_id is not None:
                limit, queue = admission
                queue_enabled = queue
                life_cycle_state, state_message = self._admission(conn, job_id, None, limit, queue)
                if life_cycle_state == "SKIPPED":
                    result_state = "MAXIMUM_CONCURRENT_RUNS_REACHED"
            run_id = self._new_ids(conn, "run")[0]
            conn.execute(insert(t.runs).values(
                run_id=run_id, job_id=job_id, run_name=run_name, run_type=run_type, trigger=trigger,
                life_cycle_state=life_cycle_state, result_state=result_state, state_message=state_message,
                settings_json=_dumps(settings), job_parameters_json=_dumps(job_parameters),
                creator_user_name=creator, trigger_time=trigger_time or start, start_time=start,
                end_time=start if result_state else 0, pid=os.getpid(), idempotency_token=idempotency_token,
                only_json=_dumps(only) if only is not None else None, parent_task_run_id=parent_task_run_id,
                queue_enabled=None if queue_enabled is None else int(bool(queue_enabled)),
                trigger_info_json=_dumps(trigger_info) if trigger_info else None))
            ids = self._new_ids(conn, "task", len(tasks))
            if tasks:
                task_state = dict(life_cycle_state="PENDING")
                if result_state:
                    task_state = dict(life_cycle_state="SKIPPED", result_state=result_state,
                                      state_message=state_message, start_time=start, end_time=start)
                _insert_many(conn, t.task_runs, [
                    dict(task_run_id=i, run_id=run_id, task_key=key, task_json=_dumps(task),
                         original_attempt_run_id=i, **task_state) for i, (key, task) in zip(ids, tasks)])
        return run_id, {key: i for i, (key, _) in zip(ids, tasks)}

    def _admission(self, conn: Connection, job_id: int, run_id: int | None, limit: int,
                   queue: bool) -> tuple[str, str]:
        """PENDING (a slot is free and no earlier run waits), QUEUED or SKIPPED, with the reason."""
        active = conn.execute(select(func.count()).select_from(t.runs).where(
            (t.runs.c.job_id == job_id) & t.runs.c.life_cycle_state.in_(ADMITTED_STATES)
            & (t.runs.c.run_id != (run_id or -1)))).scalar_one()
        waiting = conn.execute(select(func.count()).select_from(t.runs).where(
            (t.runs.c.job_id == job_id) & (t.runs.c.life_cycle_state == "QUEUED")
            & (t.runs.c.run_id < run_id if run_id is not None else True))).scalar_one()
        if limit <= 0:
            return "SKIPPED", ("Skipped: the job's max_concurrent_runs is 0, so every new run is skipped. "
                               "Raise max_concurrent_runs to run it.")
        if active < limit and not waiting:
            return "PENDING", ""
        runs = "run" if active == 1 else "runs"
        why = f"job {job_id} already has {active} active {runs} (max_concurrent_runs = {limit})"
        if waiting:
            why += f" and {waiting} earlier queued run{'s' if waiting != 1 else ''}"
        if queue:
            return "QUEUED", f"Queued: {why}; it starts when a slot frees."
        return "SKIPPED", (f"Skipped: {why} and queueing is off. Enable queue.enabled on the job to wait "
                           "instead, or raise max_concurrent_runs.")

    def try_admit(self, run_id: int, limit: int) -> str:
        """A QUEUED run becomes PENDING when a slot is free and no earlier run waits (FIFO).

        Returns the run's life_cycle_state afterwards (QUEUED while it must wait)."""
        with self._write() as conn:
            row = conn.execute(select(t.runs.c.job_id, t.runs.c.life_cycle_state, t.runs.c.start_time)
                               .where(t.runs.c.run_id == run_id)).first()
            if row is None:
                return "INTERNAL_ERROR"
            if row.life_cycle_state != "QUEUED":
                return row.life_cycle_state
            state, message = self._admission(conn, row.job_id, run_id, max(limit, 1), True)
            if state != "PENDING":
                conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(state_message=message))
                return "QUEUED"
            conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(
                life_cycle_state="PENDING", state_message="", queue_duration=now_ms() - row.start_time))
            return "PENDING"

    def new_task_run(self, run_id: int, task_key: str, task: dict, **fields) -> int:
        """A further task run of a task (retry, repair): older ones of that task stop being the latest.

        For a for-each iteration (``parent_task_run_id`` and ``iteration_index`` given) only the older
        attempts of that iteration of that parent stop being the latest."""
        return self.new_task_runs(run_id, [(task_key, task, fields)])[0]

    def new_task_runs(self, run_id: int, items: Iterable[tuple[str, dict, Mapping[str, Any]]]) -> list[int]:
        """Several new task runs in one transaction (a repair's tasks, a for-each's iterations)."""
        items = list(items)
        with self._write() as conn:
            ids = self._new_ids(conn, "task", len(items))
            rows = []
            for task_run_id, (task_key, task, fields) in zip(ids, items):
                parent = fields.get("parent_task_run_id")
                if parent is None:
                    conn.execute(update(t.task_runs).where(
                        (t.task_runs.c.run_id == run_id) & (t.task_runs.c.task_key == task_key)
                        & t.task_runs.c.parent_task_run_id.is_(None)).values(is_latest=0))
                elif fields.get("attempt_number"):
                    conn.execute(update(t.task_runs).where(
                        (t.task_runs.c.parent_task_run_id == parent)
                        & (t.task_runs.c.iteration_index == fields.get("iteration_index"))).values(is_latest=0))
                values = dict(life_cycle_state="PENDING", original_attempt_run_id=task_run_id)
                values.update(fields)
                rows.append(dict(task_run_id=task_run_id, run_id=run_id, task_key=task_key, task_json=_dumps(task),
                                 **_encode(values)))
            if rows:
                keys = set().union(*(r.keys() for r in rows))
                _insert_many(conn, t.task_runs, [{k: r.get(k, _DEFAULTS.get(k)) for k in keys} for r in rows])
        return ids

    def move_task_runs(self, task_run_ids: Iterable[int], parent_task_run_id: int) -> None:
        """Hand iterations over to a newer for-each task run (a repair reuses its succeeded iterations)."""
        ids = list(task_run_ids)
        if not ids:
            return
        with self._write() as conn:
            conn.execute(update(t.task_runs).where(t.task_runs.c.task_run_id.in_(ids))
                         .values(parent_task_run_id=parent_task_run_id))

    def execution_count(self, run_id: int, task_key: str, *, parent_task_run_id: int | None = None,
                        iteration_index: int | None = None) -> int:
        """How many times a task (or one for-each iteration) has started in this run."""
        query = select(func.max(t.task_runs.c.execution_count)).where(t.task_runs.c.run_id == run_id)
        if parent_task_run_id is None:
            query = query.where((t.task_runs.c.task_key == task_key) & t.task_runs.c.parent_task_run_id.is_(None))
        else:
            query = query.where((t.task_runs.c.task_key == task_key)
                                & (t.task_runs.c.iteration_index == iteration_index)
                                & t.task_runs.c.parent_task_run_id.is_not(None))
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one() or 0

    def previous_task_runs(self, run_id: int, task_key: str, before: int) -> list[dict]:
        """Top-level task runs of ``task_key`` older than ``before``, newest first (retries, repairs)."""
        query = (select(t.task_runs).where(
            (t.task_runs.c.run_id == run_id) & (t.task_runs.c.task_key == task_key)
            & t.task_runs.c.parent_task_run_id.is_(None) & (t.task_runs.c.task_run_id < before))
            .order_by(t.task_runs.c.task_run_id.desc()))
        with self.engine.connect() as conn:
            return _rows(conn.execute(query))

    # -- cancel requests ----------------------------------------------------------------------
    def request_cancel(self, run_id: int) -> None:
        with self._write() as conn:
            conn.execute(update(t.runs).where(t.runs.c.run_id == run_id)
                         .values(cancel_requested=t.runs.c.cancel_requested + 1))

    def request_task_cancel(self, task_run_id: int) -> None:
        with self._write() as conn:
            conn.execute(update(t.task_runs).where(t.task_runs.c.task_run_id == task_run_id)
                         .values(cancel_requested=1))

    def cancel_requests(self, run_id: int) -> tuple[int, list[int]]:
        """(the run's cancel request count, active task runs whose cancel was requested)."""
        with self.engine.connect() as conn:
            count = conn.execute(select(t.runs.c.cancel_requested).where(t.runs.c.run_id == run_id)).scalar()
            ids = [r[0] for r in conn.execute(select(t.task_runs.c.task_run_id).where(
                (t.task_runs.c.run_id == run_id) & (t.task_runs.c.cancel_requested == 1)
                & t.task_runs.c.life_cycle_state.in_(ACTIVE_STATES)))]
        return count or 0, ids

    def end_run(self, run_id: int, *, life_cycle_state: str, result_state: str, message: str,
                task_result: str | None = None) -> None:
        """End a run that no driver is executing: its active task runs end too."""
        end = now_ms()
        task_result = task_result or result_state
        with self._write() as conn:
            conn.execute(update(t.task_runs).where(
                (t.task_runs.c.run_id == run_id) & t.task_runs.c.life_cycle_state.in_(ACTIVE_STATES)).values(
                life_cycle_state="TERMINATED", result_state=task_result, state_message=message, end_time=end))
            conn.execute(update(t.repairs).where(
                (t.repairs.c.run_id == run_id) & t.repairs.c.life_cycle_state.in_(ACTIVE_STATES)).values(
                life_cycle_state=life_cycle_state, result_state=result_state, end_time=end))
            conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(
                life_cycle_state=life_cycle_state, result_state=result_state, state_message=message,
                end_time=end))

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

    def write_task_runs(self, changes: Mapping[int, Mapping[str, Any]],
                        values: Iterable[tuple[int, str, int, Mapping[str, Any]]] = ()) -> None:
        """Many task-run updates and task values in one transaction, as executemany batches
        (`values`: (run_id, task_key, task_run_id, {key: value}) upserts). Used by `BatchedRunStore`."""
        groups: dict[tuple[str, ...], list[tuple]] = {}  # the same columns: one executemany
        for task_run_id, fields in changes.items():
            encoded = _encode(fields)
            columns = tuple(sorted(encoded))
            groups.setdefault(columns, []).append((*(encoded[c] for c in columns), task_run_id))
        rows = [dict(r=run_id, t=task_key, k=key, v=_dumps(value), i=task_run_id)
                for run_id, task_key, task_run_id, items in values for key, value in items.items()]
        if not groups and not rows:
            return
        with self._write() as conn:
            for columns, params in groups.items():
                if columns:
                    assignments = ", ".join(f"{c} = ?" for c in _columns(t.task_runs, columns))
                    conn.exec_driver_sql(f"UPDATE task_runs SET {assignments} WHERE task_run_id = ?", params)
            if rows:
                conn.execute(text(
                    "INSERT INTO task_values (run_id, task_key, key, value_json, task_run_id) "
                    "VALUES (:r, :t, :k, :v, :i) ON CONFLICT (run_id, task_key, key) "
                    "DO UPDATE SET value_json = excluded.value_json, task_run_id = excluded.task_run_id"), rows)

    def execution_counts(self, run_id: int) -> dict[tuple[str, int | None], int]:
        """{(task_key, None): starts} of the run's top-level tasks (one query; `execution_count` of all)."""
        query = (select(t.task_runs.c.task_key, func.max(t.task_runs.c.execution_count))
                 .where((t.task_runs.c.run_id == run_id) & t.task_runs.c.parent_task_run_id.is_(None))
                 .group_by(t.task_runs.c.task_key))
        with self.engine.connect() as conn:
            return {(key, None): count or 0 for key, count in conn.execute(query)}

    def update_task_runs(self, changes: Mapping[int, Mapping[str, Any]]) -> None:
        """Several task runs in one transaction (the planner's skip cascades)."""
        with self._write() as conn:
            for task_run_id, fields in changes.items():
                conn.execute(update(t.task_runs).where(t.task_runs.c.task_run_id == task_run_id)
                             .values(**_encode(fields)))

    def get_run(self, run_id: int, *, settings: bool = True) -> dict | None:
        """The run's row; `settings=False` leaves out its settings (large for a job of many tasks)."""
        columns = t.runs.c if settings else [c for c in t.runs.c if c.name != "settings_json"]
        with self.engine.connect() as conn:
            return _first(conn.execute(select(*columns).where(t.runs.c.run_id == run_id)))

    def get_task_run(self, task_run_id: int) -> dict | None:
        with self.engine.connect() as conn:
            return _first(conn.execute(select(t.task_runs).where(t.task_runs.c.task_run_id == task_run_id)))

    def task_runs(self, run_id: int, *, latest_only: bool = True, top_level_only: bool = True,
                  with_task: bool = True) -> list[dict]:
        """A run's task runs by id; `with_task=False` leaves out each one's task JSON."""
        columns = t.task_runs.c if with_task else [c for c in t.task_runs.c if c.name != "task_json"]
        query = select(*columns).where(t.task_runs.c.run_id == run_id).order_by(t.task_runs.c.task_run_id)
        if latest_only:
            query = query.where(t.task_runs.c.is_latest == 1)
        if top_level_only:
            query = query.where(t.task_runs.c.parent_task_run_id.is_(None))
        with self.engine.connect() as conn:
            return _rows(conn.execute(query))

    def child_task_runs(self, parent_task_run_id: int, *, latest_only: bool = True) -> list[dict]:
        """A for-each task run's iterations (the latest attempt of each), by iteration index."""
        query = (select(t.task_runs).where(t.task_runs.c.parent_task_run_id == parent_task_run_id)
                 .order_by(t.task_runs.c.iteration_index, t.task_runs.c.task_run_id))
        if latest_only:
            query = query.where(t.task_runs.c.is_latest == 1)
        with self.engine.connect() as conn:
            return _rows(conn.execute(query))

    def list_runs(self, *, job_id: int | None = None, active_only: bool = False,
                  completed_only: bool = False, run_type: str | None = None,
                  start_time_from: int | None = None, start_time_to: int | None = None,
                  limit: int | None = None, offset: int = 0, before: tuple[int, int] | None = None) -> list[dict]:
        """Newest first. `before=(start_time, run_id)`: only the runs after that one in this order (paging)."""
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
        if before is not None:
            start, run_id = before
            query = query.where((t.runs.c.start_time < start)
                                | ((t.runs.c.start_time == start) & (t.runs.c.run_id < run_id)))
        if limit:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self.engine.connect() as conn:
            return _rows(conn.execute(query))

    def delete_run(self, run_id: int, *, keep_token: bool = False) -> None:
        """Delete a run and everything of it; `keep_token` remembers its idempotency token (runs/delete)."""
        with self._write() as conn:
            if keep_token:
                row = conn.execute(select(t.runs.c.job_id, t.runs.c.idempotency_token)
                                   .where(t.runs.c.run_id == run_id)).first()
                if row is not None and row.idempotency_token is not None:
                    conn.execute(insert(t.deleted_run_tokens).values(
                        job_id=row.job_id, idempotency_token=row.idempotency_token, run_id=run_id,
                        deleted_time=now_ms()))
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

_DEFAULTS = {"life_cycle_state": "PENDING", "state_message": "", "attempt_number": 0, "execution_count": 0,
             "is_latest": 1, "compute": "local", "start_time": 0, "end_time": 0, "cancel_requested": 0}


def _on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _on_begin), DDL included
    cursor = dbapi_connection.cursor()
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _use_wal(cursor, wait: float = 30.0) -> None:
    """WAL mode (kept in the file once set). Switching needs the database to itself, which fails at once
    with "database is locked" (no busy wait) while another process opening a new workspace holds it:
    retry then, bounded."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _on_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("nbjobs_write") else "BEGIN")
