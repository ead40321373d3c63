"""Leases and service-host heartbeats in the workspace store (what `nbjobs.services` needs).

A lease names something that must run once per workspace; its holder renews it before `expires_time`
and anyone may take it over after that (the lease pattern of Gray & Cheriton, "Leases: an efficient
fault-tolerant mechanism for distributed file cache consistency", SOSP 1989). Every change is one
BEGIN IMMEDIATE transaction, so two processes never both acquire the same lease.
"""
from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from typing import Any, Callable

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from . import schema as t

# A host row without a heartbeat for this long after it expired is removed by the next heartbeat.
STALE_HOST_MS = 60_000


def _ms() -> int:
    return int(time.time() * 1000)


class LeaseStore:
    """Mixed into `Store`: acquire / renew / release a lease; the service hosts' heartbeat rows."""

    engine: Engine
    _write: Callable[[], AbstractContextManager[Connection]]

    # -- leases -------------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl_ms: int, *, pid: int | None = None,
                      host: str | None = None) -> bool:
        """Take the lease `name` for `holder` when it is free, expired or already `holder`'s (then it
        is renewed). Returns whether `holder` holds it now."""
        now = _ms()
        with self._write() as conn:
            row = conn.execute(select(t.leases.c.holder, t.leases.c.expires_time)
                               .where(t.leases.c.name == name)).first()
            values = dict(holder=holder, pid=pid, host=host, renewed_time=now, expires_time=now + ttl_ms)
            if row is None:
                conn.execute(insert(t.leases).values(name=name, acquired_time=now, **values))
                return True
            if row.holder == holder:
                conn.execute(update(t.leases).where(t.leases.c.name == name).values(**values))
                return True
            if row.expires_time <= now:  # the holder stopped renewing (it died or hangs): take over
                conn.execute(update(t.leases).where(t.leases.c.name == name).values(acquired_time=now, **values))
                return True
            return False

    def renew_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Extend `holder`'s lease; False when the lease is no longer `holder`'s (taken over or released)."""
        now = _ms()
        with self._write() as conn:
            result = conn.execute(update(t.leases).where((t.leases.c.name == name) & (t.leases.c.holder == holder))
                                  .values(renewed_time=now, expires_time=now + ttl_ms))
            return result.rowcount == 1

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up (only `holder`'s), so another process may take it at once."""
        with self._write() as conn:
            conn.execute(delete(t.leases).where((t.leases.c.name == name) & (t.leases.c.holder == holder)))

    def leases(self) -> list[dict[str, Any]]:
        """Every lease row by name, with `expired` (its holder stopped renewing it)."""
        now = _ms()
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(t.leases).order_by(t.leases.c.name))]
        for row in rows:
            row["expired"] = row["expires_time"] <= now
        return rows

    # -- service hosts ------------------------------------------------------------------------
    def beat_host(self, holder: str, ttl_ms: int, health: dict[str, Any], *, pid: int | None = None,
                  host: str | None = None) -> None:
        """Record a service host's heartbeat and its services' health; rows of hosts that stopped
        beating long ago are removed."""
        now = _ms()
        values = dict(pid=pid, host=host, beat_time=now, expires_time=now + ttl_ms,
                      health_json=json.dumps(health, default=str))
        with self._write() as conn:
            updated = conn.execute(update(t.service_hosts).where(t.service_hosts.c.holder == holder).values(**values))
            if updated.rowcount == 0:
                conn.execute(insert(t.service_hosts).values(holder=holder, started_time=now, **values))
            conn.execute(delete(t.service_hosts).where(t.service_hosts.c.expires_time < now - STALE_HOST_MS))

    def remove_host(self, holder: str) -> None:
        with self._write() as conn:
            conn.execute(delete(t.service_hosts).where(t.service_hosts.c.holder == holder))

    def service_hosts(self) -> list[dict[str, Any]]:
        """The service hosts' rows, oldest first: `health` decoded, `alive` while its heartbeat is fresh."""
        now = _ms()
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                select(t.service_hosts).order_by(t.service_hosts.c.started_time))]
        for row in rows:
            row["health"] = json.loads(row.pop("health_json") or "{}")
            row["alive"] = row["expires_time"] > now
        return rows
