"""The scheduler service for real: a host firing a short schedule (runs PERIODIC, trigger time = the slot,
max_concurrent_runs applying), pause and resume through jobs/update, and two `nbjobs services run`
processes on one workspace (one killed -9 midway) starting each slot exactly once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from nbjobs.cli import main
from nbjobs.service import Workspace
from nbjobs.services import ServiceHost
from nbjobs.services.scheduler import SchedulerService
from nbjobs.store import Store
from conftest import ROOT, stop_process, wait_for, write_script

pytestmark = [pytest.mark.timeout(180), pytest.mark.server]

FAST = dict(lease_ttl=1.0, backoff=(0.05, 0.4), stop_timeout=5.0, tick=0.05)
EVERY_10S = "*/10 * * * * ?"


def _job(tmp_path, name: str, **extra) -> dict:
    script = write_script(tmp_path / "echo.py", """
        import sys
        print("slot", sys.argv[1])
    """)
    return {"name": name, "parameters": [{"name": "slot", "default": "{{job.trigger.time.iso_datetime}}"}],
            "tasks": [{"task_key": "echo", "spark_python_task": {"python_file": str(script),
                                                                   "parameters": ["{{job.parameters.slot}}"]}}],
            **extra}


def _scheduled_runs(ws: Workspace, job_id: int) -> list[dict]:
    return [r for r in ws.list_runs(job_id=job_id) if r["trigger"] == "PERIODIC"]


def test_a_host_fires_a_short_schedule_then_pause_and_resume(tmp_path, capsys):
    home = tmp_path / "home"
    ws = Workspace(home)
    job_id = ws.create_job(_job(tmp_path, "every10", schedule={"quartz_cron_expression": EVERY_10S,
                                                                "timezone_id": "Europe/Paris"}))
    host = ServiceHost([SchedulerService(interval=0.2)], workspace=ws, **FAST).start()
    try:
        runs = wait_for(lambda: len(_scheduled_runs(ws, job_id)) >= 2 and _scheduled_runs(ws, job_id), 40,
                        "two scheduled runs")
        for run in runs[:2]:
            row = ws.store.get_run(run["run_id"])
            assert row["trigger_time"] % 10_000 == 0  # the slot, not when the run started
            assert 0 <= row["start_time"] - row["trigger_time"] < 1_500
        ended = ws.wait(runs[-1]["run_id"], timeout=60)
        assert ended["state"]["result_state"] == "SUCCESS"
        slot_param = next(p["value"] for p in ended["job_parameters"] if p["name"] == "slot")
        assert slot_param.endswith("0.000Z")  # {{job.trigger.time.iso_datetime}}: the slot's time
        state = ws.get_job(job_id)["trigger_state"]
        assert state["pause_status"] == "UNPAUSED" and state["recent_slots"][0]["status"] == "STARTED"

        assert main(["--home", str(home), "jobs", "pause", str(job_id)]) == 0
        paused_at = len(_scheduled_runs(ws, job_id))
        time.sleep(11)  # a slot passes while paused
        assert len(_scheduled_runs(ws, job_id)) == paused_at
        assert ws.get_job(job_id)["trigger_state"] == {"pause_status": "PAUSED",
                                                       "recent_slots": ws.get_job(job_id)["trigger_state"]["recent_slots"]}
        assert main(["--home", str(home), "jobs", "resume", str(job_id)]) == 0
        wait_for(lambda: len(_scheduled_runs(ws, job_id)) > paused_at, 20, "a run after resume")
        assert all(s["status"] == "STARTED" for s in ws.get_job(job_id)["trigger_state"]["recent_slots"])
        capsys.readouterr()
        assert main(["--home", str(home), "jobs", "next-runs", str(job_id), "--count", "2"]) == 0
        lines = capsys.readouterr().out.split()
        assert len(lines) == 2 and all(line.endswith(("+01:00", "+02:00")) for line in lines)
    finally:
        host.stop()
        ws.close()


def test_max_concurrent_runs_applies_to_scheduled_runs(tmp_path):
    slow = write_script(tmp_path / "slow.py", "import time\ntime.sleep(25)\n")
    ws = Workspace(tmp_path / "home")
    job_id = ws.create_job({"name": "slow", "max_concurrent_runs": 1,
                            "schedule": {"quartz_cron_expression": EVERY_10S, "timezone_id": "UTC"},
                            "tasks": [{"task_key": "s", "spark_python_task": {"python_file": str(slow)}}]})
    host = ServiceHost([SchedulerService(interval=0.2)], workspace=ws, **FAST).start()
    try:
        runs = wait_for(lambda: len(_scheduled_runs(ws, job_id)) >= 2 and _scheduled_runs(ws, job_id), 40,
                        "two scheduled runs")
        newest = ws.get_run(max(r["run_id"] for r in runs[:2]))
        assert newest["state"]["life_cycle_state"] == "QUEUED"  # the queue is on by default (Jobs API 2.2)
        ws.update_job(job_id, {"queue": {"enabled": False}})
        third = wait_for(lambda: len(_scheduled_runs(ws, job_id)) >= 3 and max(
            r["run_id"] for r in _scheduled_runs(ws, job_id)), 20, "a third scheduled run")
        assert ws.get_run(third)["state"]["result_state"] == "MAXIMUM_CONCURRENT_RUNS_REACHED"
    finally:
        host.stop()
        ws.close()


def test_two_service_processes_start_each_slot_once_also_across_a_kill_9(tmp_path):
    home = tmp_path / "home"
    ws = Workspace(home)
    job_ids = [ws.create_job(_job(tmp_path, f"j{i}", schedule={"quartz_cron_expression": EVERY_10S,
                                                                "timezone_id": "UTC"})) for i in range(3)]
    ws.close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               NBJOBS_SCHEDULER_INTERVAL="0.2")
    command = [sys.executable, "-m", "nbjobs", "--home", str(home), "services", "run", "--only", "scheduler",
               "--lease-ttl", "1.5"]
    logs = [open(tmp_path / f"host{i}.log", "w") for i in range(2)]
    procs = [subprocess.Popen(command, env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=log)
             for log in logs]
    store = Store(home)
    try:
        def slots():
            with store.engine.connect() as conn:
                return list(conn.exec_driver_sql("SELECT job_id, slot_time, status, holder FROM trigger_slots"))
        wait_for(lambda: len({s[1] for s in slots()}) >= 2, 40, "two slots")
        holder = store.leases()[0]["pid"]
        os.kill(holder, signal.SIGKILL)
        next(p for p in procs if p.pid == holder).wait(10)
        before = len({s[1] for s in slots()})
        wait_for(lambda: len({s[1] for s in slots()}) >= before + 2, 40, "two more slots after the takeover")
        assert store.leases()[0]["pid"] != holder

        with store.engine.connect() as conn:
            runs = list(conn.exec_driver_sql("SELECT job_id, trigger_time FROM runs WHERE trigger = 'PERIODIC'"))
        counts = Counter(runs)
        assert counts and max(counts.values()) == 1, counts  # no slot started two runs
        started = {(j, s) for j, s, status, _ in slots() if status == "STARTED"}
        assert started == set(counts)
        assert {j for j, _ in counts} == set(job_ids)
        assert len({h for *_, h in slots()}) == 2  # both processes held the scheduler in turn
    finally:
        store.close()
        for proc in procs:
            stop_process(proc, signal.SIGINT)
        for log in logs:
            log.close()


def test_a_restarted_scheduler_records_the_missed_slot_and_does_not_backfill_it(tmp_path):
    ws = Workspace(tmp_path / "home")
    job_id = ws.create_job(_job(tmp_path, "restart", schedule={"quartz_cron_expression": EVERY_10S,
                                                               "timezone_id": "UTC"}))
    host = ServiceHost([SchedulerService(interval=0.2, grace=1)], workspace=ws, **FAST).start()
    try:
        wait_for(lambda: _scheduled_runs(ws, job_id), 20, "a scheduled run")
    finally:
        host.stop()
    time.sleep(12)  # at least one slot passes with no scheduler
    host = ServiceHost([SchedulerService(interval=0.2, grace=1)], workspace=ws, **FAST).start()
    try:
        slots = wait_for(lambda: [s for s in ws.get_job(job_id)["trigger_state"]["recent_slots"]
                                  if s["status"] == "MISSED"], 10, "a MISSED slot")
        assert "not backfilled" in slots[0]["message"] and slots[0]["run_id"] is None
        before = len(_scheduled_runs(ws, job_id))
        assert before == 1  # the missed slot started nothing
        wait_for(lambda: len(_scheduled_runs(ws, job_id)) == 2, 15, "the next slot's run")
        missed = {s["slot_time"] for s in ws.get_job(job_id)["trigger_state"]["recent_slots"]
                  if s["status"] == "MISSED"}
        started = {ws.store.get_run(r["run_id"])["trigger_time"] for r in _scheduled_runs(ws, job_id)}
        assert missed and not missed & started
        assert host.health()["services"]["scheduler"]["missed_slots"] >= 1
    finally:
        host.stop()
        ws.close()
