"""Run and task lifecycle events, and the bus that carries them to subscribers off the run loop.

The run engine publishes every event of every run, whichever client started it; subscribers (the
CLI's progress lines, the panel, the notifier, the Jobs UI) each get their own queue and thread, so a
slow, blocking or failing subscriber never stalls or breaks a run. Observer shape after nbclient's
hooks (``on_cell_start`` …): one small dataclass, one callable per subscriber. Stdlib only.

    sub = workspace.events.subscribe(print, run_id=42)   # delivered on the subscription's thread
    ...
    sub.close()                                          # delivers what was published, then stops
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ._folders import PerFolder

__all__ = ["EVENT_KINDS", "EventBus", "EventHandler", "RunEvent", "Subscription", "bus_for"]

log = logging.getLogger(__name__)

# The kinds, in the order a run emits them.
EVENT_KINDS = (
    "run_queued",       # the run waits for a slot (max_concurrent_runs)
    "run_start",        # the run is RUNNING
    "task_start",       # one attempt of a task started (attempt_number counts from 0)
    "task_progress",    # a for-each task's iterations changed (stats = for_each_task.stats)
    "task_retry",       # an attempt failed; the task is WAITING_FOR_RETRY (result_state: the failed attempt's)
    "task_end",         # a task's final result (after its retries), also a skipped task
    "duration_warning",  # a health rule RUN_DURATION_SECONDS GREATER_THAN n was passed (run, or task_key's)
    "run_end",          # the run is terminal
)


@dataclass
class RunEvent:
    """One thing that happened to a run (see EVENT_KINDS)."""
    kind: str
    run_id: int
    task_key: str | None = None
    task_run_id: int | None = None
    life_cycle_state: str | None = None
    result_state: str | None = None
    message: str = ""
    row: dict = field(default_factory=dict)
    attempt_number: int = 0
    stats: dict | None = None


EventHandler = Callable[[RunEvent], None]

_STOP = object()


class Subscription:
    """One subscriber: a queue and a thread that calls `handler` with each event in order."""

    def __init__(self, bus: EventBus, handler: EventHandler, *, run_id: int | None = None,
                 kinds: Iterable[str] | None = None, name: str | None = None, maxsize: int = 100_000):
        self.bus = bus
        self.handler = handler
        self.run_id = run_id
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.name = name or getattr(handler, "__qualname__", None) or repr(handler)
        self.dropped = 0        # events not queued because the subscriber fell `maxsize` behind
        self.failures = 0       # events whose handler raised (logged)
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._cond = threading.Condition()
        self._queued = 0
        self._handled = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"nbjobs-events:{self.name}"[:60], daemon=True)
        self._thread.start()

    def wants(self, event: RunEvent) -> bool:
        return ((self.run_id is None or event.run_id == self.run_id)
                and (self.kinds is None or event.kind in self.kinds))

    def _offer(self, event: RunEvent) -> None:
        with self._cond:
            if self._closed:
                return
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.dropped += 1
                return
            self._queued += 1

    def _loop(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                return
            try:
                self.handler(event)
            except Exception:  # a subscriber must never break the others, nor the run
                self.failures += 1
                log.exception("nbjobs event subscriber %s failed on %s of run %s", self.name, event.kind,
                              event.run_id)
            finally:
                with self._cond:
                    self._handled += 1
                    self._cond.notify_all()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until the events queued so far were handled; False if `timeout` passed first."""
        if threading.current_thread() is self._thread:
            return True  # called from the handler itself
        with self._cond:
            target = self._queued
            return self._cond.wait_for(lambda: self._handled >= target, timeout)

    def close(self, *, flush: bool = True, timeout: float | None = 10.0) -> None:
        """Stop receiving; deliver what was queued first (`flush`), then end the thread."""
        self.bus._remove(self)
        if flush:
            self.flush(timeout)
        with self._cond:
            if self._closed:
                return
            self._closed = True
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:  # pragma: no cover - a stuck subscriber's thread ends with the process
            pass

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of RunEvents. `publish` never blocks and never raises."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()

    def subscribe(self, handler: EventHandler, *, run_id: int | None = None, kinds: Iterable[str] | None = None,
                  name: str | None = None) -> Subscription:
        """Call `handler(event)` for each event (of `run_id` only, of `kinds` only), on its own thread."""
        if kinds is not None:
            unknown = set(kinds) - set(EVENT_KINDS)
            if unknown:
                raise ValueError(f"kinds: unknown event kind(s) {sorted(unknown)}; known: {', '.join(EVENT_KINDS)}")
        sub = Subscription(self, handler, run_id=run_id, kinds=kinds, name=name)
        with self._lock:
            self._subs = self._subs + (sub,)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def wants(self, run_id: int) -> bool:
        """Some subscriber would receive this run's events (publishers may skip building them)."""
        return any(s.run_id is None or s.run_id == run_id for s in self._subs)

    def publish(self, event: RunEvent) -> None:
        for sub in self._subs:  # a tuple: subscribing meanwhile is safe
            if sub.wants(event):
                sub._offer(event)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return self._subs


_BUSES: PerFolder[EventBus] = PerFolder(lambda _key: EventBus())


def bus_for(home: str | os.PathLike) -> EventBus:
    """The process's bus of a workspace folder: every Workspace of that folder publishes there."""
    return _BUSES.get(home)
