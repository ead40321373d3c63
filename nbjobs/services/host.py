"""`ServiceHost`: runs services, restarts a crashed one with backoff, holds the once-per-workspace leases.

Each service runs on its own thread and event loop (an *attempt*); the host's supervisor loop (its own
thread, or any loop through `await host.run()`) starts, watches and stops them. A service that raises
is restarted after an exponential backoff (1 s, 2 s, ... capped; reset after it ran `stable_after`
seconds), like a supervisor's "permanent" child (Erlang/OTP supervisor restart strategies,
https://www.erlang.org/doc/system/sup_princ.html). A once-per-workspace service runs only while this
host holds the store lease named after it: the host renews its leases every `lease_ttl / 3` seconds and
stops such a service at once when a renewal fails or its lease would expire unconfirmed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable

from .._aio import set_threadsafe
from . import registry
from .base import Service, ServiceContext, in_thread

if TYPE_CHECKING:
    from ..service import Workspace

log = logging.getLogger("nbjobs.services")

LEASE_TTL_ENV = "NBJOBS_LEASE_TTL"
DEFAULT_LEASE_TTL = 10.0


SERVICES_ENV = "NBJOBS_SERVICES"


def _ms() -> int:
    return int(time.time() * 1000)


def selection_from_env() -> list[str] | None:
    """What `nbjobs serve` and the Jupyter extension host: `$NBJOBS_SERVICES` = `none`, or names
    separated by commas; unset or empty: every available service (None)."""
    value = os.environ.get(SERVICES_ENV, "").strip()
    if not value:
        return None
    if value.lower() == "none":
        return []
    return [n.strip() for n in value.split(",") if n.strip()]


def report(store: Any, host: ServiceHost | None = None) -> dict[str, Any]:
    """The workspace's service hosts (heartbeat rows, with health) and leases, plus `host`'s own live health."""
    return {"home": str(store.home), "host": host.health() if host is not None else None,
            "hosts": store.service_hosts(), "leases": store.leases()}


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _Attempt:
    """One run of `service.start(context)` on a new thread and event loop."""

    def __init__(self, service: Service, context: ServiceContext):
        self.service, self.context = service, context
        self.done: concurrent.futures.Future = concurrent.futures.Future()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self.thread = threading.Thread(target=self._main, name=f"nbjobs-service-{service.name}", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        async def body() -> None:
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
            self._ready.set()
            await self.service.start(self.context)

        try:
            asyncio.run(body())
        except asyncio.CancelledError:
            self.done.set_result("cancelled")
        except BaseException as exc:  # noqa: BLE001 - reported by the supervisor
            self.done.set_exception(exc)
        else:
            self.done.set_result("returned")
        finally:
            self._ready.set()

    def _call(self, callback) -> None:
        self._ready.wait(5)
        loop = self._loop
        if loop is None or self.done.done():
            return
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # its loop closed meanwhile
            pass

    def request_stop(self) -> None:
        async def stop() -> None:
            try:
                await self.service.stop()
            except Exception as exc:  # noqa: BLE001
                log.warning("nbjobs service %s: stop() raised %s: %s", self.service.name, type(exc).__name__, exc)

        self._call(lambda: asyncio.ensure_future(stop()))

    def cancel(self) -> None:
        self._call(lambda: self._task.cancel() if self._task is not None else None)


class ServiceHost:
    """Runs `services` (instances or names; default: every available service) for one workspace.

    `start()` / `stop()` run it on its own thread; `await run()` runs it on the current loop until
    `request_stop()`. Given a `workspace`, its store is used and services share its run engine."""

    def __init__(self, services: Iterable[Service | str] | None = None, *, home: str | os.PathLike | None = None,
                 workspace: Workspace | None = None, lease_ttl: float | None = None,
                 backoff: tuple[float, float] = (1.0, 60.0), stable_after: float = 60.0,
                 stop_timeout: float = 10.0, tick: float = 0.2):
        from ..store import Store

        made = registry.create_all() if services is None else [
            registry.create(s) if isinstance(s, str) else s for s in services]
        self.services: dict[str, Service] = {}
        for service in made:
            if service.name in self.services:
                raise ValueError(f"two services named {service.name!r}")
            self.services[service.name] = service
        self._workspace = workspace
        if workspace is not None:
            self.home, self.store, self._own_store = workspace.home, workspace.store, False
        else:  # as nbjobs.service.default_home, without importing the service layer
            home = home if home is not None else (os.environ.get("NBJOBS_HOME") or ".nbjobs")
            self.store, self._own_store = Store(home), True
            self.home = self.store.home
        self.lease_ttl = float(lease_ttl or os.environ.get(LEASE_TTL_ENV) or DEFAULT_LEASE_TTL)
        self.backoff, self.stable_after, self.stop_timeout, self.tick = backoff, stable_after, stop_timeout, tick
        self.pid, self.hostname = os.getpid(), socket.gethostname()
        self.holder = f"{self.hostname}:{self.pid}:{secrets.token_hex(4)}"
        self._held: dict[str, int] = {}  # lease name -> when it expires unless renewed (ms, as this host knows)
        self._next_start: dict[str, float] = {}
        self._opened: Workspace | None = None
        self._open_lock = threading.Lock()
        self.context = ServiceContext(home=self.home, store=self.store, holder=self.holder, log=log,
                                      _workspace=workspace, _open_workspace=self._open_workspace)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._finished = threading.Event()

    def _open_workspace(self) -> Workspace:
        with self._open_lock:
            if self._opened is None:
                from ..service import Workspace
                self._opened = Workspace(self.home)
            return self._opened

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> ServiceHost:
        """Run the host on its own thread and event loop; returns once it runs."""
        if self._thread is None:
            self._thread = threading.Thread(target=lambda: asyncio.run(self.run()), name="nbjobs-services",
                                            daemon=True)
            self._thread.start()
            self._running.wait(10)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop every service, release the leases, remove this host's heartbeat row."""
        if self._loop is None and not self._finished.is_set():  # never started: only close what it opened
            self._finished.set()
            self._shutdown()
            return
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.stop_timeout + 10)
        elif self._loop is not None and not _on_loop(self._loop):  # on its own loop: await the run() task
            self._finished.wait(timeout if timeout is not None else self.stop_timeout + 10)

    def request_stop(self) -> None:
        set_threadsafe(self._loop, self._stopping)

    def __enter__(self) -> ServiceHost:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def run(self) -> None:
        """The host on the running loop, until `request_stop()` (or the task is canceled)."""
        self._loop = asyncio.get_running_loop()
        self._stopping, self._changed = asyncio.Event(), asyncio.Event()
        self._running.set()
        log.info("nbjobs services: host %s on %s: %s", self.holder, self.home, ", ".join(self.services) or "none")
        keeper = asyncio.ensure_future(self._keep_leases())
        supervisors = [asyncio.ensure_future(self._supervise(s)) for s in self.services.values()]
        try:
            await self._stopping.wait()
        finally:
            self._stopping.set()
            await asyncio.gather(*supervisors, return_exceptions=True)
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await in_thread(self._shutdown)
            self._finished.set()

    def _shutdown(self) -> None:
        for name in list(self._held):
            try:
                self.store.release_lease(name, self.holder)
            except Exception as exc:  # noqa: BLE001 - it expires by itself
                log.warning("nbjobs services: could not release lease %s: %s", name, exc)
        self._held.clear()
        try:
            self.store.remove_host(self.holder)
        except Exception as exc:  # noqa: BLE001
            log.warning("nbjobs services: could not remove host row: %s", exc)
        if self._opened is not None:
            self._opened.close()
        if self._own_store:
            self.store.close()

    # -- health ---------------------------------------------------------------------------------
    def holds(self, name: str) -> bool:
        """Whether this host holds the lease `name` (confirmed, and not about to expire)."""
        expires = self._held.get(name)
        return expires is not None and _ms() < expires - self.lease_ttl * 100  # a margin of ttl / 10

    def health(self) -> dict[str, Any]:
        """{holder, pid, host, lease_ttl, services: {name: service health + lease}}."""
        services = {}
        for name, service in self.services.items():
            try:
                report = dict(service.health())
            except Exception as exc:  # noqa: BLE001
                report = {"state": service.state, "last_error": f"health() raised {type(exc).__name__}: {exc}"}
            if service.once_per_workspace:
                report["lease"] = "held" if self.holds(name) else "not held"
            if report.get("state") == "backoff":
                report["next_start"] = self._next_start.get(name)
            services[name] = report
        return {"holder": self.holder, "pid": self.pid, "host": self.hostname, "home": str(self.home),
                "lease_ttl": self.lease_ttl, "services": services}

    def _set(self, service: Service, state: str) -> None:
        if service.state != state:
            log.debug("nbjobs service %s: %s -> %s", service.name, service.state, state)
            service.state = state
            if self._changed is not None:
                self._changed.set()

    # -- leases ---------------------------------------------------------------------------------
    async def _keep_leases(self) -> None:
        assert self._stopping is not None and self._changed is not None
        names = [n for n, s in self.services.items() if s.once_per_workspace]
        while not self._stopping.is_set():
            self._changed.clear()
            try:
                held = await in_thread(self._lease_round, names)
            except Exception as exc:  # noqa: BLE001 - the store is busy or gone: leases lapse by themselves
                log.warning("nbjobs services: lease heartbeat failed: %s: %s", type(exc).__name__, exc)
            else:
                for name, expires in held.items():
                    if expires is None:
                        if self._held.pop(name, None) is not None:
                            log.warning("nbjobs services: lost the lease of %s (taken over or removed); "
                                        "stopping it", name)
                    else:
                        if name not in self._held:
                            log.info("nbjobs services: holding the lease of %s", name)
                        self._held[name] = expires
            stop = asyncio.ensure_future(self._stopping.wait())
            change = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait([stop, change], timeout=self.lease_ttl / 3, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (stop, change):
                waiter.cancel()

    def _lease_round(self, names: list[str]) -> dict[str, int | None]:
        """Renew the held leases, try to acquire the others, beat (on a worker thread)."""
        ttl_ms = int(self.lease_ttl * 1000)
        out: dict[str, int | None] = {}
        for name in names:
            before = _ms()  # the lease expires no earlier than this + ttl
            try:
                if name in self._held:
                    ok = self.store.renew_lease(name, self.holder, ttl_ms)
                else:
                    ok = self.store.acquire_lease(name, self.holder, ttl_ms, pid=self.pid, host=self.hostname)
            except Exception as exc:  # noqa: BLE001 - keep the last known expiry; `holds` lapses by itself
                log.warning("nbjobs services: lease %s: %s: %s", name, type(exc).__name__, exc)
                continue
            out[name] = before + ttl_ms if ok else None
        try:
            self.store.beat_host(self.holder, ttl_ms, self.health(), pid=self.pid, host=self.hostname)
        except Exception as exc:  # noqa: BLE001 - only `nbjobs services status` misses a beat
            log.warning("nbjobs services: heartbeat: %s: %s", type(exc).__name__, exc)
        return out

    # -- supervision ----------------------------------------------------------------------------
    async def _pause(self, seconds: float) -> None:
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _may_run(self, service: Service) -> bool:
        return not service.once_per_workspace or self.holds(service.name)

    async def _supervise(self, service: Service) -> None:
        assert self._stopping is not None
        delay = self.backoff[0]
        attempt: _Attempt | None = None
        while not self._stopping.is_set():
            if attempt is not None and not attempt.done.done():  # stuck: never two attempts at once
                await self._pause(self.tick)
                continue
            if not self._may_run(service):
                self._set(service, "standby")
                await self._pause(self.tick)
                continue
            self._set(service, "starting")
            service.started_time = time.time()
            attempt = _Attempt(service, self.context)
            self._set(service, "running")
            ended = asyncio.wrap_future(attempt.done)
            while not ended.done() and not self._stopping.is_set() and self._may_run(service):
                await asyncio.wait([ended], timeout=self.tick)
            if not ended.done():
                why = "the host stops" if self._stopping.is_set() else "its lease was lost"
                await self._stop_attempt(service, attempt, ended, why)
                continue
            error = ended.exception()
            service.restarts += 1
            service.last_error = (f"{type(error).__name__}: {error}" if error is not None
                                  else f"start() {ended.result()} before stop() was called")
            service.last_error_time = time.time()
            if service.last_error_time - service.started_time >= self.stable_after:
                delay = self.backoff[0]  # it ran well for a while: this is a new failure, not a crash loop
            log.warning("nbjobs service %s ended (%s); restarting in %.3gs", service.name, service.last_error, delay,
                        exc_info=error if error is not None else None)
            self._next_start[service.name] = time.time() + delay
            self._set(service, "backoff")
            await self._pause(delay)
            delay = min(delay * 2, self.backoff[1])
        if attempt is not None and not attempt.done.done():
            self._set(service, "stuck")
        else:
            self._set(service, "stopped")

    async def _stop_attempt(self, service: Service, attempt: _Attempt, ended: asyncio.Future, why: str) -> None:
        """stop(); after `stop_timeout` cancel its task; if its thread still runs, report it stuck."""
        log.info("nbjobs service %s: stopping (%s)", service.name, why)
        self._set(service, "stopping")
        attempt.request_stop()
        await asyncio.wait([ended], timeout=self.stop_timeout)
        if not ended.done():
            attempt.cancel()
            await asyncio.wait([ended], timeout=min(1.0, self.stop_timeout))
        if not ended.done():
            service.last_error = f"did not stop within {self.stop_timeout:g}s ({why}); its thread is left running"
            service.last_error_time = time.time()
            log.error("nbjobs service %s: %s", service.name, service.last_error)
            self._set(service, "stuck")
            return
        error = ended.exception()
        if error is not None:
            service.last_error, service.last_error_time = f"{type(error).__name__}: {error}", time.time()
        self._set(service, "stopped")
