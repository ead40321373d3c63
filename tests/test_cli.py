"""The `nbjobs` command: exit codes, JSON shapes, messages."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from databricks.sdk.service.jobs import Job, Run, RunOutput

from nbjobs.cli import main
from conftest import ROOT, write_job, write_notebook, write_script

pytestmark = pytest.mark.timeout(240)


def cli(capsys, *args, home):
    code = main(["--home", str(home), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def job_file(tmp_path):
    write_script(tmp_path / "src" / "emit.py", """
        import sys
        from nbjobs import dbutils
        print("emit", sys.argv[1:])
        dbutils.jobs.taskValues.set("count", 3)
    """)
    write_notebook(tmp_path / "src" / "show.ipynb",
                   "print('day', dbutils.widgets.get('day'), dbutils.jobs.taskValues.get('emit', 'count'))",
                   "dbutils.notebook.exit('shown')")
    return write_job(tmp_path / "jobs" / "job.yml", {
        "name": "cli-job",
        "tags": {"team": "data", "nightly": ""},
        "parameters": [{"name": "day", "default": "{{job.trigger.time.iso_date}}"}],
        "tasks": [
            {"task_key": "emit", "spark_python_task": {"python_file": "../src/emit.py",
                                                       "parameters": ["{{job.parameters.day}}"]}},
            {"task_key": "show", "depends_on": [{"task_key": "emit"}],
             "notebook_task": {"notebook_path": "../src/show"}},  # extension resolved
        ],
    })


@pytest.mark.pure
def test_validate_ok(capsys, tmp_path, job_file):
    code, out, _ = cli(capsys, "validate", str(job_file), home=tmp_path / "h")
    assert code == 0
    assert "OK: job 'cli-job' (2 tasks) is valid." in out


@pytest.mark.pure
def test_validate_reports_every_problem_with_exit_code_2(capsys, tmp_path):
    path = write_job(tmp_path / "bad.yml", {"name": "bad", "tasks": [
        {"task_key": "a", "depends_on": [{"task_key": "c"}], "notebook_task": {"notebook_path": "missing.ipynb"}},
        {"task_key": "b", "run_if": "SOMETIMES", "depends_on": [{"task_key": "a", "outcome": "true"}],
         "spark_python_task": {"python_file": "nope.py", "parameters": ["{{job.naem}}"]}},
        {"task_key": "c", "depends_on": [{"task_key": "a"}],
         "condition_task": {"op": "BIGGER", "left": "1", "right": "2"}},
    ]})
    code, out, err = cli(capsys, "validate", str(path), home=tmp_path / "h")
    assert code == 2 and out == ""
    assert "Invalid job definition" in err
    for expected in ["a -> c -> a", "missing.ipynb", "nope.py", "SOMETIMES", "BIGGER", "{{job.naem}}",
                     "outcome"]:
        assert expected in err, expected
    assert "Traceback" not in err


@pytest.mark.kernels
def test_run_json_is_a_runs_get_document(capsys, tmp_path, job_file):
    code, out, err = cli(capsys, "run", str(job_file), "--json", "--job-param", "day=2026-01-31",
                         home=tmp_path / "h")
    assert code == 0, err
    run = json.loads(out)
    parsed = Run.from_dict(run)  # the official SDK reads it
    assert parsed.state.result_state.value == "SUCCESS"
    assert [t.task_key for t in parsed.tasks] == ["emit", "show"]
    assert run["job_parameters"] == [{"name": "day", "default": "{{job.trigger.time.iso_date}}",
                                      "value": "2026-01-31"}]
    assert run["start_time"] > 1_700_000_000_000 and run["end_time"] >= run["start_time"]  # ms
    assert all(t["state"]["life_cycle_state"] == "TERMINATED" for t in run["tasks"])
    # progress went to stderr, the table too (stdout is pure JSON)
    assert "emit" in err and "RUNNING" in err and "SUCCESS" in err

    show = next(t for t in run["tasks"] if t["task_key"] == "show")
    code, out, _ = cli(capsys, "runs", "get-output", str(show["run_id"]), home=tmp_path / "h")
    output = json.loads(out)
    RunOutput.from_dict(output)
    assert output["notebook_output"]["result"] == "shown"
    emit = next(t for t in run["tasks"] if t["task_key"] == "emit")
    code, out, _ = cli(capsys, "runs", "get-output", str(emit["run_id"]), home=tmp_path / "h")
    assert "emit ['2026-01-31']" in json.loads(out)["logs"]


@pytest.mark.kernels
def test_run_updates_the_job_with_the_same_name(capsys, tmp_path, job_file):
    home = tmp_path / "h"
    cli(capsys, "run", str(job_file), home=home)
    code, _, err = cli(capsys, "run", str(job_file), home=home)
    assert code == 0 and "Updated job 1 'cli-job'" in err
    code, out, _ = cli(capsys, "jobs", "list", "--output", "json", home=home)
    assert [j["job_id"] for j in json.loads(out)["jobs"]] == [1]
    code, out, _ = cli(capsys, "runs", "list", "--output", "json", home=home)
    assert [r["run_id"] for r in json.loads(out)["runs"]] == sorted(
        (r["run_id"] for r in json.loads(out)["runs"]), reverse=True)  # newest first
    assert len(json.loads(out)["runs"]) == 2


@pytest.mark.kernels
def test_failed_run_exits_1_and_success_with_failures_exits_0(capsys, tmp_path):
    write_script(tmp_path / "bad.py", "raise ValueError('bad data')\n")
    write_script(tmp_path / "ok.py", "print('ok')\n")
    failing = write_job(tmp_path / "f.json", {"name": "f", "tasks": [
        {"task_key": "bad", "spark_python_task": {"python_file": "bad.py"}}]})
    code, _, err = cli(capsys, "run", str(failing), home=tmp_path / "h")
    assert code == 1
    assert "bad FAILED" in err and "ValueError: bad data" in err
    handled = write_job(tmp_path / "g.json", {"name": "g", "tasks": [
        {"task_key": "bad", "spark_python_task": {"python_file": "bad.py"}},
        {"task_key": "cleanup", "run_if": "ALL_DONE", "depends_on": [{"task_key": "bad"}],
         "spark_python_task": {"python_file": "ok.py"}}]})
    code, out, _ = cli(capsys, "run", str(handled), home=tmp_path / "h")
    assert code == 0 and "SUCCESS_WITH_FAILURES" in out


@pytest.mark.kernels
def test_jobs_verbs(capsys, tmp_path, job_file):
    home = tmp_path / "h"
    body = tmp_path / "jobs" / "body.json"
    body.write_text(json.dumps({"name": "from-json", "tags": {"team": "ml"}, "max_concurrent_runs": 3,
                                "email_notifications": {"on_failure": ["me@example.com"]},
                                "tasks": [{"task_key": "emit", "spark_python_task": {
                                    "python_file": "../src/emit.py", "parameters": ["x"]},
                                    "libraries": [{"pypi": {"package": "requests"}}]}]}))
    code, out, _ = cli(capsys, "jobs", "create", "--json", str(body), home=home)
    assert code == 0
    job_id = json.loads(out)["job_id"]
    cli(capsys, "run", str(job_file), home=home)  # a second job, tagged team:data

    code, out, _ = cli(capsys, "jobs", "get", str(job_id), home=home)
    job = json.loads(out)
    Job.from_dict(job)
    # fields nbjobs does not use are kept and echoed back
    assert job["settings"]["email_notifications"] == {"on_failure": ["me@example.com"]}
    assert job["settings"]["tasks"][0]["libraries"] == [{"pypi": {"package": "requests"}}]
    assert job["settings"]["tasks"][0]["spark_python_task"]["python_file"] == str(tmp_path / "src" / "emit.py")

    code, out, _ = cli(capsys, "jobs", "list", "--tag", "team=ml", "--output", "json", home=home)
    assert [j["settings"]["name"] for j in json.loads(out)["jobs"]] == ["from-json"]
    code, out, _ = cli(capsys, "jobs", "list", "--tag", "nightly", "--output", "json", home=home)
    assert [j["settings"]["name"] for j in json.loads(out)["jobs"]] == ["cli-job"]
    code, out, _ = cli(capsys, "jobs", "list", "--tag", "team", home=home)
    assert "from-json" in out and "cli-job" in out  # the text table

    code, out, err = cli(capsys, "jobs", "run-now", str(job_id), "--json", home=home)
    assert code == 0 and json.loads(out)["state"]["result_state"] == "SUCCESS"
    code, out, _ = cli(capsys, "runs", "list", "--job-id", str(job_id), "--output", "json", home=home)
    assert len(json.loads(out)["runs"]) == 1

    code, _, err = cli(capsys, "jobs", "delete", str(job_id), home=home)
    assert code == 0
    code, _, err = cli(capsys, "jobs", "get", str(job_id), home=home)
    assert code == 1 and f"Job {job_id} does not exist." in err


@pytest.mark.kernels
def test_clear_errors_for_bad_input(capsys, tmp_path, job_file):
    home = tmp_path / "h"
    code, _, err = cli(capsys, "run", str(job_file), "--job-param", "day", home=home)
    assert code == 2 and "--job-param 'day': expected NAME=VALUE" in err
    code, _, err = cli(capsys, "run", str(job_file), "--job-param", "dya=1", home=home)
    assert code == 2 and "no parameter named 'dya'" in err and "Defined parameters: day" in err
    code, _, err = cli(capsys, "runs", "get", "999", home=home)
    assert code == 1 and "Run 999 does not exist." in err
    code, _, err = cli(capsys, "validate", str(tmp_path / "nope.yml"), home=home)
    assert code == 2 and "nope.yml" in err
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("{not json")
    code, _, err = cli(capsys, "jobs", "create", "--json", str(bad_json), home=home)
    assert code == 2 and "broken.json" in err
    code, out, _ = cli(capsys, "run", str(job_file), "--json", home=home)
    run = json.loads(out)
    code, _, err = cli(capsys, "runs", "get-output", str(run["run_id"]), home=home)
    assert code == 2 and "Retrieving the output of runs with multiple tasks is not supported" in err
    for text in (err,):
        assert "Traceback" not in text


@pytest.mark.kernels
def test_the_installed_entry_point_and_nbjobs_home(tmp_path, job_file):
    env = {**os.environ, "NBJOBS_HOME": str(tmp_path / "envhome")}
    done = subprocess.run([sys.executable, "-m", "nbjobs", "run", str(job_file)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "envhome" / "nbjobs.db").exists()
    assert "show" in done.stdout and "notebook.ipynb" in done.stdout  # final table with executed paths
    done = subprocess.run([sys.executable, "-m", "nbjobs", "validate", str(job_file)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0


@pytest.mark.kernels
def test_sample_job_runs_to_success(capsys, tmp_path):
    code, out, err = cli(capsys, "run", str(ROOT / "sample_notebooks" / "restaurant_job.yml"), "--json",
                         "--job-param", f"data_dir={tmp_path / 'warehouse'}", home=tmp_path / "h")
    assert code == 0, err
    run = json.loads(out)
    states = {t["task_key"]: t["state"]["result_state"] for t in run["tasks"]}
    assert states == {"ingest": "SUCCESS", "silver": "SUCCESS", "gold": "SUCCESS", "validate": "SUCCESS",
                      "check_quality": "SUCCESS", "publish": "SUCCESS", "quarantine": "EXCLUDED",
                      "cleanup": "SUCCESS", "alert": "EXCLUDED"}


@pytest.mark.kernels
def test_ctrl_c_cancels_the_run_and_stops_its_tasks(tmp_path):
    """The local run executes on the workspace's engine; Ctrl-C cancels it (as against a server)."""
    import signal
    import time

    from nbjobs.service import Workspace
    pid_file = tmp_path / "script.pid"
    write_script(tmp_path / "long.py", f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(120)
    """)
    job_file = write_job(tmp_path / "job.yml", {"name": "interrupted", "tasks": [
        {"task_key": "long", "spark_python_task": {"python_file": "long.py"}}]})
    home = tmp_path / "h"
    proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "--home", str(home), "run", str(job_file)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Interrupted: the run was canceled." in err and "Traceback" not in err
    script_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(script_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the task's script is still running")
    with Workspace(home) as ws:
        run = ws.list_runs()[0]
        assert run["state"]["result_state"] == "CANCELED"
