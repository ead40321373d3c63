"""Jobs in the workspace store (mixed into `Store`)."""
from __future__ import annotations

from sqlalchemy import delete, func, insert, select, update

from . import schema as t
from .rows import _dumps, _first, now_ms, rows_of as _rows


class JobStore:
    """jobs/create, update, get, list, delete; the limits a running driver polls."""

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
            return _first(conn.execute(select(t.jobs).where(t.jobs.c.job_id == job_id)))

    def list_jobs(self, *, name: str | None = None) -> list[dict]:
        """Newest first; `name` matches exactly, case-insensitively (as jobs/list does)."""
        query = select(t.jobs).order_by(t.jobs.c.job_id.desc())
        if name is not None:
            query = query.where(func.lower(t.jobs.c.name) == name.lower())
        with self.engine.connect() as conn:
            return _rows(conn.execute(query))

    def delete_job(self, job_id: int) -> None:
        with self._write() as conn:
            conn.execute(delete(t.jobs).where(t.jobs.c.job_id == job_id))

    def job_limits(self, job_id: int) -> dict[str, int | None] | None:
        """The job's current `timeout_seconds` and `max_concurrent_runs` (read without decoding its
        settings: a running driver polls them), or None when the job is gone."""
        settings = t.jobs.c.settings_json
        query = select(func.json_extract(settings, "$.timeout_seconds"),
                       func.json_extract(settings, "$.max_concurrent_runs")).where(t.jobs.c.job_id == job_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else {"timeout_seconds": row[0], "max_concurrent_runs": row[1]}
