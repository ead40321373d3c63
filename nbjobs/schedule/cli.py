"""`nbjobs jobs next-runs | pause | resume`: a job's next fire times; pause or resume its schedule or trigger.

Pause and resume go through jobs/update (`new_settings: {schedule: {..., pause_status}}`), so they work on
any JobsClient: the local workspace or a server (`--host`), and the same is reachable from Python and REST.
"""
from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from .settings import when_of, with_pause_status
from .slots import GAP, from_ms

VERBS = ("next-runs", "pause", "resume")


def add_parser(jobs: Any) -> None:
    n = jobs.add_parser("next-runs", help="the next fire times of a job's schedule or periodic trigger")
    n.add_argument("job_id", type=int)
    n.add_argument("--count", type=int, default=5, help="how many (default: 5)")
    n.add_argument("--after", metavar="ISO_8601_TIME",
                   help="list the fire times after this instant (default: now); without an offset it is UTC")
    for verb, word in (("pause", "PAUSED"), ("resume", "UNPAUSED")):
        p = jobs.add_parser(verb, help=f"set the pause status of the job's schedule, trigger or continuous to {word}")
        p.add_argument("job_id", type=int)


def parse_after(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--after {text!r}: not an ISO 8601 time; write e.g. 2026-03-29T00:00:00+01:00") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def next_runs(job: dict, after: datetime, count: int) -> list[datetime]:
    """The next fire times of a jobs/get answer's schedule or periodic trigger (also when paused)."""
    settings = job.get("settings") or {}
    when = when_of(settings)
    if when is None:
        raise ValueError(f"job {job.get('job_id')} has no schedule or periodic trigger; add e.g. schedule: "
                         "{quartz_cron_expression: '0 0 6 * * ?', timezone_id: UTC}")
    slots = (job.get("trigger_state") or {}).get("recent_slots") or []
    last = max((s["slot_time"] for s in slots if s.get("status") == "STARTED"), default=None)
    if last is not None and from_ms(last) + GAP > after:  # a schedule runs at most every 10 s
        after = from_ms(last) + GAP
    return when.next_after(after, count, anchor=from_ms(job.get("created_time") or 0))


def dispatch(args: argparse.Namespace, client: Any, out: Any, err: Any) -> int:
    if args.verb == "next-runs":
        if args.count < 1:
            err.print("nbjobs jobs next-runs: --count must be 1 or more", markup=False)
            return 2
        try:
            times = next_runs(client.get_job(args.job_id), parse_after(args.after), args.count)
        except ValueError as exc:
            err.print(f"Error: {exc}", markup=False, soft_wrap=True)
            return 2
        for t in times:
            print(t.isoformat())
        if len(times) < args.count:
            err.print(f"(the schedule has no more fire times after {times[-1].isoformat() if times else 'that'})",
                      markup=False)
        return 0
    status = "PAUSED" if args.verb == "pause" else "UNPAUSED"
    job = client.get_job(args.job_id)
    try:
        change = with_pause_status(job.get("settings") or {}, status)
    except ValueError as exc:
        err.print(f"Error: job {args.job_id}: {exc}", markup=False, soft_wrap=True)
        return 2
    client.update_job(args.job_id, change)
    field = next(iter(change))
    err.print(f"Job {args.job_id}: {field} {status.lower()}", markup=False)
    if status == "UNPAUSED" and field != "continuous":
        times = next_runs(client.get_job(args.job_id), datetime.now(timezone.utc), 1)
        if times:
            err.print(f"Next run: {times[0].isoformat()}", markup=False)
    return 0
