"""A long-running service: one start/stop lifecycle, async, with a health report.

Shaped after Prefect's `prefect.server.services.base` (`Service.start()` runs until `stop()`;
`LoopService.run_once()` every `loop_seconds`), https://github.com/PrefectHQ/prefect/blob/main/src/prefect/server/services/base.py
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, TypeVar

if TYPE_CHECKING:  # only for annotations: a service module imports neither the store nor the service layer
    from ..service import Workspace
    from ..store import Store

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on a new daemon thread, awaited. Unlike `asyncio.to_thread` it also works while the
    interpreter exits (atexit: thread pools take no new work then), when a host still stops its services."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():  # canceled before it started; once running it cannot be
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            future.set_exception(exc)

    threading.Thread(target=target, name="nbjobs-service-io", daemon=True).start()
    return await asyncio.wrap_future(future)


# Health states a host reports for a service.
STATES = ("starting", "running", "standby", "backoff", "stopping", "stopped", "stuck")


@dataclass
class ServiceContext:
    """What a service gets from its host: the workspace folder, its store, the host's identity."""

    home: Path
    store: "Store"
    holder: str  # the host's id (also the lease holder's)
    log: logging.Logger
    _workspace: Any = field(default=None, repr=False)
    _open_workspace: Any = field(default=None, repr=False)  # () -> Workspace, when the host owns none

    def workspace(self) -> "Workspace":
        """The workspace (its run engine), opened by the host on first use when it was not given one."""
        if self._workspace is None:
            self._workspace = self._open_workspace()
        return self._workspace


class Service:
    """Subclass and set `name`; `start(context)` runs until `stop()` is called (on the same loop).

    `once_per_workspace`: the host runs it only while it holds the workspace lease named after it.
    A service that raises from `start`, or returns before `stop`, is restarted by its host with backoff.
    Each service runs on its own thread and event loop, so a blocking one delays nobody else; still,
    do blocking work (SQLite, files) in `await in_thread(...)` so `stop()` is served promptly.
    """

    name: ClassVar[str] = ""
    once_per_workspace: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self) -> None:
        self.state = "stopped"
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self.last_beat: float | None = None
        self.started_time: float | None = None
        self.restarts = 0

    async def start(self, context: ServiceContext) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """Ask `start` to return soon (called on the service's own loop)."""

    def beat(self) -> None:
        """Record that the service is alive and working (shown as `last_beat`)."""
        self.last_beat = time.time()

    def health(self) -> dict[str, Any]:
        """JSON-able: state, last error, last beat, restarts (subclasses add their own keys)."""
        return {"state": self.state, "once_per_workspace": self.once_per_workspace,
                "last_error": self.last_error, "last_error_time": self.last_error_time,
                "last_beat": self.last_beat, "started_time": self.started_time, "restarts": self.restarts}


class LoopService(Service):
    """A service that calls `run_once()` every `interval` seconds until stopped (Prefect's LoopService).

    An exception from `run_once` is recorded in the health report and the loop goes on."""

    interval: float = 10.0
    interval_env: ClassVar[str] = ""  # an environment variable that overrides `interval`, if set

    def __init__(self, interval: float | None = None) -> None:
        super().__init__()
        if interval is None and self.interval_env and os.environ.get(self.interval_env):
            interval = float(os.environ[self.interval_env])
        if interval is not None:
            self.interval = float(interval)
        self._stopped: asyncio.Event | None = None
        self.context: ServiceContext | None = None

    async def run_once(self) -> None:
        raise NotImplementedError

    async def start(self, context: ServiceContext) -> None:
        self.context = context
        self._stopped = asyncio.Event()
        while not self._stopped.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # noqa: BLE001 - reported in health, the loop goes on
                self.last_error, self.last_error_time = f"{type(exc).__name__}: {exc}", time.time()
                context.log.warning("nbjobs service %s: %s", self.name, self.last_error)
            else:
                self.beat()
            try:
                await asyncio.wait_for(self._stopped.wait(), self.next_wait())
            except asyncio.TimeoutError:
                pass

    def next_wait(self) -> float:
        """Seconds until the next `run_once` (default: `interval`)."""
        return self.interval

    async def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()
