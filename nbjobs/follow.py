"""Following a run: its events derived from successive runs/get answers (written once).

The HTTP client follows every run this way; `Workspace.wait` does for a run executing in another
process, and for a run executing in this process it relays the event bus through the same
`RunFollower`, which first reports what happened before it subscribed and drops what it already
reported. Stdlib only (the HTTP client imports it).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .events import EventHandler, RunEvent

__all__ = ["TERMINAL", "RunFollower", "cancel_on_interrupt", "poll_run"]

log = logging.getLogger(__name__)

TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")  # runs/get life_cycle_state of an ended run
# result states of a task that ended without running (no task_start is reported for them)
_NOT_RUN = ("EXCLUDED", "UPSTREAM_FAILED", "UPSTREAM_CANCELED", "DISABLED", "MAXIMUM_CONCURRENT_RUNS_REACHED")


class RunFollower:
    """Reports a run's task_start, task_end and run_end to `on_event` once each, whether they come
    from runs/get answers (`update`) or from the event bus (`relay`); thread-safe."""

    def __init__(self, run_id: int, on_event: EventHandler):
        self.run_id = run_id
        self.on_event = on_event
        self.ended = False
        self._seen: dict[str, tuple[int, str]] = {}  # task_key -> (task run id, "start" | "end")
        self._lock = threading.RLock()

    def update(self, run: dict) -> bool:
        """Report what changed since the last answer; True when the run has ended (run_end sent)."""
        with self._lock:
            for task in run.get("tasks", []):
                self._task(task)
            life = run["state"]["life_cycle_state"]
            if life not in TERMINAL:
                return False
            if not self.ended:
                self.ended = True
                self._emit(RunEvent("run_end", self.run_id, life_cycle_state=life,
                                    result_state=run["state"].get("result_state"),
                                    message=run["state"].get("state_message", ""), row=run))
            return True

    def _task(self, task: dict) -> None:
        state = task.get("state", {})
        life, result = state.get("life_cycle_state"), state.get("result_state")
        key, task_run = task["task_key"], task["run_id"]
        before = self._seen.get(key)
        if before is not None and before[0] != task_run:
            before = None  # a retry or a repair: a new task run
        if before is None and result and result not in _NOT_RUN:
            before = self._seen[key] = (task_run, "start")  # it ran between two answers: its start too
            self._emit(RunEvent("task_start", self.run_id, key, task_run, "RUNNING"))
        if life == "RUNNING" and before is None:
            self._seen[key] = (task_run, "start")
            self._emit(RunEvent("task_start", self.run_id, key, task_run, life))
        elif result and life in TERMINAL and (before is None or before[1] != "end"):
            self._seen[key] = (task_run, "end")
            self._emit(RunEvent("task_end", self.run_id, key, task_run, life, result,
                                state.get("state_message", ""), row=task))

    def relay(self, event: RunEvent) -> None:
        """An event of the bus: passed on unless `update` reported it already."""
        with self._lock:
            if event.kind == "run_end":
                if self.ended:
                    return
                self.ended = True
            elif event.kind in ("task_start", "task_end") and event.task_key is not None:
                step = "start" if event.kind == "task_start" else "end"
                before = self._seen.get(event.task_key)
                if before is not None and before[0] == event.task_run_id and (before[1] == step or step == "start"):
                    return
                self._seen[event.task_key] = (event.task_run_id, step)
            self._emit(event)

    def attach(self, subscribe: Callable[[EventHandler], object], get_run: Callable[[], dict]) -> object:
        """Subscribe `relay` to a bus and report the run as it is now, as one step: an event published
        meanwhile waits, and is dropped if the answer showed it already. Returns the subscription."""
        with self._lock:
            subscription = subscribe(self.relay)
            self.update(get_run())
            return subscription

    def _emit(self, event: RunEvent) -> None:
        try:
            self.on_event(event)
        except Exception:  # an observer must never break waiting
            log.exception("nbjobs: on_event failed on %s of run %s", event.kind, event.run_id)


def poll_run(get_run: Callable[[int], dict], run_id: int, *, timeout: float | None = None,
             on_event: EventHandler | None = None, interval: float = 0.25,
             follower: RunFollower | None = None, tick: Callable[[dict], None] | None = None) -> dict:
    """Poll runs/get until the run ends (or `timeout` seconds pass: the run, still active); its
    task_start, task_end and run_end go to `on_event`. `tick(run)` is called after each answer."""
    if follower is None and on_event is not None:
        follower = RunFollower(run_id, on_event)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = get_run(run_id)
        ended = follower.update(run) if follower is not None else run["state"]["life_cycle_state"] in TERMINAL
        if ended or (deadline is not None and time.monotonic() >= deadline):
            return run
        if tick is not None:
            tick(run)
        time.sleep(interval)


def cancel_on_interrupt(client, run_id: int, *, on_event: EventHandler | None = None,
                        grace: float = 60) -> dict:
    """`client.wait(run_id, on_event=...)`; Ctrl-C (KeyboardInterrupt) cancels the run, waits up to
    `grace` seconds for it to stop (its kernels and subprocesses), then re-raises."""
    try:
        return client.wait(run_id, on_event=on_event)
    except KeyboardInterrupt:
        client.cancel_run(run_id)
        client.wait(run_id, timeout=grace)
        raise
