"""The notifier: a subscriber on the workspace's event bus that turns run events into deliveries.

Every process that executes runs attaches it (`watch_run`, called by `Workspace.execute_run`), so a run
started from the CLI, the panel, the REST server or a service notifies exactly once, from the process
that executes it. Deciding is pure (`rules.notices_for`); sending happens on a small thread pool with
timeouts and retries (`send.deliver`), each delivery recorded in the store. The run loop only publishes
events: a slow or dead destination never delays or fails a run.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._folders import PerFolder
from ..events import RunEvent, Subscription, bus_for
from .config import ConfigError, Destination, NotificationsConfig, load_notifications_config
from .messages import MessageContext, first_line
from .rules import notices_for
from .send import Outcome, deliver

__all__ = ["Notifier", "RunWatch", "has_notifications", "notifier_for", "watch_run"]

log = logging.getLogger(__name__)

_FAILED_TASK = ("FAILED", "TIMEDOUT", "CANCELED")
_KINDS = ("run_start", "task_start", "task_retry", "task_end", "duration_warning", "run_end")
# On close, deliveries still in flight get this long (seconds) before they are recorded as abandoned.
DRAIN_SECONDS = float(os.environ.get("NBJOBS_NOTIFY_DRAIN_SECONDS", "30"))


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def has_notifications(settings: Any) -> bool:
    """The job (JobSettings or its dict), or one of its tasks, names an email address or a destination
    for some event (checked before anything else: most jobs ask for none)."""
    def any_in(section: Any) -> bool:
        return isinstance(section, Mapping) and any(
            isinstance(v, list) and v for k, v in section.items() if k.startswith("on_"))
    levels = [settings] + list(_field(settings, "tasks") or ())
    return any(any_in(_field(s, "email_notifications")) or any_in(_field(s, "webhook_notifications"))
               for s in levels)


def run_page_url(home: Path, run_id: int) -> str:
    """The run's folder (executed notebooks, logs), as a file:// URL."""
    return (Path(home) / "runs" / str(run_id)).as_uri()


class RunWatch:
    """The notifier's subscription for one execution of a run (closed after its run_end)."""

    def __init__(self, notifier: Notifier, run_id: int, settings: dict, config: NotificationsConfig | None,
                 config_error: str):
        self.notifier, self.run_id, self.settings = notifier, run_id, settings
        self.config, self.config_error = config, config_error
        self.subscription: Subscription | None = None

    def handle(self, event: RunEvent) -> None:
        try:
            self.notifier.handle(self, event)
        finally:
            if event.kind == "run_end" and self.subscription is not None:
                self.subscription.close()  # from its own thread: returns at once
                self.notifier.forget(self)

    def release(self) -> None:
        """The execution returned: stop listening (after the queued events) without blocking the caller."""
        sub = self.subscription
        if sub is not None and sub in self.notifier.bus.subscriptions:
            threading.Thread(target=sub.close, name="nbjobs-notify-release", daemon=True).start()


class Notifier:
    """One per workspace folder and process: watches runs, sends and records their notifications."""

    def __init__(self, home: str | os.PathLike):
        self.home = Path(home)
        self.bus = bus_for(self.home)
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}   # destination -> its sender thread (in order, per destination)
        self._pending: dict[concurrent.futures.Future, int] = {}   # future -> delivery id
        self._stop = threading.Event()
        self._store: Any = None
        self._watches: set[RunWatch] = set()  # runs watched now (their subscriptions may hold events)

    @property
    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from ..store import Store
                self._store = Store(self.home)
            return self._store

    # -- watching runs ------------------------------------------------------------------------
    def watch(self, run_id: int, settings: Mapping[str, Any]) -> RunWatch | None:
        """Subscribe for one execution of `run_id`, when its job asks for notifications."""
        if not has_notifications(settings):
            return None
        config, error = None, ""
        try:
            config = load_notifications_config(self.home)
        except ConfigError as exc:
            error = str(exc)
        watch = RunWatch(self, run_id, dict(settings), config, error)
        with self._lock:
            self._watches.add(watch)
        watch.subscription = self.bus.subscribe(watch.handle, run_id=run_id, kinds=_KINDS,
                                                name=f"notifier:{run_id}")
        return watch

    def handle(self, watch: RunWatch, event: RunEvent) -> None:
        notices = notices_for(event.kind, watch.settings, task_key=event.task_key, result_state=event.result_state,
                              life_cycle_state=event.life_cycle_state, attempt_number=event.attempt_number)
        if not notices:
            return
        ctx = self.context(watch, event)
        for notice in notices:
            ctx_n = MessageContext(**{**ctx.__dict__, "event": notice.event})
            if notice.channel == "email":
                destination, label = Destination(notice.target, "email", addresses=(notice.target,)), notice.target
            else:
                destination = watch.config.destinations.get(notice.target) if watch.config else None
                label = notice.target
            kind = destination.type if destination is not None else "unknown"
            delivery_id = self.store.add_delivery(watch.run_id, notice.event, label, kind, task_key=notice.task_key)
            if watch.config is None:
                self.store.update_delivery(delivery_id, attempts=0, result="FAILED", error=watch.config_error)
            elif destination is None:
                known = ", ".join(sorted(watch.config.destinations)) or "none"
                self.store.update_delivery(delivery_id, attempts=0, result="FAILED",
                                           error=f"unknown destination id {notice.target!r}; known ids: {known} "
                                                 f"(notifications.destinations in the workspace config)")
            else:
                self.submit(delivery_id, destination, ctx_n, watch.config)

    def context(self, watch: RunWatch, event: RunEvent) -> MessageContext:
        store = self.store
        run = store.get_run(watch.run_id, settings=False) or {}
        parent = None
        if run.get("parent_task_run_id"):
            row = store.get_task_run(run["parent_task_run_id"])
            parent = row["run_id"] if row else None
        failed: list[tuple[str, str]] = []
        if event.result_state not in (None, "SUCCESS"):
            if event.kind == "run_end":
                rows = store.task_runs(watch.run_id, with_task=False)
            elif event.kind in ("task_end", "task_retry"):
                rows = [event.row or store.get_task_run(event.task_run_id) or {}]
            else:
                rows = []
            failed = [(r.get("task_key") or event.task_key or "", first_line(r.get("error") or r.get("state_message")))
                      for r in rows if r and r.get("result_state") in _FAILED_TASK]
        return MessageContext(
            event="", run_id=watch.run_id, job_id=run.get("job_id"),
            job_name=watch.settings.get("name") or run.get("run_name") or "", task_key=event.task_key,
            life_cycle_state=event.life_cycle_state, result_state=event.result_state, message=event.message,
            run_page_url=run_page_url(self.home, watch.run_id), failed_tasks=failed, parent_run_id=parent,
            attempt_number=event.attempt_number)

    # -- delivering ---------------------------------------------------------------------------
    def submit(self, delivery_id: int, destination: Destination, ctx: MessageContext,
               config: NotificationsConfig) -> concurrent.futures.Future:
        """Queue a delivery on its destination's lane: one destination gets its messages in order, and a
        slow one delays no other."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._stop.clear()
            lane = self._lanes.get(destination.id)
            if lane is None:
                lane = self._lanes[destination.id] = _Lane(self, destination.id)
            lane.queue.put((future, lambda: self._deliver(delivery_id, destination, ctx, config)))
            self._pending[future] = delivery_id
        future.add_done_callback(self._done)
        return future

    def _done(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._pending.pop(future, None)

    def _deliver(self, delivery_id: int, destination: Destination, ctx: MessageContext,
                 config: NotificationsConfig) -> Outcome:
        def attempt_failed(number: int, error: str) -> None:
            self.store.update_delivery(delivery_id, attempts=number, result="PENDING", error=error)
            log.info("notification %s to %s: attempt %d failed: %s", ctx.event, destination.id, number, error)

        outcome = deliver(destination, ctx, config, stop=self._stop, on_attempt=attempt_failed)
        self.store.update_delivery(delivery_id, attempts=outcome.attempts, result=outcome.result, error=outcome.error)
        if outcome.result != "DELIVERED":
            log.warning("notification %s of run %s to %s failed after %d attempt(s): %s", ctx.event, ctx.run_id,
                        destination.id, outcome.attempts, outcome.error)
        return outcome

    def forget(self, watch: RunWatch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until the events received so far were handled and the deliveries they started ended;
        False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            if watch.subscription is not None:
                watch.subscription.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._lock:
            futures = list(self._pending)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        done, not_done = concurrent.futures.wait(futures, timeout=timeout)
        return not not_done

    def close(self, timeout: float = DRAIN_SECONDS) -> None:
        """Give in-flight deliveries `timeout` seconds, then stop retrying and record the rest abandoned."""
        self.drain(timeout)
        self._stop.set()
        with self._lock:
            lanes, self._lanes = list(self._lanes.values()), {}
            left = list(self._pending.values())
            for future in list(self._pending):
                future.cancel()  # not started yet: never started now
        for lane in lanes:
            lane.queue.put(None)
        for delivery_id in left:
            try:
                self.store.update_delivery(delivery_id, attempts=0, result="FAILED",
                                           error="abandoned: the process stopped before the delivery ended")
            except Exception:  # pragma: no cover - a closed or deleted workspace folder
                log.exception("cannot record an abandoned notification delivery")


class _Lane:
    """One destination's sender thread; it ends after `IDLE_SECONDS` without work."""

    IDLE_SECONDS = 60.0

    def __init__(self, notifier: Notifier, name: str):
        self.notifier, self.name = notifier, name
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, name=f"nbjobs-notify:{name}"[:60], daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self.notifier._lock:  # submit puts under this lock: nothing can arrive meanwhile
                    if self.queue.empty():
                        if self.notifier._lanes.get(self.name) is self:
                            del self.notifier._lanes[self.name]
                        return
                continue
            if item is None:
                return
            future, work = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work())
            except BaseException as exc:  # recorded by _deliver; kept on the future for drain()
                future.set_exception(exc)


_NOTIFIERS: PerFolder[Notifier] = PerFolder(lambda key: Notifier(key))


def notifier_for(home: str | os.PathLike) -> Notifier:
    """The process's notifier of a workspace folder."""
    return _NOTIFIERS.get(home)


def watch_run(home: str | os.PathLike, run_id: int, settings: Any) -> RunWatch | None:
    """Attach the notifier to one execution of a run of `settings` (JobSettings or its dict); None when
    the job asks for no notifications."""
    if not has_notifications(settings):
        return None
    if not isinstance(settings, Mapping):
        settings = settings.model_dump(exclude_none=True)
    return notifier_for(home).watch(run_id, settings)


def notify_recovered(store: Any, run_ids: list[int]) -> None:
    """Runs just ended INTERNAL_ERROR because their process died (`Store.recover_orphans`, which returns
    only the runs its own transaction ended, so this runs once per run): the run_end, and a task_end for
    each task cut short, go to the notifier as if the dead process had sent them."""
    bus = bus_for(store.home)
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run is None or watch_run(store.home, run_id, run["settings"] or {}) is None:
            continue
        for row in store.task_runs(run_id):
            if row["life_cycle_state"] == "INTERNAL_ERROR":
                bus.publish(RunEvent("task_end", run_id, row["task_key"], row["task_run_id"], "INTERNAL_ERROR",
                                     row["result_state"], row["state_message"] or "", row=row,
                                     attempt_number=row.get("attempt_number") or 0))
        bus.publish(RunEvent("run_end", run_id, life_cycle_state=run["life_cycle_state"],
                             result_state=run["result_state"], message=run["state_message"] or ""))


def close_notifier(home: str | os.PathLike, timeout: float = DRAIN_SECONDS) -> None:
    """The last workspace of `home` in this process closes: finish (or abandon) its deliveries."""
    notifier = _NOTIFIERS.pop(home)
    if notifier is not None:
        notifier.close(timeout)
        if notifier._store is not None:
            notifier._store.close()
