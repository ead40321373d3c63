"""`nbjobs` command line: the Databricks CLI's job verbs over the local workspace."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console

from .cli_args import add_job_params, add_json, parse_key_values, parse_tags
from .cli_report import EXIT_FAILED, EXIT_INVALID, EXIT_OK, ProgressPrinter, console as _console, report
from .tables import jobs_table, runs_table, short_path as _short_path

__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "ProgressPrinter", "main"]


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
    add_job_params(r)
    add_json(r)
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
    add_job_params(rn)
    add_json(rn)
    rn.add_argument("--concurrency", type=int, help="most tasks at once (default: number of cores)")
    rn.add_argument("--idempotency-token", help="a run with this token already exists: show it, start nothing")
    rn.add_argument("--only", metavar="KEY[,KEY...]", help="run only these tasks (+key: with its upstream, "
                    "key+: with its downstream)")
    d = jobs.add_parser("delete", help="delete a job")
    d.add_argument("job_id", type=int)
    from .schedule import cli as schedule_cli
    schedule_cli.add_parser(jobs)  # jobs next-runs | pause | resume

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
    from .notify import cli as notify_cli
    notify_cli.add_run_verb(runs)   # runs notifications RUN_ID
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
    notify_cli.add_parser(sub)    # destinations list | test ID
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    err = _console(stderr=True)
    from .errors import InvalidParameterValue, JobDefinitionError, NbjobsError
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


def _print_problems(err: Console, exc) -> None:
    problems = getattr(exc, "problems", None) or [exc]
    err.print(f"[red]Invalid job definition: {len(problems)} problem{'s' if len(problems) != 1 else ''}[/red]")
    for problem in problems:
        err.print(f"  - {problem}", markup=False, soft_wrap=True)


def _client(args):
    """The `JobsClient`: the server given by --host / $NBJOBS_HOST, else the local workspace (--home)."""
    host = args.remote_host or os.environ.get("NBJOBS_HOST")
    if host:
        from .client import connect
        return connect(host, args.remote_token, home=args.home)
    from .service import Workspace
    return Workspace(args.home)


def _load(args):
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
        params = parse_key_values(args.job_param, flag="--job-param")
        loaded = _load(args)
        ws = _client(args)
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
    if args.command == "destinations":
        from .notify import cli as notify_cli
        return notify_cli.dispatch(args)
    if args.command == "batch":
        from .cli_control import dispatch
        return dispatch(args, _client(args), out, err, ProgressPrinter(err))
    if args.command == "jobs":
        return _jobs(args, out, err)
    return _runs(args, out, err)


def _run_and_report(ws, job_id: int, params: dict, args, out: Console, err: Console) -> int:
    """Start the run, print its progress until it ends (Ctrl-C cancels it), then its report."""
    from .follow import cancel_on_interrupt
    started = ws.run_now(job_id, params, wait=False, idempotency_token=getattr(args, "idempotency_token", None),
                         only=getattr(args, "only", None), concurrency=args.concurrency)
    err.print(f"Run {started['run_id']} started on {ws.location}", soft_wrap=True)
    run = cancel_on_interrupt(ws, started["run_id"], on_event=ProgressPrinter(err))
    return report(run, out, err, as_json=args.json)


def _jobs(args, out: Console, err: Console) -> int:
    ws = _client(args)
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
        tags = parse_tags(args.tag)
        jobs = ws.list_jobs(name=args.name, tags=tags)
        if args.output == "json":
            print(json.dumps({"jobs": jobs} if jobs else {}, indent=2))
            return EXIT_OK
        out.print(jobs_table(ws.list_jobs(name=args.name, tags=tags, expand_tasks=True)))
        return EXIT_OK
    if args.verb == "get":
        print(json.dumps(ws.get_job(args.job_id), indent=2))
        return EXIT_OK
    from .schedule import cli as schedule_cli
    if args.verb in schedule_cli.VERBS:
        return schedule_cli.dispatch(args, ws, out, err)
    if args.verb == "run-now":
        return _run_and_report(ws, args.job_id, parse_key_values(args.job_param, flag="--job-param"),
                               args, out, err)
    ws.delete_job(args.job_id)
    err.print(f"Deleted job {args.job_id}")
    return EXIT_OK


def _runs(args, out: Console, err: Console) -> int:
    ws = _client(args)
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
    if args.verb == "notifications":
        from .notify import cli as notify_cli
        return notify_cli.run_notifications(ws, args)
    print(json.dumps(ws.get_run_output(args.run_id), indent=2))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
