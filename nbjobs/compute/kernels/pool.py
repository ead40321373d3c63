"""`KernelPool`: the ready kernels of one `KernelKey`, refilled in the background; lives on the manager's loop.

Every notebook task gets a kernel nobody used before; a used kernel is never reused (killed and
cleaned up in the background). Kernel starts are retried.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Protocol

from .launch import KernelHost, PooledKernel, start_kernel
from .process import ForkServer, take_preforked
from .spec import START_ATTEMPTS, KernelKey, KernelStartError, LaunchSpec, fork_enabled, resolve_spec

log = logging.getLogger("nbjobs.compute")


class PoolHost(KernelHost, Protocol):
    """What a pool needs from the pool manager: its loop, and starting/disposing kernels."""

    loop: asyncio.AbstractEventLoop


class KernelPool:
    """Ready kernels of one `KernelKey`; lives on the manager's loop."""

    def __init__(self, manager: PoolHost, key: KernelKey, size: int):
        self.manager = manager
        self.key = key
        self.size = size
        self.ready: collections.deque[PooledKernel] = collections.deque()
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.starting = 0
        self.busy: set[PooledKernel] = set()
        self.closed = False
        self.failure: BaseException | None = None
        self.spec: LaunchSpec | None = None
        self.server: ForkServer | None = None
        self._server_lock = asyncio.Lock()
        self._fork_failed = False
        self._boots: set[asyncio.Task] = set()
        self.last_used = time.monotonic()

    # sizing and refill
    def resize(self, size: int) -> None:
        self.size = max(0, size)
        self.top_up()

    def top_up(self) -> None:
        if self.closed or self.failure is not None:
            return
        want = self.size + len([w for w in self.waiters if not w.done()])
        need = want - len(self.ready) - self.starting
        limit = max(self.size, len(self.waiters), 1)  # parallel boots: more only slows each one
        need = min(need, limit - self.starting)
        for _ in range(max(0, need)):
            self.starting += 1
            task = self.manager.loop.create_task(self._boot())
            self._boots.add(task)
            task.add_done_callback(self._boots.discard)

    async def acquire(self) -> PooledKernel:
        if self.closed:
            raise KernelStartError("the kernel pool is shut down")
        self.failure = None  # a new request: try again after an earlier failure
        self.last_used = time.monotonic()
        while self.ready:
            kernel = self.ready.popleft()
            if kernel.process.alive():
                self.busy.add(kernel)
                self.top_up()
                return kernel
            self.manager.dispose(kernel)
        fut = self.manager.loop.create_future()
        self.waiters.append(fut)
        self.top_up()
        try:
            kernel = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._offer(fut.result())  # handed over as we were cancelled: keep it for the next one
            raise
        finally:
            try:
                self.waiters.remove(fut)
            except ValueError:
                pass
        self.busy.add(kernel)
        self.top_up()
        return kernel

    def release(self, kernel: PooledKernel) -> None:
        """A used kernel: never reused; killed and cleaned up in the background."""
        self.busy.discard(kernel)
        self.manager.dispose(kernel)

    def _offer(self, kernel: PooledKernel) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(kernel)
                return
        if self.closed:
            self.manager.dispose(kernel)
        else:
            self.ready.append(kernel)

    async def _boot(self) -> None:
        try:
            kernel = await self._start_with_retries()
        except asyncio.CancelledError:
            self.starting -= 1
            raise
        except BaseException as exc:
            self.starting -= 1
            self.failure = exc
            waiters = [w for w in self.waiters if not w.done()]
            if waiters:  # the oldest waiter learns why; a later acquire tries again
                waiters[0].set_exception(exc)
            return
        self.starting -= 1
        self._offer(kernel)

    async def _start_with_retries(self) -> PooledKernel:
        from jupyter_client.kernelspec import NoSuchKernel

        last: BaseException | None = None
        for attempt in range(START_ATTEMPTS):
            try:
                return await self._start()
            except (NoSuchKernel, FileNotFoundError, PermissionError):
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a port clash, a kernel that died while starting, ...
                last = exc
                log.debug("kernel start attempt %d failed: %s", attempt + 1, exc)
                await asyncio.sleep(0.05 * (attempt + 1))
        raise KernelStartError(f"could not start kernel '{self.key.kernel_name}' "
                               f"({START_ATTEMPTS} attempts): {last}") from last

    async def _fork_server(self) -> ForkServer | None:
        if self._fork_failed or not fork_enabled() or not self.spec.forkable:
            return None
        async with self._server_lock:
            if self.server is not None and not self.server.broken:
                return self.server
            server = ForkServer(self.spec, self.manager.loop)
            try:
                await server.start(take_preforked(self.spec))
            except KernelStartError as exc:
                log.warning("nbjobs: forking kernels is unavailable, starting them normally: %s", exc)
                self._fork_failed = True
                return None
            self.server = server
            return server

    async def _start(self) -> PooledKernel:
        if self.spec is None:
            self.spec = resolve_spec(self.key)  # a few small files; on this loop (no import races)
        return await start_kernel(self.key, self.spec, await self._fork_server(), self.manager)

    async def close(self) -> None:
        """Kill the idle and starting kernels; busy ones are killed when released."""
        self.closed = True
        for task in list(self._boots):
            task.cancel()
        while self.ready:
            self.manager.dispose(self.ready.popleft())
        for fut in self.waiters:
            if not fut.done():
                fut.set_exception(KernelStartError("the kernel pool is shut down"))
        if self._boots:
            await asyncio.gather(*self._boots, return_exceptions=True)

