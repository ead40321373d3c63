"""The one client contract: the verbs every client of a workspace uses, typed.

Two implementations keep it: `nbjobs.Workspace` (in-process: runs execute in this process) and
`nbjobs.client.Client` (`nbjobs.connect(url)`: runs execute in the server). The CLI, the magics, the
panel and batches take a `JobsClient` and never probe which one they hold. Return values are the
Jobs API JSON shapes (runs/get, jobs/get …) as dicts, so both implementations answer alike.

Repair default (every client): `rerun_dependent_tasks=False`, as the Jobs API's default. A repair
then reruns the named (or failed) tasks and, after them, only the dependent tasks that did not
succeed; `rerun_dependent_tasks=True` reruns every task after them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

from .events import EventHandler

__all__ = ["JobsClient", "REPAIR_RERUN_DEPENDENT_TASKS"]

REPAIR_RERUN_DEPENDENT_TASKS = False  # the default of every client's repair (see the module docstring)


@runtime_checkable
class JobsClient(Protocol):
    """Jobs API verbs (jobs/*, runs/*) plus waiting for and following a run's events."""

    #: where runs execute: "workspace <folder>" or the server's URL (for messages only)
    location: str

    # -- jobs ---------------------------------------------------------------------------------------
    def create_job(self, settings: Any, *, base_dir: Path | None = None, source_path: str | None = None) -> int: ...

    def save_job(self, settings: Any, *, base_dir: Path | None = None,
                 source_path: str | None = None) -> tuple[int, bool]: ...

    def get_job(self, job_id: int) -> dict: ...

    def list_jobs(self, *, name: str | None = None, tags: Mapping[str, str | None] | None = None,
                  expand_tasks: bool = False) -> list[dict]: ...

    def update_job(self, job_id: int, new_settings: Mapping[str, Any] | None = None,
                   fields_to_remove: Iterable[str] | None = None, *, base_dir: Path | None = None) -> None: ...

    def reset_job(self, job_id: int, new_settings: Any, *, base_dir: Path | None = None) -> None: ...

    def delete_job(self, job_id: int) -> None: ...

    # -- runs ---------------------------------------------------------------------------------------
    def run_now(self, job_id: int, job_parameters: Mapping[str, str] | None = None, *, wait: bool = True,
                idempotency_token: str | None = None, only: Iterable[str] | str | None = None,
                queue: Mapping[str, Any] | bool | None = None, on_event: EventHandler | None = None,
                concurrency: int | None = None) -> dict: ...

    def submit_run(self, body: Mapping[str, Any], *, wait: bool = False, base_dir: Path | None = None,
                   on_event: EventHandler | None = None) -> dict: ...

    def get_run(self, run_id: int, *, include_history: bool = True) -> dict: ...

    def list_runs(self, *, job_id: int | None = None, active_only: bool = False, completed_only: bool = False,
                  limit: int | None = None, offset: int = 0, expand_tasks: bool = False,
                  run_type: str | None = None, start_time_from: int | None = None,
                  start_time_to: int | None = None) -> list[dict]: ...

    def get_run_output(self, run_id: int) -> dict: ...

    def export_run(self, run_id: int, views_to_export: str | None = "CODE") -> dict: ...

    def repair_run(self, run_id: int, *, rerun_tasks: Iterable[str] | str | None = None,
                   rerun_all_failed_tasks: bool = False, rerun_dependent_tasks: bool = REPAIR_RERUN_DEPENDENT_TASKS,
                   latest_repair_id: int | None = None, job_parameters: Mapping[str, str] | None = None,
                   wait: bool = True, on_event: EventHandler | None = None,
                   concurrency: int | None = None) -> dict: ...

    def cancel_run(self, run_id: int) -> None: ...

    def cancel_all_runs(self, job_id: int | None = None, all_queued_runs: bool = False) -> None: ...

    def delete_run(self, run_id: int) -> None: ...

    def wait(self, run_id: int, timeout: float | None = None, *, on_event: EventHandler | None = None) -> dict:
        """Wait for a run (or its latest repair) to end; its runs/get JSON (still active if `timeout`
        seconds passed first). `on_event` gets the run's events meanwhile (task_start, task_end, run_end…)."""
        ...

    def close(self) -> None: ...
