"""Arguments shared by the `nbjobs` command and the `%job` magics (tags also by the server), parsed once.

`NAME=VALUE` parameters, `KEY[=VALUE]` tags, task-key lists, the repair flags and `--json`.
Stdlib only.
"""
from __future__ import annotations

import argparse
from typing import Any, Iterable

from .contract import REPAIR_RERUN_DEPENDENT_TASKS
from .errors import InvalidParameterValue

__all__ = ["add_job_params", "add_json", "add_repair_flags", "parse_key_values", "parse_tags",
           "parse_task_keys", "repair_options"]


def parse_key_values(items: Iterable[str] | None, *, flag: str) -> dict[str, str]:
    """`NAME=VALUE` pairs from repeated CLI flags; a clear error names the bad one."""
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidParameterValue(f"{flag} {item!r}: expected NAME=VALUE, e.g. {flag} run_date=2026-01-31")
        out[name] = value
    return out


def parse_tags(items: Iterable[str] | None) -> dict[str, str | None] | None:
    """`KEY=VALUE` (the tag must have that value) or `KEY` (the tag is there) items; None when none."""
    tags: dict[str, str | None] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        tags[key] = value if sep else None
    return tags or None


def parse_task_keys(items: str | Iterable[str] | None) -> list[str] | None:
    """Task keys given comma-separated, space-separated or both (`a,b` or `a b`); None when none."""
    if items is None:
        return None
    if isinstance(items, str):
        items = [items]
    keys = [k.strip() for item in items for k in item.split(",") if k.strip()]
    return keys or None


def add_job_params(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--job-param", action="append", default=[], metavar="NAME=VALUE", help=help)


def add_json(parser: argparse.ArgumentParser, what: str = "the finished run") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as runs/get JSON on stdout")


def add_repair_flags(parser: argparse.ArgumentParser, *, require_choice: bool, latest: bool = True) -> None:
    """The flags of runs/repair. `require_choice`: one of --rerun-tasks and --rerun-all-failed-tasks
    must be given (the CLI); otherwise no --rerun-tasks means the failed tasks (the magics, whose
    panel passes the latest repair id itself: `latest=False`)."""
    which = parser.add_mutually_exclusive_group(required=require_choice)
    which.add_argument("--rerun-all-failed-tasks", action="store_true",
                       help="rerun every failed, timed-out or canceled task (and the tasks skipped after them)")
    which.add_argument("--rerun-tasks", nargs="+", metavar="KEY[,KEY...]",
                       help="rerun these tasks (comma- or space-separated)")
    parser.add_argument("--rerun-dependent-tasks", "--rerun-dependents", dest="rerun_dependent_tasks",
                        action="store_true", default=REPAIR_RERUN_DEPENDENT_TASKS,
                        help="also rerun every task after them, even those that succeeded")
    add_job_params(parser, help="change a job parameter for the repair")
    if latest:
        parser.add_argument("--latest-repair-id", type=int, metavar="N", help="required after a first repair")


def repair_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `JobsClient.repair_run` from `add_repair_flags`' flags."""
    tasks = parse_task_keys(args.rerun_tasks)
    return dict(rerun_tasks=tasks, rerun_all_failed_tasks=bool(args.rerun_all_failed_tasks or tasks is None),
                rerun_dependent_tasks=bool(args.rerun_dependent_tasks), latest_repair_id=getattr(args, "latest_repair_id", None),
                job_parameters=parse_key_values(args.job_param, flag="--job-param") or None)

