"""Cancel: a run here or in another process, one task run, every run of a job; delete."""
from __future__ import annotations

import subprocess
import sys

import pytest
from databricks.sdk.service.jobs import Run

from nbjobs.cli import main
from nbjobs.service import InvalidParameterValue, InvalidState, ResourceDoesNotExist
from nbjobs._proc import pid_alive as _alive
from conftest import wait_for, ROOT, task_states, write_job, write_notebook, write_script

pytestmark = [pytest.mark.timeout(120), pytest.mark.kernels]




def test_cancel_mid_run_kills_the_kernel_skips_dependents_and_runs_all_done_cleanup(workspace, tmp_path):
    pid_file = tmp_path / "kernel.pid"
    write_notebook(tmp_path / "long.ipynb",
                   f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))", "time.sleep(120)")
    write_script(tmp_path / "ok.py", "print('ran')\n")
    job_id = workspace.create_job({"name": "to-cancel", "tasks": [
        {"task_key": "long", "notebook_task": {"notebook_path": str(tmp_path / "long.ipynb")}},
        {"task_key": "next", "depends_on": [{"task_key": "long"}],
         "spark_python_task": {"python_file": str(tmp_path / "ok.py")}},
        {"task_key": "cleanup", "depends_on": [{"task_key": "next"}], "run_if": "ALL_DONE",
         "spark_python_task": {"python_file": str(tmp_path / "ok.py")}},
        {"task_key": "on_failure", "depends_on": [{"task_key": "long"}], "run_if": "AT_LEAST_ONE_FAILED",
         "spark_python_task": {"python_file": str(tmp_path / "ok.py")}},
    ]})
    started = workspace.run_now(job_id, wait=False)
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30.0, what="the kernel to start")
    workspace.cancel_run(started["run_id"])
    run = workspace.wait(started["run_id"], timeout=60)
    assert run["state"]["result_state"] == "CANCELED"
    assert run["state"]["state_message"] == "Canceled by request."
    assert task_states(run) == {"long": "CANCELED", "next": "UPSTREAM_CANCELED", "cleanup": "SUCCESS",
                                "on_failure": "EXCLUDED"}
    assert run["tasks"][0]["state"]["state_message"] == "Canceled: the run was canceled by request."
    assert not _alive(int(pid_file.read_text()))
    Run.from_dict(run)
    workspace.cancel_run(started["run_id"])  # canceling a finished run does nothing
    assert workspace.get_run(started["run_id"])["state"]["result_state"] == "CANCELED"


def test_cancel_reaches_a_run_executing_in_another_process(workspace, tmp_path):
    pid_file = tmp_path / "script.pid"
    write_script(tmp_path / "long.py", f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(120)
    """)
    write_script(tmp_path / "cleanup.py", "print('cleaned up')\n")
    job_file = write_job(tmp_path / "job.yml", {"name": "elsewhere", "tasks": [
        {"task_key": "long", "spark_python_task": {"python_file": "long.py"}},
        {"task_key": "cleanup", "depends_on": [{"task_key": "long"}], "run_if": "ALL_DONE",
         "spark_python_task": {"python_file": "cleanup.py"}}]})
    proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "--home", str(workspace.home), "run", str(job_file)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30.0, what="the script to start")
        run_id = workspace.list_runs(active_only=True)[0]["run_id"]
        assert main(["--home", str(workspace.home), "runs", "cancel", str(run_id)]) == 0
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    run = workspace.get_run(run_id)
    assert run["state"]["result_state"] == "CANCELED"
    assert task_states(run) == {"long": "CANCELED", "cleanup": "SUCCESS"}
    assert not _alive(int(pid_file.read_text()))
    assert "CANCELED" in out


def test_cancel_one_task_run_lets_the_rest_of_the_run_go_on(workspace, tmp_path):
    write_script(tmp_path / "long.py", "import time; print('up', flush=True); time.sleep(120)\n")
    write_script(tmp_path / "short.py", "import time; time.sleep(0.5); print('short')\n")
    job_id = workspace.create_job({"name": "one-task", "tasks": [
        {"task_key": "long", "spark_python_task": {"python_file": str(tmp_path / "long.py")}},
        {"task_key": "after_long", "depends_on": [{"task_key": "long"}],
         "spark_python_task": {"python_file": str(tmp_path / "short.py")}},
        {"task_key": "short", "spark_python_task": {"python_file": str(tmp_path / "short.py")}},
    ]})
    started = workspace.run_now(job_id, wait=False, concurrency=2)

    def long_running():
        rows = {r["task_key"]: r for r in workspace.task_runs(started["run_id"])}
        return rows["long"]["task_run_id"] if rows["long"]["life_cycle_state"] == "RUNNING" else None
    task_run_id = wait_for(long_running, 30.0, what="task 'long' to run")
    workspace.cancel_run(task_run_id)
    run = workspace.wait(started["run_id"], timeout=60)
    assert task_states(run) == {"long": "CANCELED", "after_long": "UPSTREAM_CANCELED", "short": "SUCCESS"}
    assert run["tasks"][0]["state"]["state_message"] == f"Canceled: task run {task_run_id} was canceled by request."
    assert run["state"]["result_state"] == "CANCELED"  # a leaf was canceled, none failed


def test_cancel_all_runs_of_a_job_running_and_queued(workspace, tmp_path):
    write_script(tmp_path / "long.py", "import time; time.sleep(120)\n")
    job_id = workspace.create_job({"name": "many", "max_concurrent_runs": 1, "tasks": [
        {"task_key": "long", "spark_python_task": {"python_file": str(tmp_path / "long.py")}}]})
    first = workspace.run_now(job_id, wait=False)["run_id"]
    second = workspace.run_now(job_id, wait=False)["run_id"]
    assert workspace.get_run(second)["state"]["life_cycle_state"] == "QUEUED"
    wait_for(lambda: workspace.get_run(first)["state"]["life_cycle_state"] == "RUNNING", 30.0, what="the first run")
    assert main(["--home", str(workspace.home), "runs", "cancel-all", "--job-id", str(job_id)]) == 0
    runs = [workspace.wait(r, timeout=60) for r in (first, second)]
    assert [r["state"]["result_state"] for r in runs] == ["CANCELED", "CANCELED"]
    assert runs[1]["state"]["state_message"] == "Canceled by request while queued."
    assert task_states(runs[1]) == {"long": "CANCELED"}
    with pytest.raises(InvalidParameterValue, match="give job_id .* or all_queued_runs=true"):
        workspace.cancel_all_runs()
    with pytest.raises(ResourceDoesNotExist, match="Run 999999 does not exist."):
        workspace.cancel_run(999999)


def test_delete_run_refuses_an_active_run_and_removes_a_finished_one(workspace, tmp_path):
    write_script(tmp_path / "wait.py", f"""
        import pathlib, time
        while not pathlib.Path({str(tmp_path / 'go')!r}).exists():
            time.sleep(0.05)
    """)
    job_id = workspace.create_job({"name": "del", "tasks": [
        {"task_key": "w", "spark_python_task": {"python_file": str(tmp_path / "wait.py")}}]})
    run_id = workspace.run_now(job_id, wait=False)["run_id"]
    with pytest.raises(InvalidState, match=rf"Run {run_id} is (PENDING|RUNNING); cancel it \(nbjobs runs cancel "
                                           rf"{run_id}\) and wait for it to end before deleting it."):
        workspace.delete_run(run_id)
    (tmp_path / "go").write_text("")
    assert workspace.wait(run_id, timeout=60)["state"]["result_state"] == "SUCCESS"
    folder = workspace.store.runs_dir / str(run_id)
    assert folder.exists()
    workspace.delete_run(run_id)
    assert not folder.exists()
    with pytest.raises(ResourceDoesNotExist):
        workspace.get_run(run_id)
