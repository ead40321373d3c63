"""`nbjobs` command line: the Databricks CLI's job verbs over the local workspace."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console

from .tables import STYLE as _STYLE, jobs_table, run_table, runs_table, short_path as _short_path

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nbjobs", description="Databricks Lakeflow Jobs for Jupyter, run locally.")
    p.add_argument("--home", help="workspace folder (default: $NBJOBS_HOME or ./.nbjobs)")
    p.add_argument("--host", dest="remote_host", metavar="URL",
                   help="talk to the nbjobs server at URL instead of the local workspace (default: $NBJOBS_HOST)")
    p.add_argument("--token", dest="remote_token",
                   help="the server's token (default: $NBJOBS_TOKEN, else the one saved in --home)")
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
    rn.add_argument("--idempotency-token", help="a run with this token already exists: show it, start nothing")
    rn.add_argument("--only", metavar="KEY[,KEY...]", help="run only these tasks (+key: with its upstream, "
                    "key+: with its downstream)")
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
    from .cli_control import add_batch_command, add_run_verbs
    add_run_verbs(runs)       # runs repair | cancel | cancel-all
    add_batch_command(sub)    # batch NOTEBOOK --grid NAME=V1,V2 ...

    s = sub.add_parser("serve", help="serve the Jobs API (REST, databricks-sdk) over this workspace")
    s.add_argument("--host", dest="bind_host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    s.add_argument("--token", dest="serve_token",
                   help="the token clients must send (default: $NBJOBS_TOKEN, else one generated on first start "
                        "and saved in the workspace folder)")
    s.add_argument("--root", help="folder that API-submitted job paths are relative to (default: current folder)")
    from .services import cli as services_cli
    services_cli.add_parser(sub)  # services run | list | status
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
    """The local Workspace, or a client of the server given by --host / $NBJOBS_HOST."""
    import os
    host = args.remote_host or os.environ.get("NBJOBS_HOST")
    if host:
        from .client import connect
        return connect(host, args.remote_token, home=args.home)
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
    if args.command == "serve":
        if args.remote_host:
            err.print("[red]Error:[/red] --host before a command names a server to talk to; to choose where "
                      "`nbjobs serve` listens, write `nbjobs serve --host ADDRESS`.", markup=True)
            return EXIT_INVALID
        from .server.app import serve
        return serve(home=args.home, host=args.bind_host, port=args.port, token=args.serve_token, root=args.root,
                     echo=lambda line: err.print(line, markup=False, soft_wrap=True, highlight=False))
    if args.command == "services":
        from .services import cli as services_cli
        return services_cli.dispatch(args)
    if args.command == "batch":
        from .cli_control import dispatch
        return dispatch(args, _workspace(args), out, err, ProgressPrinter(err))
    if args.command == "jobs":
        return _jobs(args, out, err)
    return _runs(args, out, err)


def _run_and_report(ws, job_id: int, params: dict, args, out: Console, err: Console) -> int:
    extra = {k: v for k, v in (("idempotency_token", getattr(args, "idempotency_token", None)),
                               ("only", getattr(args, "only", None))) if v}
    if hasattr(ws, "url"):  # a server: the run executes there; Ctrl-C here cancels it
        started = ws.run_now(job_id, params, wait=False, **extra)
        err.print(f"Run {started['run_id']} started on {ws.url}", soft_wrap=True)
        try:
            run = ws.wait(started["run_id"], on_event=ProgressPrinter(err))
        except KeyboardInterrupt:
            ws.cancel_run(started["run_id"])
            raise
        return _report(run, job_id, args, out, err)
    run_id, created = ws._start_run(job_id, params, **extra)
    progress = ProgressPrinter(err)
    if not created:  # the idempotency token names an earlier run: show it
        err.print(f"Run {run_id} already exists with this idempotency token", soft_wrap=True)
        run = ws.wait(run_id)
    else:
        err.print(f"Run {run_id} started (NBJOBS_HOME={_short_path(str(ws.home))})", soft_wrap=True)
        # here (asyncio.run: Ctrl-C stops the tasks), or on the engine when a loop already runs here
        run = ws.execute(run_id, on_event=progress, concurrency=args.concurrency)
    return _report(run, job_id, args, out, err)


def _report(run: dict, job_id: int, args, out: Console, err: Console) -> int:
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
            again = f" (attempt {event.attempt_number})" if getattr(event, "attempt_number", 0) else ""
            self.console.print(f"  [cyan]▶[/cyan] {event.task_key} [cyan]RUNNING[/cyan]{again}")
        elif event.kind in ("task_retry", "run_queued"):
            who = f"{event.task_key} " if event.task_key else "run "
            self.console.print(f"  [yellow]…[/yellow] {who}[yellow]{event.life_cycle_state}[/yellow] — "
                               f"{event.message}", markup=True, soft_wrap=True)
        elif event.kind == "task_progress" and getattr(event, "stats", None):
            counts = event.stats["task_run_stats"]
            done = counts["completed_iterations"]
            if done != getattr(self, "_done", {}).get(event.task_key):
                self.__dict__.setdefault("_done", {})[event.task_key] = done
                failed = f", {counts['failed_iterations']} failed" if counts["failed_iterations"] else ""
                self.console.print(f"  [cyan]↻[/cyan] {event.task_key} {done}/{counts['total_iterations']} "
                                   f"iterations done{failed}", markup=True, soft_wrap=True)
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
        out.print(jobs_table(ws.list_jobs(name=args.name, tags=tags or None, expand_tasks=True)))
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
    from .cli_control import RUN_VERBS, dispatch
    if args.verb in RUN_VERBS:
        return dispatch(args, ws, out, err, ProgressPrinter(err))
    if args.verb == "list":
        runs = ws.list_runs(job_id=args.job_id, active_only=args.active_only,
                            completed_only=args.completed_only, limit=args.limit)
        if args.output == "json":
            print(json.dumps({"runs": runs} if runs else {}, indent=2))
            return EXIT_OK
        out.print(runs_table(runs))
        return EXIT_OK
    if args.verb == "get":
        print(json.dumps(ws.get_run(args.run_id), indent=2))
        return EXIT_OK
    print(json.dumps(ws.get_run_output(args.run_id), indent=2))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
