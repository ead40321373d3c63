"""Run-job tasks: the child run is started, awaited and its result taken; jobs calling each other in a
loop are refused."""
from __future__ import annotations

import pytest
from databricks.sdk.service.jobs import Run

from nbjobs.service import InvalidParameterValue
from conftest import by_key, write_script

pytestmark = pytest.mark.timeout(120)


@pytest.mark.kernels
def test_run_job_task_starts_the_child_run_waits_and_takes_its_result(workspace, tmp_path):
    write_script(tmp_path / "child.py", """
        import sys
        print("child got", sys.argv[1:])
        if sys.argv[1] == "fail":
            raise SystemExit("child failed on purpose")
    """)
    write_script(tmp_path / "prep.py", """
        from nbjobs import dbutils
        dbutils.jobs.taskValues.set("mode", "ok")
    """)
    child = workspace.create_job({"name": "child", "parameters": [{"name": "mode", "default": "x"}], "tasks": [
        {"task_key": "work", "spark_python_task": {"python_file": str(tmp_path / "child.py"),
                                                   "parameters": ["{{job.parameters.mode}}"]}}]})
    parent = workspace.create_job({"name": "parent", "parameters": [{"name": "suffix", "default": ""}], "tasks": [
        {"task_key": "prep", "spark_python_task": {"python_file": str(tmp_path / "prep.py")}},
        {"task_key": "call", "depends_on": [{"task_key": "prep"}], "run_job_task": {
            "job_id": child, "job_parameters": {"mode": "{{tasks.prep.values.mode}}{{job.parameters.suffix}}"}}}]})
    run = workspace.run_now(parent)
    assert run["state"]["result_state"] == "SUCCESS"
    call = by_key(run)["call"]
    output = workspace.get_run_output(call["run_id"])
    child_run_id = output["run_job_output"]["run_id"]
    child_run = workspace.get_run(child_run_id)
    assert child_run["job_id"] == child and child_run["trigger"] == "RUN_JOB_TASK"
    assert child_run["trigger_info"] == {"run_id": call["run_id"]}
    assert child_run["job_parameters"][0]["value"] == "ok"
    assert "child got ['ok']" in workspace.get_run_output(child_run["tasks"][0]["run_id"])["logs"]
    Run.from_dict(child_run)
    from databricks.sdk.service.jobs import RunOutput
    assert RunOutput.from_dict(output).run_job_output.run_id == child_run_id

    # a failing child run fails the run-job task, naming the child run
    workspace.store.update_job(child, {**workspace.get_job(child)["settings"],
                                       "parameters": [{"name": "mode", "default": "fail"}]})
    parent2 = workspace.create_job({"name": "parent2", "tasks": [
        {"task_key": "call", "run_job_task": {"job_id": child}}]})
    bad = workspace.run_now(parent2)
    call = bad["tasks"][0]
    child_id = workspace.get_run_output(call["run_id"])["run_job_output"]["run_id"]
    assert call["state"]["result_state"] == "FAILED"
    assert call["state"]["state_message"] == (f"Run {child_id} of job {child} ('child') ended FAILED: "
                                              "Task work did not succeed")


@pytest.mark.pure
def test_jobs_calling_each_other_in_a_loop_are_refused(workspace, tmp_path):
    write_script(tmp_path / "noop.py", "print('x')\n")
    a = workspace.create_job({"name": "a", "tasks": [
        {"task_key": "noop", "spark_python_task": {"python_file": str(tmp_path / "noop.py")}}]})
    b = workspace.create_job({"name": "b", "tasks": [{"task_key": "call_a", "run_job_task": {"job_id": a}}]})
    workspace.store.update_job(a, {"name": "a", "tasks": [
        {"task_key": "each", "for_each_task": {"inputs": "[1]", "task": {
            "task_key": "call_b", "run_job_task": {"job_id": b}}}}]})
    with pytest.raises(InvalidParameterValue, match=rf"run_job_task cycle: job {a} \('a'\) → job {b} \('b'\) → "
                                                    rf"job {a} \('a'\)\. Jobs cannot call each other in a loop"):
        workspace.run_now(a)
    assert workspace.list_runs(job_id=a) == []
    missing = workspace.create_job({"name": "calls-nothing", "tasks": [
        {"task_key": "call", "run_job_task": {"job_id": 999}}]})
    run = workspace.run_now(missing)
    assert run["tasks"][0]["state"]["state_message"] == \
        "run_job_task could not start job 999: Job 999 does not exist."
