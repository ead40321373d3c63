"""Pause the cyclic garbage collector around bounded bulk work (building a run, a stretch of instant
tasks, its runs/get JSON).

Collections walk the young objects and, through them, a heap that grows with the run; during a
burst that allocates a few objects per task they make a 10,000-task run superlinear. Only
orchestration code runs paused, each pause is bounded, and pauses nest across threads."""
from __future__ import annotations

import functools
import gc
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable)
_lock = threading.Lock()
_depth = 0
_was_enabled = True


@contextmanager
def paused() -> Iterator[None]:
    """No collection inside the block (the collector's previous state comes back after it)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


def gc_paused(func: F) -> F:
    """`func` runs `paused()`."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with paused():
            return func(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
