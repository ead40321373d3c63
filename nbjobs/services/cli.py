"""`nbjobs services run | list | status`: the service host in the foreground, without the REST API."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("services", help="long-running services (recovery, ...): run, list, status")
    verbs = p.add_subparsers(dest="verb", required=True)
    r = verbs.add_parser("run", help="run the services in the foreground (no REST API) until Ctrl-C")
    r.add_argument("--only", action="append", default=[], metavar="NAME[,NAME...]",
                   help="run only these services (a name from `services list`, or module:Class)")
    r.add_argument("--lease-ttl", type=float, metavar="SECONDS",
                   help="how long a once-per-workspace lease lasts without a heartbeat "
                        "(default: $NBJOBS_LEASE_TTL, else 10)")
    verbs.add_parser("list", help="the services available: built-in and the nbjobs.services entry points")
    s = verbs.add_parser("status", help="the service hosts of this workspace, their services' health and the leases")
    s.add_argument("--json", action="store_true", help="print the hosts and leases as JSON")


def dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "remote_host", None):
        print("nbjobs services: services run on this machine's workspace (--home); drop --host", file=sys.stderr)
        return 2
    if args.verb == "list":
        return _list()
    if args.verb == "status":
        return _status(args.home, args.json)
    return _run(args.home, [n.strip() for item in args.only for n in item.split(",") if n.strip()], args.lease_ttl)


def _list() -> int:
    from .registry import BUILTIN, available
    for name, factory in available().items():
        if factory is None:
            print(f"{name:<16} (failed to load: see the warning above)")
            continue
        once = " [once per workspace]" if getattr(factory, "once_per_workspace", False) else ""
        where = "built-in" if name in BUILTIN else "entry point"
        print(f"{name:<16} {getattr(factory, 'description', '') or ''}{once} ({where})")
    return 0


def _run(home: str | None, only: list[str], lease_ttl: float | None) -> int:
    from .host import ServiceHost
    from .registry import UnknownService

    logging.basicConfig(level=logging.INFO, format="[nbjobs %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    try:
        host = ServiceHost(only or None, home=home, lease_ttl=lease_ttl)
    except (UnknownService, ImportError, AttributeError, TypeError, ValueError) as exc:
        print(f"nbjobs services: {exc}", file=sys.stderr)
        return 2
    print(f"nbjobs services: host {host.holder} on {host.home}", flush=True)
    for name, service in host.services.items():
        once = " (once per workspace: runs while this host holds its lease)" if service.once_per_workspace else ""
        print(f"  {name}{once}", flush=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, host.request_stop)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                pass
        await host.run()

    try:
        asyncio.run(main())
    finally:
        print("nbjobs services: stopped", flush=True)
    return 0


def _ago(ms: int | None, now: float) -> str:
    if not ms:
        return "never"
    return f"{now - ms / 1000:.1f}s ago"


def _status(home: str | None, as_json: bool) -> int:
    import os
    from pathlib import Path
    from ..store import Store
    from .host import report

    folder = Path(home if home is not None else (os.environ.get("NBJOBS_HOME") or ".nbjobs"))
    if not (folder / "nbjobs.db").exists():
        print(f"nbjobs services: no workspace at {folder.resolve()}", file=sys.stderr)
        return 1
    store = Store(folder)
    try:
        status = report(store)
    finally:
        store.close()
    if as_json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    hosts, leases = status["hosts"], status["leases"]
    now = time.time()
    print(f"Workspace {store.home}")
    print("Service hosts:" if hosts else "Service hosts: none running")
    for h in hosts:
        alive = "alive" if h["alive"] else "no heartbeat (stopped or died)"
        print(f"  {h['holder']}  pid {h['pid']} on {h['host']}, last heartbeat {_ago(h['beat_time'], now)} ({alive})")
        for name, health in (h["health"].get("services") or {}).items():
            bits = [health.get("state", "?")]
            if "lease" in health:
                bits.append(f"lease {health['lease']}")
            if health.get("last_beat"):
                bits.append(f"last beat {now - health['last_beat']:.1f}s ago")
            if health.get("restarts"):
                bits.append(f"restarts {health['restarts']}")
            if health.get("last_error"):
                bits.append(f"last error: {health['last_error']}")
            print(f"    {name:<14} " + ", ".join(bits))
    print("Leases:" if leases else "Leases: none")
    for lease in leases:
        left = (lease["expires_time"] / 1000) - now
        when = f"expired {-left:.1f}s ago" if left <= 0 else f"expires in {left:.1f}s"
        print(f"  {lease['name']:<14} held by {lease['holder']} (pid {lease['pid']} on {lease['host']}), {when}")
    return 0
