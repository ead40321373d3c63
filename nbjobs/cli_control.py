"""The control-flow verbs of the `nbjobs` command: runs repair / cancel / cancel-all, and batch.

`nbjobs.cli` builds the parser and calls `add_run_verbs`, `add_batch_command` and `dispatch`;
everything here goes through the service methods (a local Workspace or a server client alike).
"""
from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
RUN_VERBS = ("repair", "cancel", "cancel-all")


def add_run_verbs(runs) -> None:
    """`runs repair`, `runs cancel`, `runs cancel-all` on the `runs` subparsers."""
    rp = runs.add_parser("repair", help="rerun the failed (or named) tasks of a finished run, inside that run")
    rp.add_argument("run_id", type=int)
    which = rp.add_mutually_exclusive_group(required=True)
    which.add_argument("--rerun-all-failed-tasks", action="store_true",
                       help="rerun every failed, timed-out or canceled task (and the tasks skipped after them)")
    which.add_argument("--rerun-tasks", metavar="KEY[,KEY...]", help="rerun these tasks (comma-separated)")
    rp.add_argument("--rerun-dependent-tasks", action="store_true",
                    help="also rerun every task after them, even those that succeeded")
    rp.add_argument("--job-param", action="append", default=[], metavar="NAME=VALUE",
                    help="change a job parameter for the repair")
    rp.add_argument("--latest-repair-id", type=int, metavar="N", help="required after a first repair")
    rp.add_argument("--json", action="store_true", help="print the repaired run as runs/get JSON on stdout")
    rp.add_argument("--concurrency", type=int, help="most tasks at once (default: number of cores)")

    cn = runs.add_parser("cancel", help="cancel a run (or a task run), also one running in another process")
    cn.add_argument("run_id", type=int)
    cn.add_argument("--no-wait", action="store_true", help="return at once instead of waiting for it to end")
    cn.add_argument("--timeout", type=float, default=60, help="seconds to wait for it to end (default 60)")

    ca = runs.add_parser("cancel-all", help="cancel every active run of a job (or every queued run)")
    ca.add_argument("--job-id", type=int)
    ca.add_argument("--all-queued-runs", action="store_true",
                    help="without --job-id: cancel every queued run of the workspace")


def add_batch_command(sub) -> None:
    b = sub.add_parser("batch", help="run a notebook (or script) over the product of parameter grids")
    b.add_argument("notebook", help="the notebook (.ipynb) or script (.py)")
    b.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                   help="a parameter and its values (repeat for a product of grids)")
    b.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter with the same value for every combination")
    b.add_argument("--concurrency", type=int, default=1, help="combinations at once (1-100, default 1)")
    b.add_argument("--name", help="job name (default: 'batch <notebook name>')")
    b.add_argument("--json", action="store_true", help="print the run as runs/get JSON on stdout")


def dispatch(args, ws, out: Console, err: Console, progress) -> int:
    """Run `runs repair|cancel|cancel-all` or `batch`."""
    from .service import parse_key_values
    if args.command == "batch":
        return _batch(args, ws, out, err, progress)
    if args.verb == "repair":
        params = parse_key_values(args.job_param, flag="--job-param")
        rerun = [k.strip() for k in args.rerun_tasks.split(",") if k.strip()] if args.rerun_tasks else None
        kwargs: dict[str, Any] = dict(
            rerun_tasks=rerun, rerun_all_failed_tasks=args.rerun_all_failed_tasks,
            rerun_dependent_tasks=args.rerun_dependent_tasks, latest_repair_id=args.latest_repair_id,
            job_parameters=params or None)
        if hasattr(ws, "url"):  # a server: the repair executes there; Ctrl-C here cancels it
            started = ws.repair_run(args.run_id, wait=False, **kwargs)
            err.print(f"Repair {started['repair_id']} of run {args.run_id} started on {ws.url}", soft_wrap=True)
            try:
                run = ws.wait(args.run_id, on_event=progress)
            except KeyboardInterrupt:
                ws.cancel_run(args.run_id)
                raise
        else:  # here: Ctrl-C stops the tasks (kernels and subprocesses) and ends the repair CANCELED
            run = ws.repair_run(args.run_id, wait=True, on_event=progress, concurrency=args.concurrency, **kwargs)
        repair = (run.get("repair_history") or [{}])[-1].get("id")
        return report(run, out, err, as_json=args.json, title=f"Repair {repair} of run")
    if args.verb == "cancel":
        ws.cancel_run(args.run_id)
        if args.no_wait:
            err.print(f"Cancel requested for run {args.run_id}")
            return EXIT_OK
        run = ws.wait(args.run_id, timeout=args.timeout)
        state = run["state"].get("result_state") or run["state"]["life_cycle_state"]
        err.print(f"Run {args.run_id}: {state}" + ("" if "result_state" in run["state"] else
                                                   " (still stopping; check again with nbjobs runs get)"))
        return EXIT_OK
    ws.cancel_all_runs(job_id=args.job_id, all_queued_runs=args.all_queued_runs)
    what = f"job {args.job_id}" if args.job_id is not None else "the workspace"
    err.print(f"Cancel requested for every {'queued' if args.all_queued_runs else 'active'} run of {what}")
    return EXIT_OK


def report(run: dict, out: Console, err: Console, *, as_json: bool, title: str = "Run") -> int:
    from .tables import STYLE, run_table
    console = err if as_json else out
    console.print(run_table(run))
    result = run["state"].get("result_state", run["state"]["life_cycle_state"])
    console.print(f"{title} {run['run_id']}: [{STYLE.get(result, 'white')}]{result}[/] "
                  f"in {run['run_duration'] / 1000:.1f}s")
    if as_json:
        print(json.dumps(run, indent=2))
    return EXIT_OK if result in ("SUCCESS", "SUCCESS_WITH_FAILURES") else EXIT_FAILED


def _batch(args, ws, out: Console, err: Console, progress) -> int:
    from .batch import batch_rows, batch_settings, parse_grid
    from .service import InvalidParameterValue, parse_key_values
    from .tables import STYLE, short_path
    try:
        settings = batch_settings(args.notebook, parse_grid(args.grid),
                                  params=parse_key_values(args.param, flag="--param"),
                                  concurrency=args.concurrency, name=args.name)
    except ValueError as exc:
        raise InvalidParameterValue(str(exc)) from None
    from pathlib import Path
    job_id, _ = ws.save_job(settings, base_dir=Path(args.notebook).resolve().parent)
    count = len(json.loads(settings["tasks"][0]["for_each_task"]["inputs"]))
    err.print(f"Batch of {count} run{'s' if count != 1 else ''} of {args.notebook} (job {job_id}, "
              f"{args.concurrency} at once)", soft_wrap=True)
    if hasattr(ws, "url"):  # a server
        started = ws.run_now(job_id, wait=False)
        try:
            run = ws.wait(started["run_id"], on_event=progress)
        except KeyboardInterrupt:
            ws.cancel_run(started["run_id"])
            raise
    else:
        run = ws.run_now(job_id, on_event=progress)
    rows = batch_rows(ws, run)
    names = list(rows[0].parameters) if rows else []
    table = Table(title=f"Batch run {run['run_id']}", title_justify="left")
    for name in names:
        table.add_column(name)
    table.add_column("state")
    table.add_column("output", overflow="fold")
    for row in rows:
        style = STYLE.get(row.state, "white")
        detail = short_path(row.output_path or "") if row.state == "SUCCESS" or not row.error else \
            f"{short_path(row.output_path or '')}\n{row.error}".strip()
        table.add_row(*[row.parameters.get(n, "") for n in names], f"[{style}]{row.state}[/]", detail)
    console = err if args.json else out
    console.print(table)
    result = run["state"].get("result_state", run["state"]["life_cycle_state"])
    failed = sum(1 for r in rows if r.state != "SUCCESS")
    console.print(f"Batch run {run['run_id']}: [{STYLE.get(result, 'white')}]{result}[/] — "
                  f"{len(rows) - failed} of {len(rows)} succeeded"
                  + (f"; rerun the failed ones with: nbjobs runs repair {run['run_id']} --rerun-all-failed-tasks"
                     if failed else ""))
    if args.json:
        print(json.dumps(run, indent=2))
    return EXIT_OK if result == "SUCCESS" else EXIT_FAILED
