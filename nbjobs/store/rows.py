"""Store rows: JSON columns decoded under short names, the time helpers, the run states the store counts."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from sqlalchemy.engine import Connection

_JSON_COLUMNS = {
    "settings_json": "settings", "tags_json": "tags", "job_parameters_json": "job_parameters",
    "task_json": "task", "resolved_values_json": "resolved_values", "request_json": "request",
    "task_run_ids_json": "task_run_ids", "only_json": "only", "input_json": "input",
    "trigger_info_json": "trigger_info",
}

ACTIVE_STATES = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")
# Active and admitted: these count against a job's max_concurrent_runs (QUEUED runs wait for a slot).
ADMITTED_STATES = tuple(s for s in ACTIVE_STATES if s != "QUEUED")


def now_ms() -> int:
    return int(time.time() * 1000)


def utc_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def rows_of(result) -> list[dict[str, Any]]:
    """Result rows as dicts, JSON columns decoded under their short names (columns looked up once)."""
    columns = list(result.keys())
    names = [_JSON_COLUMNS.get(c, c) for c in columns]
    decoded = [_JSON_COLUMNS[c] for c in columns if c in _JSON_COLUMNS]
    loads = json.loads
    out = []
    for values in result.all():
        row = dict(zip(names, values))
        for name in decoded:
            value = row[name]
            if value is not None:
                row[name] = loads(value)
        out.append(row)
    return out


def _first(result) -> dict[str, Any] | None:
    """The first result row as a dict (as `_rows`), or None."""
    rows = rows_of(result)
    return rows[0] if rows else None


def _columns(table: Any, columns: Iterable[str]) -> list[str]:
    """`columns`, checked to be `table`'s (they are written into SQL text)."""
    columns = list(columns)
    unknown = set(columns) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(sorted(unknown))}")
    return columns


def _insert_many(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """One executemany INSERT of rows that have the same keys (known columns of `table`)."""
    columns = _columns(table, rows[0])
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         [tuple(row[c] for c in columns) for row in rows])


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def _encode(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Short JSON field names (settings, task, ...) back to their columns."""
    reverse = _JSON_FIELDS
    return {reverse.get(k, k): (_dumps(v) if k in reverse and v is not None else v) for k, v in fields.items()}


_JSON_FIELDS = {v: k for k, v in _JSON_COLUMNS.items()}  # short name -> column
