"""The control-flow verbs of the `nbjobs` command: runs repair / cancel / cancel-all, and batch.

`nbjobs.cli` builds the parser and calls `add_run_verbs`, `add_batch_command` and `dispatch`;
everything here goes through the `JobsClient` verbs (a local Workspace or a server client alike).
"""
from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from .cli_args import add_json, add_repair_flags, parse_key_values, repair_options
from .cli_report import EXIT_FAILED, EXIT_OK, report
from .follow import cancel_on_interrupt

RUN_VERBS = ("repair", "cancel", "cancel-all")


def add_run_verbs(runs) -> None:
    """`runs repair`, `runs cancel`, `runs cancel-all` on the `runs` subparsers."""
    rp = runs.add_parser("repair", help="rerun the failed (or named) tasks of a finished run, inside that run")
    rp.add_argument("run_id", type=int)
    add_repair_flags(rp, require_choice=True)
    add_json(rp, "the repaired run")
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
    add_json(b, "the run")


def dispatch(args, ws, out: Console, err: Console, progress) -> int:
    """Run `runs repair|cancel|cancel-all` or `batch` on the client `ws`."""
    if args.command == "batch":
        return _batch(args, ws, out, err, progress)
    if args.verb == "repair":
        started = ws.repair_run(args.run_id, wait=False, concurrency=args.concurrency, **repair_options(args))
        err.print(f"Repair {started['repair_id']} of run {args.run_id} started on {ws.location}", soft_wrap=True)
        run = cancel_on_interrupt(ws, args.run_id, on_event=progress)
        repair = (run.get("repair_history") or [{}])[-1].get("id")
        return report(run, out, err, as_json=args.json, title=f"Repair {repair} of run {run['run_id']}")
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


def _batch(args, ws, out: Console, err: Console, progress) -> int:
    from .batch import parse_grid, save_batch
    from .errors import InvalidParameterValue, JobDefinitionError
    from .tables import STYLE, short_path
    try:
        batch = save_batch(ws, args.notebook, parse_grid(args.grid), params=parse_key_values(args.param, flag="--param"),
                           concurrency=args.concurrency, name=args.name)
    except JobDefinitionError:
        raise
    except ValueError as exc:
        raise InvalidParameterValue(str(exc)) from None
    count = batch.count
    err.print(f"Batch of {count} run{'s' if count != 1 else ''} of {args.notebook} (job {batch.job_id}, "
              f"{args.concurrency} at once)", soft_wrap=True)
    result = batch.run(on_event=progress)
    run, rows = result.run, result.rows
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
    result_state = run["state"].get("result_state", run["state"]["life_cycle_state"])
    failed = sum(1 for r in rows if r.state != "SUCCESS")
    console.print(f"Batch run {run['run_id']}: [{STYLE.get(result_state, 'white')}]{result_state}[/] — "
                  f"{len(rows) - failed} of {len(rows)} succeeded"
                  + (f"; rerun the failed ones with: nbjobs runs repair {run['run_id']} --rerun-all-failed-tasks"
                     if failed else ""))
    if args.json:
        print(json.dumps(run, indent=2))
    return EXIT_OK if result_state == "SUCCESS" else EXIT_FAILED
