"""For-each, retries, timeouts, dead kernels and run-job tasks, with real kernels and subprocesses."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from databricks.sdk.service.jobs import Run

from nbjobs.service import InvalidParameterValue
from nbjobs._proc import pid_alive as _alive
from conftest import task_states, wait_for, write_notebook, write_script

pytestmark = pytest.mark.timeout(120)


def by_key(run: dict) -> dict[str, dict]:
    return {t["task_key"]: t for t in run["tasks"]}


def spans(path: Path) -> list[list]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def most_at_once(items: list[list]) -> int:
    """The largest number of [name, start, end] spans overlapping at one moment."""
    return max(sum(1 for _, s, e in items if s <= t < e) for _, t, _ in items)


# -- for-each ------------------------------------------------------------------------------------

def test_for_each_over_a_task_value_bounds_concurrency_and_a_repair_reruns_only_failed_iterations(
        workspace, tmp_path):
    log = tmp_path / "spans.jsonl"
    write_script(tmp_path / "prep.py", """
        from nbjobs import dbutils
        dbutils.jobs.taskValues.set("regions", ["north", "south", "east", "west", "centre"])
    """)
    item = write_script(tmp_path / "item.py", f"""
        import json, sys, time
        region = sys.argv[1]
        start = time.time(); time.sleep(0.5)
        with open({str(log)!r}, "a") as fh:
            fh.write(json.dumps([region, start, time.time()]) + "\\n")
        print("report for", region)
        if region in ("east", "centre"):
            raise SystemExit(f"no data for {{region}}")
    """)
    write_script(tmp_path / "summary.py", "print('summary')\n")
    job_id = workspace.create_job({"name": "regions", "tasks": [
        {"task_key": "prep", "spark_python_task": {"python_file": str(tmp_path / "prep.py")}},
        {"task_key": "per_region", "depends_on": [{"task_key": "prep"}], "for_each_task": {
            "inputs": "{{tasks.prep.values.regions}}", "concurrency": 2,
            "task": {"task_key": "region_report", "spark_python_task": {
                "python_file": str(item), "parameters": ["{{input}}"]}}}},
        {"task_key": "summary", "depends_on": [{"task_key": "per_region"}],
         "spark_python_task": {"python_file": str(tmp_path / "summary.py")}},
    ]})
    events = []
    run = workspace.run_now(job_id, on_event=events.append)

    assert task_states(run) == {"prep": "SUCCESS", "per_region": "FAILED", "summary": "UPSTREAM_FAILED"}
    assert most_at_once(spans(log)) == 2        # iterations overlapped, and never more than concurrency
    loop = by_key(run)["per_region"]
    assert loop["for_each_task"]["stats"]["task_run_stats"] == {
        "total_iterations": 5, "scheduled_iterations": 0, "active_iterations": 0, "completed_iterations": 5,
        "succeeded_iterations": 3, "failed_iterations": 2}
    assert loop["for_each_task"]["stats"]["error_message_stats"][0]["count"] == 1
    assert loop["state"]["state_message"].startswith("2 of 5 iterations did not succeed; iteration 2 (east): "
                                                     "item.py exited with code 1: no data for east")
    Run.from_dict(run)

    # runs/get on the for-each task run lists its iterations, each its own task run with its own logs
    first = workspace.get_run(loop["run_id"])
    Run.from_dict(first)
    assert [t["task_key"] for t in first["tasks"]] == ["per_region"]
    iterations = first["iterations"]
    assert [i["state"]["result_state"] for i in iterations] == ["SUCCESS", "SUCCESS", "FAILED", "SUCCESS", "FAILED"]
    assert len({i["run_id"] for i in iterations}) == 5
    outputs = [workspace.get_run_output(i["run_id"])["logs"] for i in iterations]
    assert [o.strip() for o in outputs[:2]] == ["report for north", "report for south"]

    # the UI sees progress on the for-each task
    progress = [e for e in events if e.kind == "task_progress"]
    assert progress and all(e.task_key == "per_region" for e in progress)
    assert progress[-1].stats["task_run_stats"]["completed_iterations"] == 5
    assert max(e.stats["task_run_stats"]["active_iterations"] for e in progress) == 2

    # fix the script, repair: only the two failed iterations run again (and summary after them)
    log.unlink()
    item.write_text(item.read_text().replace('("east", "centre")', '()'))
    repaired = workspace.repair_run(run["run_id"], rerun_all_failed_tasks=True)
    assert task_states(repaired) == {"prep": "SUCCESS", "per_region": "SUCCESS", "summary": "SUCCESS"}
    assert sorted(s[0] for s in spans(log)) == ["centre", "east"]
    loop2 = by_key(repaired)["per_region"]
    assert loop2["run_id"] != loop["run_id"]
    assert loop2["for_each_task"]["stats"]["task_run_stats"]["succeeded_iterations"] == 5
    again = workspace.get_run(loop2["run_id"])["iterations"]
    kept = {i["run_id"] for i in iterations if i["state"]["result_state"] == "SUCCESS"}
    assert kept <= {i["run_id"] for i in again}  # the succeeded iterations keep their task runs and outputs
    assert by_key(repaired)["prep"]["run_id"] == by_key(run)["prep"]["run_id"]


def test_for_each_notebooks_get_input_fields_and_each_keeps_its_executed_notebook(workspace, tmp_path):
    write_notebook(tmp_path / "city.ipynb",
                   ('city = "?"\nfactor = "1"', ["parameters"]),
                   """
                   print(f"city={city} factor={factor} widget={dbutils.widgets.get('city')}")
                   print("task", dbutils.widgets.get("task_name"))
                   """)
    job_id = workspace.create_job({
        "name": "cities",
        "parameters": [{"name": "cities", "default": '[{"name": "Lyon", "f": 2}, {"name": "Lille", "f": 3}]'}],
        "tasks": [{"task_key": "each_city", "for_each_task": {
            "inputs": "{{job.parameters.cities}}", "concurrency": 2,
            "task": {"task_key": "city", "notebook_task": {
                "notebook_path": str(tmp_path / "city.ipynb"),
                "base_parameters": {"city": "{{input.name}}", "factor": "{{input.f}}",
                                    "task_name": "{{task.name}}"}}}}}]})
    run = workspace.run_now(job_id)
    assert run["state"]["result_state"] == "SUCCESS"
    iterations = workspace.get_run(run["tasks"][0]["run_id"])["iterations"]
    texts = []
    for it in iterations:
        path = it["run_page_url"].removeprefix("file://")
        nb = nbformat.read(path, as_version=4)
        texts.append("".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])))
    assert "city=Lyon factor=2 widget=Lyon" in texts[0] and "task city" in texts[0]
    assert "city=Lille factor=3 widget=Lille" in texts[1]
    assert len({it["run_page_url"] for it in iterations}) == 2


def test_for_each_inputs_that_are_not_an_array_or_too_many_fail_the_task_clearly(workspace, tmp_path):
    write_script(tmp_path / "noop.py", "print('x')\n")
    job_id = workspace.create_job({
        "name": "bad-inputs", "parameters": [{"name": "items", "default": "[]"}],
        "tasks": [{"task_key": "loop", "for_each_task": {
            "inputs": "{{job.parameters.items}}",
            "task": {"task_key": "one", "spark_python_task": {"python_file": str(tmp_path / "noop.py")}}}}]})
    run = workspace.run_now(job_id, {"items": "north"})
    assert run["tasks"][0]["state"]["result_state"] == "FAILED"
    assert "'{{job.parameters.items}}' resolved to 'north', which is not a JSON array" in \
        run["tasks"][0]["state"]["state_message"]
    run = workspace.run_now(job_id, {"items": json.dumps(list(range(5001)))})
    assert "has 5,001 elements; the limit is 5,000 iterations" in run["tasks"][0]["state"]["state_message"]
    run = workspace.run_now(job_id)  # an empty array: nothing to do, success
    assert run["state"]["result_state"] == "SUCCESS"
    assert run["tasks"][0]["for_each_task"]["stats"]["task_run_stats"]["total_iterations"] == 0


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

# -- run-job tasks -------------------------------------------------------------------------------

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


def test_a_for_each_timeout_stops_every_iteration(workspace, tmp_path):
    write_script(tmp_path / "slow.py", f"""
        import os, sys, time
        open(os.path.join({str(tmp_path)!r}, sys.argv[1] + ".pid"), "w").write(str(os.getpid()))
        time.sleep(120)
    """)
    job_id = workspace.create_job({"name": "slow-loop", "tasks": [
        {"task_key": "loop", "timeout_seconds": 1, "for_each_task": {
            "inputs": '["a", "b", "c"]', "concurrency": 2,
            "task": {"task_key": "slow", "spark_python_task": {
                "python_file": str(tmp_path / "slow.py"), "parameters": ["{{input}}"]}}}}]})
    run = workspace.run_now(job_id)
    loop = run["tasks"][0]
    assert loop["state"]["result_state"] == "TIMEDOUT"
    iterations = workspace.get_run(loop["run_id"])["iterations"]
    assert [i["state"]["result_state"] for i in iterations] == ["CANCELED"] * 3
    assert iterations[0]["state"]["state_message"] == \
        "Canceled: its for-each task was stopped (canceled or timed out)."
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)  # c never started
