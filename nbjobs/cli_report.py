"""What the `nbjobs` command prints about a run: live progress lines (from the run's events) and the
final report (a table of its tasks, its result, and runs/get JSON with --json)."""
from __future__ import annotations

import json
import shutil
import sys

from rich.console import Console

from .events import RunEvent
from .tables import STYLE, run_table

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def console(stderr: bool = False) -> Console:
    """A console that does not squeeze tables to 80 columns when output is piped or logged."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(140, shutil.get_terminal_size((140, 24)).columns)
    return Console(stderr=stderr, highlight=False, width=width)


def report(run: dict, out: Console, err: Console, *, as_json: bool, title: str | None = None) -> int:
    """The run's table and result line (on stderr with --json, whose runs/get JSON goes to stdout);
    the exit code: 0 when the run succeeded (also with failures that were handled), else 1."""
    if title is None:
        title = f"Run {run['run_id']}" + (f" of job {run['job_id']}" if run.get("job_id") is not None else "")
    table_console = err if as_json else out
    table_console.print(run_table(run))
    result = run["state"].get("result_state", run["state"]["life_cycle_state"])
    table_console.print(f"{title}: [{STYLE.get(result, 'white')}]{result}[/] in {run['run_duration'] / 1000:.1f}s")
    if as_json:
        print(json.dumps(run, indent=2))
    return EXIT_OK if result in ("SUCCESS", "SUCCESS_WITH_FAILURES") else EXIT_FAILED


class ProgressPrinter:
    """Live progress lines on stderr from a run's events (an `on_event` handler)."""

    def __init__(self, console: Console):
        self.console = console
        self._done: dict[str | None, int] = {}  # for-each task -> completed iterations last printed

    def __call__(self, event: RunEvent) -> None:
        if event.kind == "task_start":
            again = f" (attempt {event.attempt_number})" if event.attempt_number else ""
            self.console.print(f"  [cyan]▶[/cyan] {event.task_key} [cyan]RUNNING[/cyan]{again}")
        elif event.kind in ("task_retry", "run_queued"):
            who = f"{event.task_key} " if event.task_key else "run "
            self.console.print(f"  [yellow]…[/yellow] {who}[yellow]{event.life_cycle_state}[/yellow] — "
                               f"{event.message}", markup=True, soft_wrap=True)
        elif event.kind == "task_progress" and event.stats:
            counts = event.stats["task_run_stats"]
            done = counts["completed_iterations"]
            if done != self._done.get(event.task_key):
                self._done[event.task_key] = done
                failed = f", {counts['failed_iterations']} failed" if counts["failed_iterations"] else ""
                self.console.print(f"  [cyan]↻[/cyan] {event.task_key} {done}/{counts['total_iterations']} "
                                   f"iterations done{failed}", markup=True, soft_wrap=True)
        elif event.kind == "task_end":
            state = event.result_state or event.life_cycle_state
            style = STYLE.get(state, "white")
            row = event.row or {}
            took = ""
            if row.get("end_time") and row.get("start_time"):
                took = f" {(row['end_time'] - row['start_time']) / 1000:.1f}s"
            mark = "✔" if state == "SUCCESS" else ("·" if state in ("EXCLUDED", "DISABLED") else "✖")
            detail = f" — {event.message}" if event.message and state != "SUCCESS" else ""
            self.console.print(f"  [{style}]{mark}[/] {event.task_key} [{style}]{state}[/]{took}{detail}",
                               markup=True, soft_wrap=True)
