"""Rich tables of jobs and runs, shared by the CLI (terminal) and the magics (notebook output)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rich.table import Table

from .tasks.registry import outcome_of

STYLE = {"SUCCESS": "green", "FAILED": "red", "TIMEDOUT": "red", "UPSTREAM_FAILED": "yellow",
         "EXCLUDED": "bright_black", "DISABLED": "bright_black", "CANCELED": "magenta",
         "UPSTREAM_CANCELED": "magenta", "SUCCESS_WITH_FAILURES": "yellow", "RUNNING": "cyan"}


def state_of(obj: dict) -> str:
    """A run's or task run's result_state, else its life_cycle_state."""
    return obj["state"].get("result_state") or obj["state"]["life_cycle_state"]


def styled(state: str) -> str:
    return f"[{STYLE.get(state, 'white')}]{state}[/]"


def short_path(path: str) -> str:
    """A path relative to the current directory when it is inside it."""
    if not path:
        return path
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def run_table(run: dict) -> Table:
    """Tasks, states, durations and executed-notebook paths of a run."""
    table = Table(title=f"Run {run['run_id']} · {run.get('run_name', '')}", title_justify="left")
    for col in ("task", "state", "duration", "output"):
        table.add_column(col, overflow="fold")
    for task in run.get("tasks", []):
        state = state_of(task)
        duration = f"{task['run_duration'] / 1000:.1f}s" if task.get("run_duration") else "-"
        output = short_path(task.get("run_page_url", "").removeprefix("file://"))
        outcome = outcome_of(task)
        if outcome is not None:
            output = f"outcome: {outcome}"
        table.add_row(task["task_key"], styled(state), duration, output)
    return table


def jobs_table(jobs: Iterable[dict]) -> Table:
    """jobs/list entries (with expand_tasks) as a table: id, name, tags, number of tasks."""
    table = Table()
    for col in ("job_id", "name", "tags", "tasks"):
        table.add_column(col)
    for job in jobs:
        settings = job.get("settings", {})
        tag_text = ", ".join(f"{k}:{v}" if v else k for k, v in (settings.get("tags") or {}).items())
        table.add_row(str(job["job_id"]), settings.get("name", ""), tag_text, str(len(settings.get("tasks", []))))
    return table


def runs_table(runs: Iterable[dict]) -> Table:
    """runs/list entries as a table: run id, job id, name, state, duration."""
    table = Table()
    for col in ("run_id", "job_id", "name", "state", "duration"):
        table.add_column(col)
    for run in runs:
        table.add_row(str(run["run_id"]), str(run.get("job_id", "")), run.get("run_name", ""),
                      styled(state_of(run)), f"{run.get('run_duration', 0) / 1000:.1f}s")
    return table
