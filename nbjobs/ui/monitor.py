"""Follow runs without blocking the kernel: a daemon thread re-reads runs/get when a RunEvent
arrives (`wake`, the run's `on_event` handler) or every `interval` seconds (runs started elsewhere).

Thread-safe: `wake` is called on the event bus's subscription thread (nbjobs.events), `watch` and
`stop` on the kernel's or the panel's worker thread, `on_update` runs on the monitor's own thread."""
from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from .states import is_active


class RunMonitor:
    """Calls `on_update(run_json)` for each watched run until it ends (and once more at its end)."""

    def __init__(self, get_run: Callable[[int], dict], on_update: Callable[[dict], None], *,
                 interval: float = 0.5, settle: float = 0.05):
        self._get_run = get_run
        self._on_update = on_update
        self.interval = interval
        self.settle = settle
        self._watched: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def watched(self) -> set[int]:
        with self._lock:
            return set(self._watched)

    def watch(self, run_id: int) -> None:
        """Follow `run_id` (read it at once) until it ends."""
        with self._lock:
            self._watched.add(int(run_id))
            self._stopped = False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="nbjobs-panel-monitor", daemon=True)
                self._thread.start()
        self._wake.set()

    def wake(self, event: Any = None) -> None:
        """A RunEvent handler (any thread): something changed, read the watched runs now."""
        self._wake.set()

    def stop(self) -> None:
        """Stop following: no read starts after this returns (the thread ends at its next turn)."""
        with self._lock:
            self._stopped = True
            self._watched.clear()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            if self.settle:
                self._wake.wait(self.settle)  # let a burst of events land, then read once
            self._wake.clear()  # before reading: an event from now on means another read
            with self._lock:
                if self._stopped:
                    self._thread = None
                    return
                watched = sorted(self._watched)
            for run_id in watched:
                try:
                    run = self._get_run(run_id)
                except Exception:
                    traceback.print_exc()
                    with self._lock:
                        self._watched.discard(run_id)
                    continue
                with self._lock:
                    if run_id not in self._watched:  # stopped meanwhile
                        continue
                    if not is_active(run):
                        self._watched.discard(run_id)
                try:
                    self._on_update(run)
                except Exception:  # a display problem must not stop the monitor
                    traceback.print_exc()
            with self._lock:
                if not self._watched or self._stopped:
                    self._thread = None
                    return
