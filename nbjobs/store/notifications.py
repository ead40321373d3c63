"""Notification deliveries in the workspace store: one row per event and destination (`nbjobs.notify`).

A row is written PENDING when the notifier decides to send, then updated with the attempts made and the
result (DELIVERED or FAILED) and the last error, which never holds a secret (the notifier redacts it).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from . import schema as t
from .rows import now_ms, rows_of

DELIVERY_RESULTS = ("PENDING", "DELIVERED", "FAILED")


class NotificationStore:
    """Mixed into `Store`: record and list notification deliveries."""

    engine: Engine
    _write: Callable[[], AbstractContextManager[Connection]]

    def add_delivery(self, run_id: int, event: str, destination: str, destination_type: str, *,
                     task_key: str | None = None) -> int:
        """A PENDING delivery row; its id."""
        with self._write() as conn:
            return conn.execute(insert(t.notification_deliveries).values(
                run_id=run_id, task_key=task_key, event=event, destination=destination,
                destination_type=destination_type, created_time=now_ms(), sent_time=0, attempts=0,
                result="PENDING", error="")).inserted_primary_key[0]

    def update_delivery(self, delivery_id: int, *, attempts: int, result: str, error: str = "") -> None:
        if result not in DELIVERY_RESULTS:
            raise ValueError(f"result: {result!r} is not one of {', '.join(DELIVERY_RESULTS)}")
        with self._write() as conn:
            conn.execute(update(t.notification_deliveries)
                         .where(t.notification_deliveries.c.delivery_id == delivery_id)
                         .values(attempts=attempts, result=result, error=error, sent_time=now_ms()))

    def list_deliveries(self, run_id: int) -> list[dict[str, Any]]:
        """A run's deliveries, oldest first."""
        d = t.notification_deliveries
        with self.engine.connect() as conn:
            return rows_of(conn.execute(select(d).where(d.c.run_id == run_id).order_by(d.c.delivery_id)))
