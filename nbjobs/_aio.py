"""asyncio helpers shared by the run driver and the service host."""
from __future__ import annotations

import asyncio


def set_threadsafe(loop: asyncio.AbstractEventLoop | None, event: asyncio.Event | None) -> None:
    """Set `event` (owned by `loop`) from any thread; nothing when the loop is gone or closed."""
    if loop is not None and event is not None and not loop.is_closed():
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop closed meanwhile
            pass
