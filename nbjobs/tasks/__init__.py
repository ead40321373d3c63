"""Task kinds, one module per Jobs API task type (see `registry`). Light to import."""
from __future__ import annotations

from typing import Any

__all__ = ["TaskOutput"]


def __getattr__(name: str) -> Any:
    if name == "TaskOutput":  # lazily: importing a kind module must not load compute
        from ..compute.base import TaskOutput
        return TaskOutput
    raise AttributeError(name)
