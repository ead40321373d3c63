"""Task kinds, one module per Jobs API task type (see `registry`). Light to import."""
from __future__ import annotations

from ..compute.base import TaskOutput

__all__ = ["TaskOutput"]
