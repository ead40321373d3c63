"""1,000 schedules in one process: how late each scheduled run starts after its slot, and the scheduler's
CPU while idle (goals: p99 < 1 s, idle < 1 % of a core).

    python benchmarks/schedules.py [--jobs 1000] [--seconds 65] [--idle-seconds 20]

Each job has one condition task (no kernel, no process: the run is the scheduler's and the engine's work)
and the schedule `S * * * * ?` with S = i mod 60, so about jobs/60 slots fall in each second. Lateness is
a run's start_time minus its trigger_time (the slot). Idle: the same 1,000 schedules set to fire in 2099;
the host's process CPU time over `--idle-seconds` (the scheduler re-reads the scheduled jobs every second).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _jobs(ws, n: int, expression) -> list[int]:
    task = {"task_key": "c", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}
    return [ws.create_job({"name": f"s{i}", "max_concurrent_runs": 100, "tasks": [task],
                           "schedule": {"quartz_cron_expression": expression(i), "timezone_id": "UTC"}})
            for i in range(n)]


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=65)
    parser.add_argument("--idle-seconds", type=float, default=20)
    args = parser.parse_args(argv)
    from nbjobs.service import Workspace
    from nbjobs.services import ServiceHost
    from nbjobs.services.scheduler import SchedulerService

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "home")
        job_ids = _jobs(ws, args.jobs, lambda i: f"{i % 60} * * * * ?")
        host = ServiceHost([SchedulerService()], workspace=ws).start()
        time.sleep(args.seconds)
        for job_id in job_ids:  # the same schedules, far in the future: the scheduler is idle
            ws.update_job(job_id, {"schedule": {"quartz_cron_expression": "0 0 0 1 1 ? 2099", "timezone_id": "UTC"}})
        time.sleep(3)
        with ws.store.engine.connect() as conn:
            rows = list(conn.exec_driver_sql(
                "SELECT start_time - trigger_time FROM runs WHERE trigger = 'PERIODIC'"))
        late = sorted(r[0] / 1000 for r in rows)
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(args.idle_seconds)
        idle = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        host.stop()
        ws.close()
    p50 = statistics.median(late) if late else float("nan")
    p99 = late[min(len(late) - 1, int(len(late) * 0.99))] if late else float("nan")
    print(f"{args.jobs} schedules, {len(late)} scheduled runs in {args.seconds:.0f} s: lateness p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {late[-1] * 1000 if late else float('nan'):.0f} ms (goal p99 < 1 s)")
    print(f"idle, {args.jobs} schedules: {idle * 100:.2f} % of a core (goal < 1 %)")
    return {"runs": len(late), "p50": p50, "p99": p99, "idle_cpu": idle}


if __name__ == "__main__":
    main(sys.argv[1:])
