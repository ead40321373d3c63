"""The store as one run driver sees it: task-run state written in batches, read from memory.

A run of 10,000 instant tasks (conditions) must not cost 10,000 x (a few transactions + a re-read of
every task row). `BatchedRunStore` wraps a `Store` for one run:

- `update_task_run` / `update_task_runs` are buffered (merged per task run) and written in one
  transaction (`Store.write_task_runs`) as soon as the driver's event loop turns — so a stretch of
  tasks that ran without waiting (conditions, skips) costs one commit, and state is never more than
  one loop turn behind;
- the run's top-level task rows and task values are loaded once and kept up to date in memory, so
  `get_task_run`, `execution_count`, `task_values`, `latest_task_row` and `values_of` read no rows;
- every other call goes to the `Store` after a flush (writes stay in program order); one that may
  change task rows (a retry's new task run, a repair) drops the cache, which reloads on next use.
"""
from __future__ import annotations

import asyncio
from typing import Any, Mapping

_READS = frozenset({
    "get_job", "job_limits", "list_jobs", "list_runs", "child_task_runs", "repairs",
    "cancel_requests", "previous_task_runs", "schema_version", "runs_dir", "home", "path", "engine",
})


FLUSH_EVERY = 500  # task runs per write transaction at most


class BatchedRunStore:
    """A write-behind, read-through view of `store` for run `run_id` (used on one event loop)."""

    def __init__(self, store: Any, run_id: int):
        self.store = store
        self.run_id = run_id
        self._rows: dict[int, dict] | None = None
        self._latest: dict[str, int] = {}
        self._values: dict[str, dict[str, Any]] | None = None
        self._counts: dict[tuple[str, int | None], int] | None = None
        self._pending: dict[int, dict[str, Any]] = {}
        self._pending_values: dict[int, dict[str, Any]] = {}
        self._scheduled = False
        self._run: dict | None = None  # the run's row (its settings JSON decoded once, not per read)

    # -- the cache --------------------------------------------------------------------------------
    def _load(self) -> dict[int, dict]:
        if self._rows is None:
            rows = self.store.task_runs(self.run_id, latest_only=False, with_task=False)  # the driver has them
            self._rows = {r["task_run_id"]: r for r in rows}
            self._latest = {}
            for r in rows:  # ordered by id: the newest of a task wins
                if r.get("is_latest", 1):
                    self._latest[r["task_key"]] = r["task_run_id"]
        return self._rows

    def _row(self, task_run_id: int) -> dict | None:
        rows = self._load()
        row = rows.get(task_run_id)
        if row is None:  # an iteration, or a task run made since the load
            self.flush()
            row = self.store.get_task_run(task_run_id)
            if row is not None:
                rows[task_run_id] = row
                if row.get("parent_task_run_id") is None and row.get("is_latest", 1):
                    if task_run_id >= self._latest.get(row["task_key"], 0):
                        self._latest[row["task_key"]] = task_run_id
        return row

    def _invalidate(self) -> None:
        self._rows = None
        self._counts = None
        self._values = None

    # -- buffered writes ------------------------------------------------------------------------------
    def update_task_run(self, task_run_id: int, *, values: Mapping[str, Any] | None = None, **fields: Any) -> None:
        row = self._row(task_run_id)
        if row is not None and task_run_id not in self._pending:  # what the row already holds is not rewritten
            fields = {k: v for k, v in fields.items() if k not in row or row[k] != v}
        if fields:
            self._pending.setdefault(task_run_id, {}).update(fields)
            if row is not None:
                row.update(fields)
                count = fields.get("execution_count")
                if count is not None and row.get("parent_task_run_id") is None and self._counts is not None:
                    slot = (row["task_key"], None)
                    self._counts[slot] = max(self._counts.get(slot, 0), int(count))
        if values:
            self._pending_values.setdefault(task_run_id, {}).update(values)
            if row is not None and self._values is not None:
                self._values.setdefault(row["task_key"], {}).update(values)
        if len(self._pending) >= FLUSH_EVERY:  # a long stretch without a loop turn: bounded transactions
            self.flush()
        else:
            self._schedule()

    def update_task_runs(self, changes: Mapping[int, Mapping[str, Any]]) -> None:
        for task_run_id, fields in changes.items():
            self.update_task_run(task_run_id, **fields)

    def _schedule(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is buffered, in one transaction."""
        self._scheduled = False
        if not self._pending and not self._pending_values:
            return
        changes, self._pending = self._pending, {}
        pending_values, self._pending_values = self._pending_values, {}
        values = []
        for task_run_id, items in pending_values.items():
            row = self._row(task_run_id)
            if row is not None:
                values.append((row["run_id"], row["task_key"], task_run_id, items))
        try:
            self.store.write_task_runs(changes, values)
        except BaseException:
            for task_run_id, fields in changes.items():  # keep them for the next flush
                self._pending.setdefault(task_run_id, {}).update({**fields, **self._pending.get(task_run_id, {})})
            for task_run_id, items in pending_values.items():
                self._pending_values.setdefault(task_run_id, {}).update(items)
            raise

    # -- reads from memory --------------------------------------------------------------------------------
    def get_run(self, run_id: int) -> dict | None:
        """A run's row; this run's without its settings (the driver holds them validated)."""
        if run_id != self.run_id:
            self.flush()
            return self.store.get_run(run_id)
        if self._run is None:
            self.flush()
            self._run = self.store.get_run(run_id, settings=False)  # the driver has the settings
        return dict(self._run) if self._run is not None else None

    def update_run(self, run_id: int, **fields: Any) -> None:
        self.flush()
        self.store.update_run(run_id, **fields)
        if run_id == self.run_id and self._run is not None:
            self._run.update(fields)

    def get_task_run(self, task_run_id: int) -> dict | None:
        row = self._row(task_run_id)
        return dict(row) if row is not None else None

    def execution_count(self, run_id: int, task_key: str, *, parent_task_run_id: int | None = None,
                        iteration_index: int | None = None) -> int:
        if run_id != self.run_id or parent_task_run_id is not None:
            self.flush()
            return self.store.execution_count(run_id, task_key, parent_task_run_id=parent_task_run_id,
                                              iteration_index=iteration_index)
        if self._counts is None:
            self.flush()
            self._counts = self.store.execution_counts(run_id)
        return self._counts.get((task_key, None), 0)

    def task_runs(self, run_id: int, *, latest_only: bool = True, top_level_only: bool = True) -> list[dict]:
        if run_id != self.run_id or not top_level_only:
            self.flush()
            return self.store.task_runs(run_id, latest_only=latest_only, top_level_only=top_level_only)
        rows = self._load()
        return [dict(rows[i]) for i in sorted(rows) if not latest_only or rows[i].get("is_latest", 1)]

    def task_values(self, run_id: int) -> dict[str, dict[str, Any]]:
        if run_id != self.run_id:
            self.flush()
            return self.store.task_values(run_id)
        return {k: dict(v) for k, v in self._all_values().items()}

    def _all_values(self) -> dict[str, dict[str, Any]]:
        if self._values is None:
            self.flush()
            self._values = self.store.task_values(self.run_id)
        return self._values

    def values_of(self, task_key: str) -> dict[str, Any]:
        """The task values `task_key` set in this run (a copy)."""
        return dict(self._all_values().get(task_key) or {})

    def latest_task_row(self, task_key: str) -> dict | None:
        """The latest top-level task run of `task_key` in this run (no copy: do not change it)."""
        self._load()
        task_run_id = self._latest.get(task_key)
        return self._rows.get(task_run_id) if task_run_id is not None else None

    def latest_task_run_ids(self) -> dict[str, int]:
        """{task_key: id of its latest top-level task run} (from memory)."""
        self._load()
        return dict(self._latest)

    def task_keys(self) -> list[str]:
        """Keys of the run's top-level tasks that have task runs."""
        self._load()
        return list(self._latest)

    # -- everything else: the store, in order ---------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr
        reads = name in _READS

        def call(*args: Any, **kwargs: Any) -> Any:
            self.flush()
            result = attr(*args, **kwargs)
            if not reads:
                self._run = None  # it may have changed the run's row
                if name not in ("update_repair", "try_admit"):
                    self._invalidate()  # ...or task rows (a new attempt, a repair, an ended run)
            return result

        return call
