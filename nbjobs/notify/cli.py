"""`nbjobs destinations list | test ID` and `nbjobs runs notifications RUN_ID`."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("destinations", help="notification destinations of the workspace config: list, test")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="the destinations and the SMTP server of <NBJOBS_HOME>/config.yml (secrets hidden)")
    t = verbs.add_parser("test", help="send a test message to a destination and report the answer")
    t.add_argument("destination_id", metavar="ID")


def add_run_verb(runs: Any) -> None:
    n = runs.add_parser("notifications", help="a run's notification deliveries (event, destination, result)")
    n.add_argument("run_id", type=int)
    n.add_argument("--json", action="store_true", help="print them as JSON")


def run_notifications(client: Any, args: argparse.Namespace) -> int:
    from .views import delivery_lines
    deliveries = client.run_notifications(args.run_id)
    if args.json:
        print(json.dumps({"notifications": deliveries}, indent=2))
    elif not deliveries:
        print(f"Run {args.run_id} sent no notifications.")
    else:
        print("\n".join(delivery_lines(deliveries)))
    return 0


def dispatch(args: argparse.Namespace) -> int:
    from ..compute.config import ConfigError
    from ..contract import default_home
    from .config import load_notifications_config
    if getattr(args, "remote_host", None):
        print("nbjobs destinations: destinations are read from this machine's workspace config (--home); "
              "drop --host", file=sys.stderr)
        return 2
    home = args.home or default_home()
    try:
        config = load_notifications_config(home)
    except ConfigError as exc:
        print(f"nbjobs destinations: {exc}", file=sys.stderr)
        return 2
    if args.verb == "list":
        return _list(config)
    return _test(config, args.destination_id)


def _list(config: Any) -> int:
    where = config.path or "no workspace config"
    if config.smtp is not None:
        s = config.smtp
        auth = f", user {s.user}, password from ${s.password_env}" if s.user else ""
        print(f"SMTP: {s.host}:{s.port} tls={s.tls}, sender {s.sender}{auth}")
    else:
        print("SMTP: not configured (email notifications fail until notifications.smtp is set)")
    if not config.destinations:
        print(f"No destinations ({where}): add notifications.destinations, see docs/notifications.md")
        return 0
    for dest in config.destinations.values():
        print(f"{dest.id:<20} {dest.type:<10} {dest.describe()}")
    return 0


def _test(config: Any, destination_id: str) -> int:
    from .messages import MessageContext
    from .send import deliver
    dest = config.destinations.get(destination_id)
    if dest is None:
        known = ", ".join(sorted(config.destinations)) or "none"
        print(f"nbjobs destinations: unknown destination id {destination_id!r}; known ids: {known}", file=sys.stderr)
        return 2
    ctx = MessageContext(event="test", run_id=0, job_name="nbjobs destinations test")
    outcome = deliver(dest, ctx, config)
    attempts = f"{outcome.attempts} attempt{'s' if outcome.attempts > 1 else ''}"
    if outcome.result == "DELIVERED":
        print(f"{dest.id}: delivered ({outcome.detail}, {attempts})")
        return 0
    print(f"{dest.id}: not delivered after {attempts}: {outcome.error}", file=sys.stderr)
    return 1
