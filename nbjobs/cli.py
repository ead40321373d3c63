"""`nbjobs` command line: the Databricks CLI's job verbs over the local workspace."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
_STYLE = {"SUCCESS": "green", "FAILED": "red", "TIMEDOUT": "red", "UPSTREAM_FAILED": "yellow",
          "EXCLUDED": "bright_black", "DISABLED": "bright_black", "CANCELED": "magenta",
          "UPSTREAM_CANCELED": "magenta", "SUCCESS_WITH_FAILURES": "yellow", "RUNNING": "cyan"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nbjobs", description="Databricks Lakeflow Jobs for Jupyter, run locally.")
    p.add_argument("--home", help="workspace folder (default: $NBJOBS_HOME or ./.nbjobs)")
    sub = p.add_subparsers(dest="command", required=True)

    def definition_args(sp):
        sp.add_argument("path", help="job file: JSON, YAML or a bundle's databricks.yml")
        sp.add_argument("--job", help="which job of a bundle (resource key or name)")
        sp.add_argument("--target", "-t", help="bundle target")
        sp.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="bundle variable")

    v = sub.add_parser("validate", help="check a job definition and list every problem")
    definition_args(v)

    r = sub.add_parser("run", help="create or update the job by name, run it and wait")
    definition_args(r)
    r.add_argument("--job-param", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--json", action="store_true", help="print the finished run as runs/get JSON on stdout")
    r.add_argument("--concurrency", type=int, help="most tasks at once (default: number of cores)")

    jobs = sub.add_parser("jobs", help="job commands").add_subparsers(dest="verb", required=True)
    c = jobs.add_parser("create", help="create a job from Jobs API JSON")
    c.add_argument("--json", dest="json_file", required=True, metavar="FILE|-")
    lj = jobs.add_parser("list", help="list jobs, newest first")
    lj.add_argument("--name")
    lj.add_argument("--tag", action="append", default=[], metavar="KEY[=VALUE]")
    lj.add_argument("--output", "-o", choices=["text", "json"], default="text")
    g = jobs.add_parser("get", help="a job as jobs/get JSON")
    g.add_argument("job_id", type=int)
    rn = jobs.add_parser("run-now", help="run a job and wait")
    rn.add_argument("job_id", type=int)
    rn.add_argument("--job-param", action="append", default=[], metavar="NAME=VALUE")
    rn.add_argument("--json", action="store_true")
    rn.add_argument("--concurrency", type=int)
    d = jobs.add_parser("delete", help="delete a job")
    d.add_argument("job_id", type=int)

    runs = sub.add_parser("runs", help="run commands").add_subparsers(dest="verb", required=True)
    lr = runs.add_parser("list", help="list runs, newest first")
    lr.add_argument("--job-id", type=int)
    lr.add_argument("--active-only", action="store_true")
    lr.add_argument("--completed-only", action="store_true")
    lr.add_argument("--limit", type=int)
    lr.add_argument("--output", "-o", choices=["text", "json"], default="text")
    gr = runs.add_parser("get", help="a run as runs/get JSON")
    gr.add_argument("run_id", type=int)
    go = runs.add_parser("get-output", help="a task run's output as runs/get-output JSON")
    go.add_argument("run_id", type=int, metavar="TASK_RUN_ID")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    err = _console(stderr=True)
    from .service import InvalidParameterValue, NbjobsError
    from .spec import JobDefinitionError
    try:
        return _dispatch(args, err)
    except JobDefinitionError as exc:
        _print_problems(err, exc)
        return EXIT_INVALID
    except NbjobsError as exc:
        err.print(f"[red]Error:[/red] {exc}", markup=True)
        return EXIT_INVALID if isinstance(exc, InvalidParameterValue) else EXIT_FAILED
    except KeyboardInterrupt:
        err.print("[magenta]Interrupted: the run was canceled.[/magenta]")
        return 130


def _console(stderr: bool = False) -> Console:
    """A console that does not squeeze tables to 80 columns when output is piped or logged."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(140, shutil.get_terminal_size((140, 24)).columns)
    return Console(stderr=stderr, highlight=False, width=width)


def _print_problems(err: Console, exc) -> None:
    problems = getattr(exc, "problems", None) or [exc]
    err.print(f"[red]Invalid job definition: {len(problems)} problem{'s' if len(problems) != 1 else ''}[/red]")
    for problem in problems:
        err.print(f"  - {problem}", markup=False, soft_wrap=True)


def _workspace(args):
    from .service import Workspace
    return Workspace(args.home)


def _load(args):
    from .service import parse_key_values
    from .spec import load_job
    return load_job(args.path, job=args.job, target=args.target, variables=parse_key_values(args.var, flag="--var"))


def _dispatch(args, err: Console) -> int:
    out = _console()
    if args.command == "validate":
        loaded = _load(args)
        n = len(loaded.settings.tasks)
        out.print(f"OK: job '{loaded.settings.name or 'Untitled'}' ({n} task{'s' if n != 1 else ''}) is valid.")
        return EXIT_OK
    if args.command == "run":
        from .service import parse_key_values
        params = parse_key_values(args.job_param, flag="--job-param")
        loaded = _load(args)
        ws = _workspace(args)
        job_id, created = ws.save_job(loaded.settings, base_dir=loaded.source_path.parent,
                                      source_path=str(loaded.source_path))
        err.print(f"{'Created' if created else 'Updated'} job {job_id} '{loaded.settings.name or 'Untitled'}' "
                  f"from {_short_path(str(loaded.source_path))}", soft_wrap=True)
        return _run_and_report(ws, job_id, params, args, out, err)
    if args.command == "jobs":
        return _jobs(args, out, err)
    return _runs(args, out, err)


def _run_and_report(ws, job_id: int, params: dict, args, out: Console, err: Console) -> int:
    import asyncio
    run_id = ws.start_run(job_id, params)
    err.print(f"Run {run_id} started (NBJOBS_HOME={_short_path(str(ws.home))})", soft_wrap=True)
    progress = ProgressPrinter(err)
    run = asyncio.run(ws.execute_run(run_id, on_event=progress, concurrency=args.concurrency))
    table_console = err if args.json else out
    table_console.print(run_table(run))
    result = run["state"].get("result_state", run["state"]["life_cycle_state"])
    seconds = run["run_duration"] / 1000
    table_console.print(f"Run {run['run_id']} of job {job_id}: [{_STYLE.get(result, 'white')}]{result}"
                        f"[/] in {seconds:.1f}s")
    if args.json:
        print(json.dumps(run, indent=2))
    return EXIT_OK if result in ("SUCCESS", "SUCCESS_WITH_FAILURES") else EXIT_FAILED


class ProgressPrinter:
    """Live progress lines on stderr from runner events."""

    def __init__(self, console: Console):
        self.console = console

    def __call__(self, event) -> None:
        if event.kind == "task_start":
            self.console.print(f"  [cyan]▶[/cyan] {event.task_key} [cyan]RUNNING[/cyan]")
        elif event.kind == "task_end":
            state = event.result_state or event.life_cycle_state
            style = _STYLE.get(state, "white")
            row = event.row or {}
            took = ""
            if row.get("end_time") and row.get("start_time"):
                took = f" {(row['end_time'] - row['start_time']) / 1000:.1f}s"
            mark = "✔" if state == "SUCCESS" else ("·" if state in ("EXCLUDED", "DISABLED") else "✖")
            detail = f" — {event.message}" if event.message and state not in ("SUCCESS",) else ""
            self.console.print(f"  [{style}]{mark}[/] {event.task_key} [{style}]{state}[/]{took}{detail}",
                               markup=True, soft_wrap=True)


def run_table(run: dict) -> Table:
    """Tasks, states, durations and executed-notebook paths of a run."""
    table = Table(title=f"Run {run['run_id']} · {run.get('run_name', '')}", title_justify="left")
    for col in ("task", "state", "duration", "output"):
        table.add_column(col, overflow="fold")
    for task in run.get("tasks", []):
        state = task["state"].get("result_state") or task["state"]["life_cycle_state"]
        duration = f"{task['run_duration'] / 1000:.1f}s" if task.get("run_duration") else "-"
        output = _short_path(task.get("run_page_url", "").removeprefix("file://"))
        if "condition_task" in task and "outcome" in task["condition_task"]:
            output = f"outcome: {task['condition_task']['outcome']}"
        table.add_row(task["task_key"], f"[{_STYLE.get(state, 'white')}]{state}[/]", duration, output)
    return table


def _short_path(path: str) -> str:
    """A path relative to the current directory when it is inside it."""
    if not path:
        return path
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _jobs(args, out: Console, err: Console) -> int:
    ws = _workspace(args)
    if args.verb == "create":
        if args.json_file == "-":
            text, base = sys.stdin.read(), Path.cwd()
        else:
            path = Path(args.json_file)
            text, base = path.read_text(), path.resolve().parent
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            err.print(f"[red]Error:[/red] --json {args.json_file}: not valid JSON ({exc}).", markup=True)
            return EXIT_INVALID
        job_id = ws.create_job(body, base_dir=base)
        print(json.dumps({"job_id": job_id}))
        return EXIT_OK
    if args.verb == "list":
        tags = {}
        for item in args.tag:
            key, sep, value = item.partition("=")
            tags[key] = value if sep else None
        jobs = ws.list_jobs(name=args.name, tags=tags or None)
        if args.output == "json":
            print(json.dumps({"jobs": jobs} if jobs else {}, indent=2))
            return EXIT_OK
        table = Table()
        for col in ("job_id", "name", "tags", "tasks"):
            table.add_column(col)
        for job in ws.list_jobs(name=args.name, tags=tags or None, expand_tasks=True):
            tag_text = ", ".join(f"{k}:{v}" if v else k for k, v in (job["settings"].get("tags") or {}).items())
            table.add_row(str(job["job_id"]), job["settings"].get("name", ""), tag_text,
                          str(len(job["settings"].get("tasks", []))))
        out.print(table)
        return EXIT_OK
    if args.verb == "get":
        print(json.dumps(ws.get_job(args.job_id), indent=2))
        return EXIT_OK
    if args.verb == "run-now":
        from .service import parse_key_values
        return _run_and_report(ws, args.job_id, parse_key_values(args.job_param, flag="--job-param"),
                               args, out, err)
    ws.delete_job(args.job_id)
    err.print(f"Deleted job {args.job_id}")
    return EXIT_OK


def _runs(args, out: Console, err: Console) -> int:
    ws = _workspace(args)
    if args.verb == "list":
        runs = ws.list_runs(job_id=args.job_id, active_only=args.active_only,
                            completed_only=args.completed_only, limit=args.limit)
        if args.output == "json":
            print(json.dumps({"runs": runs} if runs else {}, indent=2))
            return EXIT_OK
        table = Table()
        for col in ("run_id", "job_id", "name", "state", "duration"):
            table.add_column(col)
        for run in runs:
            state = run["state"].get("result_state") or run["state"]["life_cycle_state"]
            table.add_row(str(run["run_id"]), str(run.get("job_id", "")), run["run_name"],
                          f"[{_STYLE.get(state, 'white')}]{state}[/]", f"{run['run_duration'] / 1000:.1f}s")
        out.print(table)
        return EXIT_OK
    if args.verb == "get":
        print(json.dumps(ws.get_run(args.run_id), indent=2))
        return EXIT_OK
    print(json.dumps(ws.get_run_output(args.run_id), indent=2))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
