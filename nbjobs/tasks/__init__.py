"""Task executors, one module per task kind. This module stays free of heavy imports."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TaskOutput:
    """What an executor reports: error (None on success), exit value, task values, files, and where
    it ran (`compute`, e.g. "local" or "dask job_cluster etl (tcp://127.0.0.1:35121) worker ...")."""

    error: str | None = None
    error_trace: str | None = None
    exit_value: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    output_path: Path | None = None
    logs_path: Path | None = None
    compute: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


__all__ = ["TaskOutput"]
