"""Repair: rerun failed (or named) tasks inside the run, keep the rest; recovery after kill -9."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from databricks.sdk.service.jobs import Run

from nbjobs.cli import main
from nbjobs.service import InvalidParameterValue, InvalidState, Workspace
from conftest import ROOT, by_key, task_states, write_job, write_notebook, write_script

pytestmark = [pytest.mark.timeout(120), pytest.mark.kernels]


@pytest.fixture
def chain(workspace, tmp_path):
    """produce (sets values) -> transform (fails until fixed; reads them) -> publish (notebook); + side."""
    write_script(tmp_path / "produce.py", f"""
        from nbjobs import dbutils
        open({str(tmp_path / 'produced.txt')!r}, "a").write("x")
        dbutils.jobs.taskValues.set("rows", 41)
        dbutils.jobs.taskValues.set("names", ["a", "b"])
    """)
    transform = write_script(tmp_path / "transform.py", """
        import sys
        from nbjobs import dbutils
        rows = dbutils.jobs.taskValues.get("produce", "rows")
        names = dbutils.jobs.taskValues.get("produce", "names")
        print("args", sys.argv[1:], "rows", rows, "names", names)
        raise SystemExit("transform: bad input")
    """)
    write_notebook(tmp_path / "publish.ipynb", """
        total = dbutils.jobs.taskValues.get("transform", "total")
        print("published", total, "mode", dbutils.widgets.get("mode"))
        dbutils.notebook.exit(str(total))
    """)
    write_script(tmp_path / "side.py", "print('side')\n")
    job_id = workspace.create_job({
        "name": "repairable", "parameters": [{"name": "mode", "default": "draft"}], "tasks": [
            {"task_key": "produce", "spark_python_task": {"python_file": str(tmp_path / "produce.py")}},
            {"task_key": "transform", "depends_on": [{"task_key": "produce"}], "spark_python_task": {
                "python_file": str(transform),
                "parameters": ["{{job.repair_count}}", "{{task.execution_count}}", "{{tasks.produce.values.rows}}"]}},
            {"task_key": "publish", "depends_on": [{"task_key": "transform"}],
             "notebook_task": {"notebook_path": str(tmp_path / "publish.ipynb")}},
            {"task_key": "side", "spark_python_task": {"python_file": str(tmp_path / "side.py")}},
        ]})
    return job_id, transform


def fix(transform):
    transform.write_text(transform.read_text().replace(
        'raise SystemExit("transform: bad input")', 'dbutils.jobs.taskValues.set("total", rows + 1)'))


def test_repair_reruns_failed_tasks_and_dependents_reusing_upstream_values(workspace, tmp_path, chain):
    job_id, transform = chain
    run = workspace.run_now(job_id)
    assert task_states(run) == {"produce": "SUCCESS", "transform": "FAILED", "publish": "UPSTREAM_FAILED",
                                "side": "SUCCESS"}
    before = by_key(run)

    fix(transform)  # the fixed script is picked up: the repair uses the job's current files and settings
    repaired = workspace.repair_run(run["run_id"], rerun_all_failed_tasks=True, job_parameters={"mode": "final"})
    Run.from_dict(repaired)
    assert repaired["run_id"] == run["run_id"]
    assert repaired["state"]["result_state"] == "SUCCESS"
    after = by_key(repaired)
    assert after["produce"]["run_id"] == before["produce"]["run_id"]        # kept, not rerun
    assert after["side"]["run_id"] == before["side"]["run_id"]
    assert (tmp_path / "produced.txt").read_text() == "x"
    assert after["transform"]["run_id"] != before["transform"]["run_id"]    # new task run ids
    assert after["publish"]["run_id"] != before["publish"]["run_id"]
    # upstream values of the original run are read by the rerun tasks; references see the repair
    logs = workspace.get_run_output(after["transform"]["run_id"])["logs"]
    assert "args ['1', '2', '41'] rows 41 names ['a', 'b']" in logs          # repair_count 1, execution 2
    output = workspace.get_run_output(after["publish"]["run_id"])
    assert output["notebook_output"]["result"] == "42"
    assert {p["name"]: p["value"] for p in repaired["job_parameters"]} == {"mode": "final"}

    history = repaired["repair_history"]
    assert [h["type"] for h in history] == ["ORIGINAL", "REPAIR"]
    assert history[0]["state"]["result_state"] == "FAILED"
    assert history[1]["state"]["result_state"] == "SUCCESS"
    assert sorted(history[1]["task_run_ids"]) == sorted([after["transform"]["run_id"], after["publish"]["run_id"]])
    assert before["transform"]["run_id"] in history[0]["task_run_ids"]
    # the earlier attempt stays reachable by its id
    old = workspace.get_run(before["transform"]["run_id"])
    assert old["state"]["result_state"] == "FAILED"

    # a second repair needs the latest repair id; a named task reruns with everything after it
    repair_id = history[1]["id"]
    with pytest.raises(InvalidParameterValue, match="The latest repair ID needs to be provided in order to "
                                                    rf"create a new repair: .* latest_repair_id={repair_id}"):
        workspace.repair_run(run["run_id"], rerun_tasks=["produce"])
    with pytest.raises(InvalidParameterValue, match=rf"latest_repair_id 1 is not the latest repair of run "
                                                    rf"{run['run_id']} \(its latest repair is {repair_id}\)"):
        workspace.repair_run(run["run_id"], rerun_tasks=["produce"], latest_repair_id=1)
    third = workspace.repair_run(run["run_id"], rerun_tasks=["produce"], rerun_dependent_tasks=True,
                                 latest_repair_id=repair_id)
    assert third["state"]["result_state"] == "SUCCESS"
    assert (tmp_path / "produced.txt").read_text() == "xx"
    rerun = set(third["repair_history"][2]["task_run_ids"])
    assert {by_key(third)[k]["run_id"] for k in ("produce", "transform", "publish")} == rerun
    assert by_key(third)["side"]["run_id"] == before["side"]["run_id"]


def test_repair_refusals_say_why_and_how(workspace, tmp_path, chain):
    job_id, transform = chain
    write_script(tmp_path / "wait.py", f"""
        import pathlib, time
        while not pathlib.Path({str(tmp_path / 'go')!r}).exists():
            time.sleep(0.05)
    """)
    slow = workspace.create_job({"name": "slow", "tasks": [
        {"task_key": "w", "spark_python_task": {"python_file": str(tmp_path / "wait.py")}}]})
    active = workspace.run_now(slow, wait=False)["run_id"]
    with pytest.raises(InvalidState, match=rf"Run {active} is still (PENDING|RUNNING); wait for it to finish or "
                                           "cancel it before repairing."):
        workspace.repair_run(active, rerun_all_failed_tasks=True)
    (tmp_path / "go").write_text("")
    ok = workspace.wait(active, timeout=60)
    with pytest.raises(InvalidParameterValue, match=rf"Run {active} has no failed task to repair"):
        workspace.repair_run(active, rerun_all_failed_tasks=True)

    run = workspace.run_now(job_id)
    with pytest.raises(InvalidParameterValue, match="Give exactly one of rerun_tasks"):
        workspace.repair_run(run["run_id"])
    with pytest.raises(InvalidParameterValue, match="Give exactly one of rerun_tasks"):
        workspace.repair_run(run["run_id"], rerun_tasks=["side"], rerun_all_failed_tasks=True)
    with pytest.raises(InvalidParameterValue, match="rerun_tasks: rerun_tasks names unknown tasks: 'nope'"):
        workspace.repair_run(run["run_id"], rerun_tasks=["nope"])
    with pytest.raises(InvalidParameterValue, match="job_parameters: the job has no parameter named 'x'"):
        workspace.repair_run(run["run_id"], rerun_all_failed_tasks=True, job_parameters={"x": "1"})
    assert workspace.get_run(run["run_id"])["repair_history"][1:] == []   # nothing was started
    assert ok["state"]["result_state"] == "SUCCESS"


def test_repair_without_waiting_reopens_the_run_before_returning(workspace, tmp_path, chain):
    job_id, transform = chain
    run = workspace.run_now(job_id)
    fix(transform)
    answer = workspace.repair_run(run["run_id"], rerun_all_failed_tasks=True, wait=False)
    assert set(answer) == {"repair_id"}
    assert workspace.get_run(run["run_id"])["state"]["life_cycle_state"] in ("PENDING", "RUNNING")
    done = workspace.wait(run["run_id"], timeout=60)
    assert done["state"]["result_state"] == "SUCCESS"
    assert done["repair_history"][-1]["id"] == answer["repair_id"]


def test_cli_repair_prints_the_table_and_json(workspace, tmp_path, chain, capsys):
    job_id, transform = chain
    run = workspace.run_now(job_id)
    fix(transform)
    home = str(workspace.home)
    code = main(["--home", home, "runs", "repair", str(run["run_id"]), "--rerun-tasks", "transform", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    assert out["state"]["result_state"] == "SUCCESS" and len(out["repair_history"]) == 2
    assert f"Repair {out['repair_history'][1]['id']} of run {run['run_id']}: SUCCESS" in captured.err
    code = main(["--home", home, "runs", "repair", str(run["run_id"]), "--rerun-all-failed-tasks"])
    assert code == 2  # an invalid request
    assert "The latest repair ID needs to be provided" in capsys.readouterr().err


def test_kill_9_of_the_orchestrator_leaves_a_repairable_run(workspace, tmp_path):
    gate = tmp_path / "gate"
    write_script(tmp_path / "first.py", """
        from nbjobs import dbutils
        dbutils.jobs.taskValues.set("batch", "b-17")
        print("first done")
    """)
    write_script(tmp_path / "second.py", f"""
        import os, pathlib, time
        from nbjobs import dbutils
        batch = dbutils.jobs.taskValues.get("first", "batch")
        open({str(tmp_path / 'second.pid')!r}, "w").write(str(os.getpid()))
        while not pathlib.Path({str(gate)!r}).exists():
            time.sleep(0.05)
        print("second saw", batch)
    """)
    write_script(tmp_path / "third.py", "print('third')\n")
    job_file = write_job(tmp_path / "job.yml", {"name": "killed", "tasks": [
        {"task_key": "first", "spark_python_task": {"python_file": "first.py"}},
        {"task_key": "second", "depends_on": [{"task_key": "first"}],
         "spark_python_task": {"python_file": "second.py"}},
        {"task_key": "third", "depends_on": [{"task_key": "second"}],
         "spark_python_task": {"python_file": "third.py"}}]})
    home = tmp_path / "other-home"
    proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "--home", str(home), "run", str(job_file)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = tmp_path / "second.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    gate.write_text("")  # the orphaned script may finish on its own; its result is not recorded

    ws = Workspace(home)  # the next start finds the run of the dead process
    try:
        run = ws.list_runs()[0]
        run = ws.get_run(run["run_id"])
        assert run["state"]["life_cycle_state"] == "INTERNAL_ERROR"
        assert "ended before the run finished" in run["state"]["state_message"]
        states = {t["task_key"]: (t["state"]["life_cycle_state"], t["state"].get("result_state"))
                  for t in run["tasks"]}
        assert states["first"] == ("TERMINATED", "SUCCESS")
        assert states["second"] == ("INTERNAL_ERROR", "FAILED")
        assert ws.store.task_values(run["run_id"]) == {"first": {"batch": "b-17"}}
        assert "first done" in ws.get_run_output(by_key(run)["first"]["run_id"])["logs"]

        repaired = ws.repair_run(run["run_id"], rerun_all_failed_tasks=True)
        assert task_states(repaired) == {"first": "SUCCESS", "second": "SUCCESS", "third": "SUCCESS"}
        assert by_key(repaired)["first"]["run_id"] == by_key(run)["first"]["run_id"]
        assert "second saw b-17" in ws.get_run_output(by_key(repaired)["second"]["run_id"])["logs"]
        Run.from_dict(repaired)
    finally:
        ws.close()


def test_sample_regions_job_fails_on_purpose_and_a_repair_reruns_only_that_region(workspace, tmp_path, capsys):
    job = ROOT / "sample_notebooks" / "regions_job.yml"
    home = str(workspace.home)
    data = str(tmp_path / "warehouse")
    code = main(["--home", home, "run", str(job), "--job-param", "fail_region=Lyon",
                 "--job-param", f"data_dir={data}", "--job-param", "run_date=2026-01-31"])
    assert code == 1
    run = workspace.list_runs()[0]
    run = workspace.get_run(run["run_id"])
    assert task_states(run) == {"list_regions": "SUCCESS", "region_reports": "FAILED", "summary": "UPSTREAM_FAILED"}
    loop = by_key(run)["region_reports"]
    assert loop["for_each_task"]["stats"]["task_run_stats"]["failed_iterations"] == 1
    assert "iteration 1 (Lyon): RuntimeError: deliberate failure for region Lyon" in loop["state"]["state_message"]
    first = workspace.get_run(loop["run_id"])["iterations"]

    capsys.readouterr()
    code = main(["--home", home, "runs", "repair", str(run["run_id"]), "--rerun-all-failed-tasks",
                 "--job-param", "fail_region="])
    assert code == 0, capsys.readouterr().err
    repaired = workspace.get_run(run["run_id"])
    assert task_states(repaired) == {"list_regions": "SUCCESS", "region_reports": "SUCCESS", "summary": "SUCCESS"}
    again = workspace.get_run(by_key(repaired)["region_reports"]["run_id"])["iterations"]
    changed = [i for i, (a, b) in enumerate(zip(first, again)) if a["run_id"] != b["run_id"]]
    assert changed == [1]  # only Lyon ran again
    summary = workspace.get_run_output(by_key(repaired)["summary"]["run_id"])
    assert summary["notebook_output"]["result"] == "4153.00"
    lines = (tmp_path / "warehouse" / "2026-01-31" / "regions" / "summary.csv").read_text().splitlines()
    assert lines[0] == "region,orders,items,revenue,best_restaurant" and len(lines) == 5
