"""For-each tasks: inputs from task values, bounded concurrency, iterations as task runs, repair of
failed iterations only, timeouts; and the pure parts (inputs, concurrency, stats)."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from databricks.sdk.service.jobs import Run

from nbjobs._proc import pid_alive as _alive
from nbjobs.tasks.for_each import MAX_ITERATIONS, ForEachInputError, concurrency_of, parse_inputs, stats, summary
from conftest import by_key, task_states, write_notebook, write_script

pytestmark = pytest.mark.timeout(120)


def spans(path: Path) -> list[list]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def most_at_once(items: list[list]) -> int:
    """The largest number of [name, start, end] spans overlapping at one moment."""
    return max(sum(1 for _, s, e in items if s <= t < e) for _, t, _ in items)


@pytest.mark.kernels
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


@pytest.mark.kernels
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


@pytest.mark.pure
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


@pytest.mark.kernels
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


# -- inputs, concurrency and stats (pure) ----------------------------------------------------

@pytest.mark.pure
@pytest.mark.parametrize("value, expected", [
    ('["a", "b"]', ["a", "b"]),
    ("[1, 2, 3]", [1, 2, 3]),
    ("['a','b','c']", ["a", "b", "c"]),          # single quotes, as the Databricks docs show
    ('[{"x": 1}]', [{"x": 1}]),
    (["already", "a", "list"], ["already", "a", "list"]),   # a task value keeps its type
    ("[]", []),
])
def test_parse_inputs(value, expected):
    assert parse_inputs(value, "{{tasks.t.values.v}}") == expected


@pytest.mark.pure
def test_parse_inputs_errors_say_what_was_given_and_the_limit():
    with pytest.raises(ForEachInputError, match=r"'\{\{job.parameters.regions\}\}' resolved to 'north', "
                                                r"which is not a JSON array"):
        parse_inputs("north", "{{job.parameters.regions}}")
    with pytest.raises(ForEachInputError, match=r"'\{\"a\": 1\}' is not a JSON array"):
        parse_inputs('{"a": 1}', '{"a": 1}')
    with pytest.raises(ForEachInputError, match=r"has 5,001 elements; the limit is 5,000 iterations"):
        parse_inputs(list(range(MAX_ITERATIONS + 1)), "{{tasks.t.values.v}}")
    assert len(parse_inputs(list(range(MAX_ITERATIONS)), "x")) == MAX_ITERATIONS


@pytest.mark.pure
def test_concurrency_default_and_bounds():
    assert (concurrency_of(None), concurrency_of(7), concurrency_of(1000)) == (1, 7, 100)


@pytest.mark.pure
def test_stats_and_summary():
    rows = [
        dict(life_cycle_state="TERMINATED", result_state="SUCCESS", iteration_index=0, input="a"),
        dict(life_cycle_state="TERMINATED", result_state="FAILED", error="ValueError: bad a", iteration_index=1,
             input="b"),
        dict(life_cycle_state="TERMINATED", result_state="FAILED", error="ValueError: bad a", iteration_index=2,
             input="c"),
        dict(life_cycle_state="RUNNING", result_state=None, iteration_index=3, input="d"),
        dict(life_cycle_state="WAITING_FOR_RETRY", result_state=None, iteration_index=4, input="e"),
        dict(life_cycle_state="PENDING", result_state=None, iteration_index=5, input="f"),
    ]
    out = stats(rows)
    assert out["task_run_stats"] == {"total_iterations": 6, "scheduled_iterations": 1, "active_iterations": 2,
                                     "completed_iterations": 3, "succeeded_iterations": 1, "failed_iterations": 2}
    assert out["error_message_stats"] == [{"error_message": "ValueError: bad a", "count": 2,
                                           "termination_category": "RUN_EXECUTION_ERROR"}]
    assert summary(rows[:3]) == ("2 of 3 iterations did not succeed; iteration 1 (b): ValueError: bad a "
                                 "(and 1 more)")
    assert summary(rows[:1]) is None
    from databricks.sdk.service.jobs import ForEachStats
    assert ForEachStats.from_dict(out).task_run_stats.failed_iterations == 2
