"""Retries (new task runs, intervals from the attempt start), task and job timeouts (processes killed),
dead kernels, with real kernels and subprocesses."""
from __future__ import annotations

from pathlib import Path

import pytest
from databricks.sdk.service.jobs import Run

from nbjobs._proc import pid_alive as _alive
from conftest import by_key, task_states, wait_for, write_notebook, write_script

pytestmark = [pytest.mark.timeout(120), pytest.mark.kernels]


# -- retries -------------------------------------------------------------------------------------

def test_retries_are_new_task_runs_waiting_for_retry_with_an_interval_from_the_attempt_start(workspace, tmp_path):
    write_script(tmp_path / "flaky.py", """
        import sys
        count = int(sys.argv[1])
        print("execution", count)
        if count < 3:
            raise SystemExit(f"flaky failure on execution {count}")
    """)
    job_id = workspace.create_job({"name": "flaky", "tasks": [
        {"task_key": "flaky", "max_retries": 3, "min_retry_interval_millis": 300,
         "spark_python_task": {"python_file": str(tmp_path / "flaky.py"), "parameters": ["{{task.execution_count}}"]}},
        {"task_key": "never", "max_retries": 2,
         "spark_python_task": {"python_file": str(tmp_path / "flaky.py"), "parameters": ["1"]}},
    ]})
    seen = []

    def on_event(event):
        if event.kind == "task_retry":  # the next attempt exists and waits
            seen.append((event.task_key, event.attempt_number, event.result_state,
                         workspace.get_run(event.task_run_id)["state"]["life_cycle_state"]))
        elif event.kind == "task_start":
            seen.append((event.task_key, event.attempt_number, "start"))

    run = workspace.run_now(job_id, on_event=on_event, concurrency=1)
    Run.from_dict(run)
    flaky = by_key(run)["flaky"]
    assert flaky["state"]["result_state"] == "SUCCESS" and flaky["attempt_number"] == 2
    assert [s for s in seen if s[0] == "flaky"] == [
        ("flaky", 0, "start"), ("flaky", 1, "FAILED", "WAITING_FOR_RETRY"), ("flaky", 1, "start"),
        ("flaky", 2, "FAILED", "WAITING_FOR_RETRY"), ("flaky", 2, "start")]
    attempts = [r for r in workspace.store.task_runs(run["run_id"], latest_only=False) if r["task_key"] == "flaky"]
    assert [(r["attempt_number"], r["execution_count"], r["result_state"]) for r in attempts] == [
        (0, 1, "FAILED"), (1, 2, "FAILED"), (2, 3, "SUCCESS")]
    assert len({r["task_run_id"] for r in attempts}) == 3
    assert {r["original_attempt_run_id"] for r in attempts} == {attempts[0]["task_run_id"]}
    # min_retry_interval_millis is measured from the start of the failed attempt (a lower bound)
    assert all(b["start_time"] - a["start_time"] >= 300 for a, b in zip(attempts, attempts[1:]))
    older = workspace.get_run(attempts[0]["task_run_id"])
    assert older["state"]["result_state"] == "FAILED" and older["attempt_number"] == 0
    assert "flaky failure on execution 1" in workspace.get_run_output(attempts[0]["task_run_id"])["error"]
    # retries exhausted: 1 + max_retries attempts, then the task fails
    never = [r for r in workspace.store.task_runs(run["run_id"], latest_only=False) if r["task_key"] == "never"]
    assert [r["attempt_number"] for r in never] == [0, 1, 2] and by_key(run)["never"]["state"]["result_state"] == "FAILED"


# -- timeouts and dead kernels --------------------------------------------------------------------

def test_task_timeout_kills_the_kernel_and_is_not_retried_without_retry_on_timeout(workspace, tmp_path):
    pid_file = tmp_path / "kernel.pid"
    write_notebook(tmp_path / "hang.ipynb",
                   f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))",
                   "time.sleep(120)")
    write_script(tmp_path / "after.py", "print('after')\n")
    job_id = workspace.create_job({"name": "hangs", "tasks": [
        {"task_key": "hang", "timeout_seconds": 2, "max_retries": 2,
         "notebook_task": {"notebook_path": str(tmp_path / "hang.ipynb")}},
        {"task_key": "after", "depends_on": [{"task_key": "hang"}], "run_if": "ALL_DONE",
         "spark_python_task": {"python_file": str(tmp_path / "after.py")}},
    ]})
    run = workspace.run_now(job_id)
    hang = by_key(run)["hang"]
    assert hang["state"]["result_state"] == "TIMEDOUT" and hang["attempt_number"] == 0
    assert hang["state"]["user_cancelled_or_timedout"] is True
    assert hang["state"]["state_message"] == "Timed out after 2 s (the task's timeout_seconds); its kernel was stopped."
    assert by_key(run)["after"]["state"]["result_state"] == "SUCCESS"
    assert run["state"]["result_state"] == "SUCCESS_WITH_FAILURES"
    assert not _alive(int(pid_file.read_text()))          # the kernel is really gone
    assert Path(hang["run_page_url"].removeprefix("file://")).exists()  # its partial notebook is kept


def test_a_kernel_that_dies_fails_its_attempt_and_the_retry_succeeds(workspace, tmp_path):
    write_notebook(tmp_path / "dies.ipynb", """
        import os, signal
        if dbutils.widgets.get("n") == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        print("second attempt fine")
    """)
    job_id = workspace.create_job({"name": "dies", "tasks": [
        {"task_key": "dies", "max_retries": 1, "notebook_task": {
            "notebook_path": str(tmp_path / "dies.ipynb"), "base_parameters": {"n": "{{task.execution_count}}"}}}]})
    run = workspace.run_now(job_id)
    assert run["state"]["result_state"] == "SUCCESS" and run["tasks"][0]["attempt_number"] == 1
    first = [r for r in workspace.store.task_runs(run["run_id"], latest_only=False)][0]
    assert first["result_state"] == "FAILED"
    assert "the kernel died (it was killed, crashed or ran out of memory) (in cell 1)" in first["error"]


def test_job_timeout_ends_the_whole_run_and_kills_its_processes(workspace, tmp_path):
    write_script(tmp_path / "slow.py", """
        import os, sys, time
        open(sys.argv[1], "w").write(str(os.getpid()))
        time.sleep(120)
    """)
    write_script(tmp_path / "quick.py", "print('quick')\n")
    job_id = workspace.create_job({"name": "slow-job", "timeout_seconds": 1, "tasks": [
        {"task_key": "quick", "spark_python_task": {"python_file": str(tmp_path / "quick.py")}},
        {"task_key": "slow", "spark_python_task": {
            "python_file": str(tmp_path / "slow.py"), "parameters": [str(tmp_path / "slow.pid")]}},
        {"task_key": "next", "depends_on": [{"task_key": "slow"}], "run_if": "ALL_DONE",
         "spark_python_task": {"python_file": str(tmp_path / "quick.py")}},
    ]})
    run = workspace.run_now(job_id)
    assert run["state"]["result_state"] == "TIMEDOUT"
    assert run["state"]["state_message"] == "Timed out: the run exceeded the job's timeout_seconds (1 s)."
    assert task_states(run) == {"quick": "SUCCESS", "slow": "TIMEDOUT", "next": "CANCELED"}
    assert not _alive(int((tmp_path / "slow.pid").read_text()))
    Run.from_dict(run)


def test_a_job_timeout_set_while_a_run_is_active_applies_to_it(workspace, tmp_path):
    write_script(tmp_path / "slow.py", "import time\ntime.sleep(120)\n")
    job_id = workspace.create_job({"name": "later-timeout", "tasks": [
        {"task_key": "slow", "spark_python_task": {"python_file": str(tmp_path / "slow.py")}}]})
    run_id = workspace.run_now(job_id, wait=False)["run_id"]
    wait_for(lambda: task_states(workspace.get_run(run_id)).get("slow") == "RUNNING")
    workspace.update_job(job_id, {"timeout_seconds": 1})  # the reference: a change applies to active runs
    run = workspace.wait(run_id, timeout=60)
    assert run["state"]["result_state"] == "TIMEDOUT"
    assert run["state"]["state_message"] == "Timed out: the run exceeded the job's timeout_seconds (1 s)."


def test_a_submitted_run_times_out_on_its_own_timeout(workspace, tmp_path):
    write_script(tmp_path / "slow.py", "import time\ntime.sleep(120)\n")
    run_id = workspace.submit_run({"run_name": "one-time", "timeout_seconds": 1, "tasks": [
        {"task_key": "slow", "spark_python_task": {"python_file": str(tmp_path / "slow.py")}}]})["run_id"]
    run = workspace.wait(run_id, timeout=60)
    assert run["state"]["result_state"] == "TIMEDOUT"
    assert task_states(run) == {"slow": "TIMEDOUT"}
