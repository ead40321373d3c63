"""Continuous jobs: one active run at a time, a new run when one ends, exponential backoff after failures
(a real host, real runs), task_retry_mode NEVER, pause; validation and the backoff arithmetic (pure)."""
from __future__ import annotations

import time

import pytest

from nbjobs.services.continuous import backoff_seconds, consecutive_failures
from nbjobs.spec.validate import validate_job_settings
from conftest import wait_for, write_script

TASKS = [{"task_key": "a", "spark_python_task": {"python_file": "a.py"}}]


@pytest.mark.pure
def test_backoff_doubles_up_to_the_cap_and_resets_after_a_success():
    assert [backoff_seconds(n, 10, 600) for n in range(8)] == [0, 10, 20, 40, 80, 160, 320, 600]
    runs = [{"result_state": s} for s in ("FAILED", "INTERNAL_ERROR", "SUCCESS", "FAILED")]
    assert consecutive_failures(runs) == 2 and consecutive_failures(runs[2:]) == 0


@pytest.mark.pure
@pytest.mark.parametrize("extra,path,text", [
    ({"continuous": {"task_retry_mode": "ON_FAILURE"}}, "continuous.task_retry_mode", "not available"),
    ({"continuous": {"task_retry_mode": "ALWAYS"}}, "continuous.task_retry_mode", "not a task retry mode"),
    ({"continuous": {"pause_status": "STOPPED"}}, "continuous.pause_status", "not a pause status"),
    ({"continuous": {}, "max_concurrent_runs": 3}, "max_concurrent_runs", "exactly one active run"),
    ({"continuous": {"maintenance_window": {}}}, "continuous.maintenance_window", "no local equivalent"),
])
def test_validation(extra, path, text):
    problems = validate_job_settings({"name": "j", "tasks": TASKS, **extra})
    assert any(p.path == path and text in p.message for p in problems), problems
    assert validate_job_settings({"name": "j", "tasks": TASKS, "continuous": {"task_retry_mode": "NEVER"}}) == []


@pytest.mark.server
@pytest.mark.timeout(120)
def test_one_active_run_restarts_with_backoff_after_failures_then_pause(tmp_path):
    from nbjobs.service import Workspace
    from nbjobs.services import ServiceHost
    from nbjobs.services.continuous import ContinuousService

    counter = tmp_path / "count.txt"
    script = write_script(tmp_path / "flaky.py", f"""
        import pathlib, sys, time
        path = pathlib.Path({str(counter)!r})
        n = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(n))
        time.sleep(0.3)
        sys.exit(1 if n <= 2 else 0)   # the first two runs fail
    """)
    ws = Workspace(tmp_path / "home")
    job_id = ws.create_job({"name": "forever", "continuous": {"pause_status": "UNPAUSED"},
                            "tasks": [{"task_key": "t", "max_retries": 3,
                                       "spark_python_task": {"python_file": str(script)}}]})
    host = ServiceHost([ContinuousService(interval=0.1, backoff=(1.0, 4.0))], workspace=ws, lease_ttl=1.0,
                       backoff=(0.05, 0.4), stop_timeout=5.0, tick=0.05).start()
    try:
        wait_for(lambda: len([r for r in ws.list_runs(job_id=job_id) if r["state"].get("result_state")]) >= 4,
                 60, "four ended runs")
        ws.update_job(job_id, {"continuous": {"pause_status": "PAUSED"}})
        time.sleep(1.5)
        runs = sorted((ws.get_run(r["run_id"]) for r in ws.list_runs(job_id=job_id)), key=lambda r: r["run_id"])
        for run in runs:
            ws.wait(run["run_id"], timeout=30)
        runs = [ws.get_run(r["run_id"]) for r in runs]
        assert {r["trigger"] for r in runs} == {"CONTINUOUS"}
        assert [r["state"]["result_state"] for r in runs[:4]] == ["FAILED", "FAILED", "SUCCESS", "SUCCESS"]
        assert all(len(r["tasks"]) == 1 and r["tasks"][0]["attempt_number"] == 0 for r in runs)  # NEVER
        gaps = [(b["start_time"] - a["end_time"]) / 1000 for a, b in zip(runs, runs[1:])]
        assert all(g >= 0 for g in gaps)  # never two active runs
        assert 1.0 <= gaps[0] < 3.0 and 2.0 <= gaps[1] < 4.5  # 1 s, then 2 s after two failures
        assert gaps[2] < 1.0  # after a success the next run starts at once
        count = len(runs)
        time.sleep(1.5)
        assert len(ws.list_runs(job_id=job_id)) == count  # paused: no new run
        assert ws.get_job(job_id)["trigger_state"]["pause_status"] == "PAUSED"
    finally:
        host.stop()
        ws.close()
