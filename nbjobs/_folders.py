"""One object per workspace folder in this process (the event bus, the notifier), made on first use."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


def folder_key(home: str | os.PathLike) -> str:
    """A workspace folder as one string, however it was written (relative, `..`, case on Windows)."""
    return os.path.normcase(os.path.abspath(Path(home)))


class PerFolder(Generic[T]):
    """`get(home)` returns this process's object of `home`, made by `factory(key)` the first time."""

    def __init__(self, factory: Callable[[str], T]):
        self._factory = factory
        self._objects: dict[str, T] = {}
        self._lock = threading.Lock()

    def get(self, home: str | os.PathLike) -> T:
        key = folder_key(home)
        with self._lock:
            found = self._objects.get(key)
            if found is None:
                found = self._objects[key] = self._factory(key)
            return found

    def pop(self, home: str | os.PathLike) -> T | None:
        with self._lock:
            return self._objects.pop(folder_key(home), None)
