"""Pause the cyclic garbage collector around bounded bulk work (building a run, its runs/get JSON).

Full collections walk the whole heap; during a burst that allocates one long-lived object per task
they make a 10,000-task run superlinear. Only orchestration code (never user code) runs paused,
and the pause nests across threads."""
from __future__ import annotations

import functools
import gc
import threading
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)
_lock = threading.Lock()
_depth = 0
_was_enabled = True


def gc_paused(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        global _depth, _was_enabled
        with _lock:
            if _depth == 0:
                _was_enabled = gc.isenabled()
                gc.disable()
            _depth += 1
        try:
            return func(*args, **kwargs)
        finally:
            with _lock:
                _depth -= 1
                if _depth == 0 and _was_enabled:
                    gc.enable()
    return wrapper  # type: ignore[return-value]
