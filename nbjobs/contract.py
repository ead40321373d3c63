"""The one client contract: the verbs every client of a workspace uses, typed.

Two implementations keep it: `nbjobs.Workspace` (in-process: runs execute in this process) and
`nbjobs.client.Client` (`nbjobs.connect(url)`: runs execute in the server). The CLI, the magics, the
panel and batches take a `JobsClient` and never probe which one they hold. Return values are the
Jobs API JSON shapes (runs/get, jobs/get …) as dicts, so both implementations answer alike; errors
are the exceptions of `nbjobs.errors`.

Events: `on_event` of run_now, submit_run and repair_run gets the run's `RunEvent`s on another
thread, whether the call waits or not; `wait(run_id, on_event=...)` gets them while it waits. A
Workspace delivers every kind from its event bus for a run executing in its process; otherwise
(another process, or a server) task_start, task_end and run_end are derived from runs/get
(`nbjobs.follow`).

Repair default (every client): `rerun_dependent_tasks=False`, as the Jobs API's default. A repair
then reruns the named (or failed) tasks and, after them, only the dependent tasks that did not
succeed; `rerun_dependent_tasks=True` reruns every task after them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

from .events import EventHandler

__all__ = ["CONTRACT_VERBS", "HOME_ENV", "JobsClient", "REPAIR_RERUN_DEPENDENT_TASKS", "default_home"]

REPAIR_RERUN_DEPENDENT_TASKS = False  # the default of every client's repair (see the module docstring)
HOME_ENV = "NBJOBS_HOME"

CONTRACT_VERBS = ("create_job", "save_job", "get_job", "list_jobs", "update_job", "reset_job", "delete_job",
                  "run_now", "submit_run", "get_run", "list_runs", "get_run_output", "export_run", "repair_run",
                  "cancel_run", "cancel_all_runs", "delete_run", "wait", "run_notifications", "close")


def default_home() -> Path:
    """The workspace folder clients default to: `$NBJOBS_HOME`, else `./.nbjobs`."""
    return Path(os.environ.get(HOME_ENV) or ".nbjobs")


@runtime_checkable
class JobsClient(Protocol):
    """Jobs API verbs (jobs/*, runs/*) plus waiting for and following a run's events."""

    @property
    def location(self) -> str:
        """Where runs execute, for messages: "workspace <folder>" or the server's URL."""
        ...

    # -- jobs ---------------------------------------------------------------------------------------
    def create_job(self, settings: Any, *, base_dir: Path | None = None, source_path: str | None = None) -> int:
        """jobs/create; relative task paths are resolved against `base_dir` (default: the current folder)."""
        ...

    def save_job(self, settings: Any, *, base_dir: Path | None = None,
                 source_path: str | None = None) -> tuple[int, bool]:
        """Create the job, or replace the settings of the one with the same name: (job_id, created)."""
        ...

    def get_job(self, job_id: int) -> dict: ...

    def list_jobs(self, *, name: str | None = None, tags: Mapping[str, str | None] | None = None,
                  expand_tasks: bool = False) -> list[dict]:
        """jobs/list, newest first; `tags` {key: value} must match, {key: None} only needs the key."""
        ...

    def update_job(self, job_id: int, new_settings: Mapping[str, Any] | None = None,
                   fields_to_remove: Iterable[str] | None = None, *, base_dir: Path | None = None) -> None: ...

    def reset_job(self, job_id: int, new_settings: Any, *, base_dir: Path | None = None) -> None: ...

    def delete_job(self, job_id: int) -> None: ...

    # -- runs ---------------------------------------------------------------------------------------
    def run_now(self, job_id: int, job_parameters: Mapping[str, str] | None = None, *, wait: bool = True,
                idempotency_token: str | None = None, only: Iterable[str] | str | None = None,
                queue: Mapping[str, Any] | bool | None = None, on_event: EventHandler | None = None,
                concurrency: int | None = None) -> dict:
        """jobs/run-now. wait=True: the ended run's runs/get JSON; wait=False: `{"run_id", "number_in_job"}`.
        `concurrency` (most tasks at once) applies where the run executes in this process."""
        ...

    def submit_run(self, body: Mapping[str, Any], *, wait: bool = False, base_dir: Path | None = None,
                   on_event: EventHandler | None = None) -> dict:
        """runs/submit. wait=False: `{"run_id"}`; wait=True: the ended run's runs/get JSON."""
        ...

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
                   concurrency: int | None = None) -> dict:
        """runs/repair. wait=False: `{"repair_id"}`; wait=True: the repaired run's runs/get JSON."""
        ...

    def cancel_run(self, run_id: int) -> None:
        """runs/cancel of a job run or a task run; asynchronous (`wait` for it to end)."""
        ...

    def cancel_all_runs(self, job_id: int | None = None, all_queued_runs: bool = False) -> None: ...

    def delete_run(self, run_id: int) -> None: ...

    def wait(self, run_id: int, timeout: float | None = None, *, on_event: EventHandler | None = None) -> dict:
        """Wait for a run (or its latest repair) to end; its runs/get JSON (still active if `timeout`
        seconds passed first). `on_event` gets the run's events meanwhile (task_start, task_end, run_end…)."""
        ...

    def run_notifications(self, run_id: int) -> list[dict]:
        """The run's notification deliveries (event, destination, attempts, result), oldest first."""
        ...

    def close(self) -> None: ...
