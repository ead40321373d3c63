"""A background asyncio loop that executes runs, so callers (server, panel, magics) never block."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Callable


class RunEngine:
    """One loop thread per workspace; runs are coroutines scheduled on it and tracked by run_id."""

    def __init__(self, name: str = "nbjobs-engine"):
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._runs: dict[int, concurrent.futures.Future] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                ready = threading.Event()

                def main() -> None:
                    self._loop = asyncio.new_event_loop()
                    asyncio.set_event_loop(self._loop)
                    ready.set()
                    self._loop.run_forever()

                self._thread = threading.Thread(target=main, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
            return self._loop

    def submit(self, run_id: int, coro_factory: Callable[[], Awaitable[Any]]) -> concurrent.futures.Future:
        """Schedule a run's coroutine on the engine loop; the future resolves with its result."""
        future = asyncio.run_coroutine_threadsafe(_call(coro_factory), self.loop)
        self._runs[run_id] = future
        future.add_done_callback(lambda _f, rid=run_id: self._runs.pop(rid, None))
        return future

    def future(self, run_id: int) -> concurrent.futures.Future | None:
        return self._runs.get(run_id)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        for future in list(self._runs.values()):
            future.cancel()

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout=30)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=30)


async def _call(factory: Callable[[], Awaitable[Any]]) -> Any:
    return await factory()
