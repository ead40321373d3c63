"""Keep the cyclic garbage collector off the run's bulk objects.

A run builds one model, task row and plan entry per task in a few bulk sections (creating the run,
the driver's set-up, runs/get). Collections walking those objects over and over made a
10,000-task run superlinear: a cachegrind count showed the same instructions per task at 1,000
and 10,000 tasks but 80x the last-level cache misses, most in the collector. So:

- `paused()`: no collection inside a bulk section (bounded work of nbjobs' own, no user code);
- `paused(keep=True)`: and what exists at its end is moved to the permanent generation
  (`gc.freeze()`), so collections during the run do not walk it again. A process that uses
  `gc.freeze()` itself is left alone;
- `run_started()` / `run_ended()`: when the last active run of the process ends (or a bulk section
  ends with no run active), `gc.unfreeze()` hands everything back to the oldest generation.

Nothing is freed later than it would be by reference counting; only cyclic garbage that existed
before a freeze waits for the end of the run to be collected."""
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
_runs = 0            # active runs (drivers) in this process
_frozen = False      # we froze, and have not unfrozen yet
_may_freeze = True   # False once we saw someone else's frozen objects


@contextmanager
def paused(*, keep: bool = False) -> Iterator[None]:
    """No collection inside the block; `keep`: its objects are kept out of collections until the
    active runs end (the collector's previous state comes back after the block)."""
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
            if _depth == 0:
                if keep:
                    _freeze()
                elif _runs == 0:
                    _unfreeze()
                if _was_enabled:
                    gc.enable()


def gc_paused(func: F | None = None, *, keep: bool = False):
    """Decorator: `func` runs `paused(keep=keep)`."""
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with paused(keep=keep):
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate(func) if func is not None else decorate


def run_started() -> None:
    global _runs
    with _lock:
        _runs += 1


def run_ended() -> None:
    global _runs
    with _lock:
        _runs = max(0, _runs - 1)
        if _runs == 0:
            _unfreeze()


def _freeze() -> None:
    global _frozen, _may_freeze
    if not _may_freeze:
        return
    if not _frozen and gc.get_freeze_count():  # the application freezes objects itself: not our call
        _may_freeze = False
        return
    gc.freeze()
    _frozen = True


def _unfreeze() -> None:
    global _frozen
    if _frozen:
        gc.unfreeze()
        _frozen = False
