"""`PoolManager`: the process's kernel pools on one background thread with its own asyncio loop.

All kernel I/O happens on that loop, so callers on any loop (the runner, `asyncio.run` in tests, a
Dask worker thread) use it the same way and never block on it. One manager per process:
`pool_manager()`; `shutdown_pools()` (also at exit and when the last workspace closes) kills every
kernel it started. `ExecutionHandle` lets any thread kill one execution (cancel, timeout, remote kill).
"""
from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Coroutine, TypeVar

from .launch import PooledKernel
from .pool import KernelPool
from .spec import KernelKey, default_pool_size, idle_seconds, skip_slow_imports

log = logging.getLogger("nbjobs.compute")
T = TypeVar("T")


class ExecutionHandle:
    """One execution on a pooled kernel; lets any thread kill it (cancel, timeout, remote kill)."""

    def __init__(self, execution_id: str | None = None):
        self.execution_id = execution_id or uuid.uuid4().hex
        self.kernel: PooledKernel | None = None
        self.killed = False
        self.finished: concurrent.futures.Future = concurrent.futures.Future()
        self.on_kill: list[Callable[[], None]] = []   # e.g. stop a script's subprocess

    def kill(self) -> None:
        self.killed = True
        kernel = self.kernel
        if kernel is not None:
            kernel.kill()
        for callback in list(self.on_kill):
            try:
                callback()
            except Exception:  # pragma: no cover - best effort
                pass

    def attach(self, kernel: PooledKernel) -> None:
        self.kernel = kernel
        if self.killed:
            kernel.kill()


class PoolManager:
    """The process's kernel pools and the background loop thread they live on."""

    def __init__(self, size: int | None = None):
        skip_slow_imports()
        self.size = default_pool_size() if size is None else size
        self.sizes: dict[KernelKey, int] = {}
        self.pools: dict[KernelKey, KernelPool] = {}
        self.kernels: "weakref.WeakSet[PooledKernel]" = weakref.WeakSet()
        self.executions: dict[str, ExecutionHandle] = {}
        self.killed_executions: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.closing = False
        self._disposals: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

        def main() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            ready.set()
            try:
                self.loop.run_forever()
            finally:
                self.loop.close()

        self.thread = threading.Thread(target=main, name="nbjobs-kernels", daemon=True)
        self.thread.start()
        ready.wait()
        import zmq
        import zmq.asyncio

        self.zmq_context = zmq.asyncio.Context()
        self.zmq_context.setsockopt(zmq.RECONNECT_IVL, 10)  # a kernel binds ~0.1 s after we connect
        self.zmq_context.setsockopt(zmq.LINGER, 0)

    # -- called from any thread
    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future:
        """Run a coroutine on the pool loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the pool loop and wait for it (blocking; not from the pool loop)."""
        return self.submit(coro).result(timeout)

    def set_size(self, size: int, key: KernelKey | None = None) -> None:
        """Warm pool size: for one key, or the default for all."""
        def apply() -> None:
            if key is None:
                self.size = size
                for k, pool in self.pools.items():
                    if k not in self.sizes:
                        pool.resize(size)
            else:
                self.sizes[key] = size
                if key in self.pools:
                    self.pools[key].resize(size)
        self.loop.call_soon_threadsafe(apply)

    def prestart(self, keys: list[KernelKey]) -> None:
        """Start filling the pools of `keys` now (returns at once)."""
        def apply() -> None:
            for key in keys:
                self.pool(key).top_up()
        self.loop.call_soon_threadsafe(apply)

    async def warm(self, keys: list[KernelKey], then: Callable[[], None] | None = None) -> None:
        """On the pool loop: start filling the pools of `keys`, then call `then` (e.g. import the
        executor's modules) while those kernels boot in their own processes."""
        for key in keys:
            self.pool(key).top_up()
        await asyncio.sleep(0.01)
        if then is not None:
            then()

    def kill_execution(self, execution_id: str) -> bool:
        """Kill the kernel of an execution (also one not started yet: it will not start)."""
        self.killed_executions[execution_id] = None
        while len(self.killed_executions) > 10000:
            self.killed_executions.popitem(last=False)
        handle = self.executions.get(execution_id)
        if handle is not None:
            handle.kill()
            return True
        return False

    def stats(self) -> dict[str, Any]:
        """Live kernel pids by state, for tests and diagnostics."""
        return self.run(self._stats(), 30)

    async def _stats(self) -> dict[str, Any]:
        ready = [k.pid for p in list(self.pools.values()) for k in list(p.ready)]
        busy = [k.pid for p in list(self.pools.values()) for k in list(p.busy)]
        live = [k.pid for k in list(self.kernels) if k.process.alive()]
        servers = [p.server.proc.pid for p in list(self.pools.values())
                   if p.server is not None and p.server.proc is not None and p.server.proc.poll() is None]
        return {"ready": ready, "busy": busy, "live": live, "servers": servers,
                "starting": sum(p.starting for p in list(self.pools.values())),
                "disposing": len(self._disposals)}

    # -- on the pool loop
    def pool(self, key: KernelKey) -> KernelPool:
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = KernelPool(self, key, self.sizes.get(key, self.size))
        pool.last_used = time.monotonic()
        if self._reaper is None:
            self._reaper = self.loop.create_task(self._reap_idle())
        return pool

    async def _reap_idle(self) -> None:
        """Empty pools nobody used for `idle_seconds()` (a long-lived server keeps no idle kernels)."""
        while True:
            limit = idle_seconds()
            await asyncio.sleep(max(0.05, min(30.0, limit / 4)))
            now = time.monotonic()
            for key, pool in list(self.pools.items()):
                if now - pool.last_used >= limit and not pool.busy and not pool.waiters:
                    del self.pools[key]
                    await pool.close()
                    if pool.server is not None:
                        pool.server.close()

    async def acquire(self, key: KernelKey) -> PooledKernel:
        return await self.pool(key).acquire()

    def release(self, kernel: PooledKernel) -> None:
        pool = self.pools.get(kernel.key)
        if pool is not None:
            pool.release(kernel)
        else:
            self.dispose(kernel)

    def track(self, kernel: PooledKernel) -> None:
        self.kernels.add(kernel)

    def dispose(self, kernel: PooledKernel) -> None:
        kernel.kill()  # at once; the rest (disconnect, reap, files) in the background
        task = self.loop.create_task(kernel.dispose())
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    async def drain(self) -> None:
        """Wait until every used kernel has been killed and reaped."""
        while self._disposals:
            await asyncio.gather(*list(self._disposals), return_exceptions=True)

    async def _close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for pool in list(self.pools.values()):
            await pool.close()
        for pool in list(self.pools.values()):
            for kernel in list(pool.busy):
                self.dispose(kernel)
        await self.drain()
        for pool in list(self.pools.values()):
            if pool.server is not None:
                pool.server.close()
        for kernel in list(self.kernels):
            kernel.kill()
        try:
            self.zmq_context.destroy(linger=0)
        except Exception:  # pragma: no cover
            pass

    def shutdown(self, timeout: float = 30.0) -> None:
        """Kill every kernel and the fork servers, stop the loop thread (blocking)."""
        if self.closing:
            return
        self.closing = True
        if threading.current_thread() is self.thread:  # pragma: no cover - never from the pool loop
            raise RuntimeError("shutdown() must not be called from the kernel pool's own thread")
        try:
            self.run(self._close(), timeout)
        except Exception as exc:  # pragma: no cover
            log.warning("nbjobs: kernel pool shutdown: %s", exc)
            self.kill_now()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)

    def kill_now(self) -> None:
        """At interpreter exit: SIGKILL everything without the loop."""
        for kernel in list(self.kernels):
            kernel.kill()
        for pool in list(self.pools.values()):
            if pool.server is not None:
                pool.server.close(wait=0.3)


_manager: PoolManager | None = None
_manager_lock = threading.Lock()


def pool_manager(create: bool = True) -> PoolManager | None:
    """The process's pool manager (started on first use)."""
    global _manager
    with _manager_lock:
        if _manager is None and create:
            _manager = PoolManager()
        return _manager


def shutdown_pools() -> None:
    """Kill every pooled kernel of this process (a later use starts a new pool)."""
    global _manager
    with _manager_lock:
        manager, _manager = _manager, None
    if manager is not None:
        manager.shutdown()


@atexit.register
def _at_exit() -> None:
    manager = _manager
    if manager is not None:
        manager.kill_now()
