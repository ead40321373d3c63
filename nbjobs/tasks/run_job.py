"""Run-job tasks (`run_job_task`): start another job's run and wait for it."""
from __future__ import annotations

from .registry import TaskKind


class RunJobKind(TaskKind):
    field = "run_job_task"
    name = "run_job"
    label = "Run job"
    needs_compute = False
