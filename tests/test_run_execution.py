"""Jobs run end to end with real kernels and subprocesses."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from nbjobs.service import InvalidParameterValue
from conftest import task_states, write_notebook, write_script

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def pipeline(tmp_path):
    """produce (notebook) -> transform (script) -> consume (notebook) -> check (condition) -> big | small."""
    src = tmp_path / "src"
    write_notebook(
        src / "produce.ipynb",
        ('greeting = "default"\nlimit = "1"', ["parameters"]),
        """
        dbutils.widgets.text("limit", "1")
        widget_limit = dbutils.widgets.get("limit")
        print(f"injected={greeting} widget={widget_limit} run_date={dbutils.widgets.get('run_date')}")
        dbutils.jobs.taskValues.set("n", 41)
        dbutils.jobs.taskValues.set("names", ["a", "b"])
        dbutils.notebook.exit(f"produced {widget_limit}")
        """,
        "raise RuntimeError('cells after exit must not run')",
    )
    write_script(src / "transform.py", """
        import sys
        from nbjobs import dbutils
        n = dbutils.jobs.taskValues.get(taskKey="produce", key="n")
        assert isinstance(n, int), type(n)
        print("args", sys.argv[1:])
        dbutils.jobs.taskValues.set("m", n + int(sys.argv[2]))
    """)
    write_notebook(
        src / "consume.ipynb",
        """
        m = dbutils.jobs.taskValues.get(taskKey="transform", key="m")
        assert isinstance(m, int)
        names = dbutils.jobs.taskValues.get("produce", "names")
        dbutils.jobs.taskValues.set("total", m * len(names))
        print("total", m * len(names))
        """,
    )
    write_notebook(src / "leaf.ipynb", "print(dbutils.widgets.get('which'))")
    return {
        "name": "pipeline",
        "tags": {"team": "data"},
        "parameters": [{"name": "run_date", "default": "{{job.start_time.iso_date}}"},
                       {"name": "limit", "default": "5"}],
        "tasks": [
            {"task_key": "produce",
             "notebook_task": {"notebook_path": str(src / "produce.ipynb"),
                               "base_parameters": {"greeting": "hello {{job.name}}", "limit": "2"}}},
            {"task_key": "transform", "depends_on": [{"task_key": "produce"}],
             "spark_python_task": {"python_file": str(src / "transform.py"),
                                   "parameters": ["--add", "1", "{{tasks.produce.values.n}}"]}},
            {"task_key": "consume", "depends_on": [{"task_key": "transform"}],
             "notebook_task": {"notebook_path": str(src / "consume.ipynb")}},
            {"task_key": "check", "depends_on": [{"task_key": "consume"}],
             "condition_task": {"op": "GREATER_THAN", "left": "{{tasks.consume.values.total}}", "right": "50"}},
            {"task_key": "big", "depends_on": [{"task_key": "check", "outcome": "true"}],
             "notebook_task": {"notebook_path": str(src / "leaf.ipynb"), "base_parameters": {"which": "big"}}},
            {"task_key": "small", "depends_on": [{"task_key": "check", "outcome": "false"}],
             "notebook_task": {"notebook_path": str(src / "leaf.ipynb"), "base_parameters": {"which": "small"}}},
        ],
    }


def _output_text(path: str) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.kernels
def test_parameters_values_exit_values_and_branches(workspace, pipeline):
    job_id = workspace.create_job(pipeline)
    run = workspace.run_now(job_id, {"limit": "7"})

    assert run["state"]["result_state"] == "SUCCESS"
    assert task_states(run) == {"produce": "SUCCESS", "transform": "SUCCESS", "consume": "SUCCESS",
                                "check": "SUCCESS", "big": "SUCCESS", "small": "EXCLUDED"}
    tasks = {t["task_key"]: t for t in run["tasks"]}

    # job parameters are pushed down to notebooks and win over base_parameters; references resolved
    produce = tasks["produce"]
    params = produce["resolved_values"]["notebook_task"]["base_parameters"]
    assert params["limit"] == "7" and params["greeting"] == "hello pipeline"
    text = _output_text(produce["run_page_url"].removeprefix("file://"))
    assert "injected=hello pipeline widget=7" in text  # injected variable and widget value both arrive
    assert f"run_date={params['run_date']}" in text and len(params["run_date"]) == 10

    # exit value ends the notebook successfully and becomes notebook_output.result
    output = workspace.get_run_output(produce["run_id"])
    assert output["notebook_output"]["result"] == "produced 7"
    assert "error" not in output

    # task values: notebook -> script (int stays int, reference rendered in argv) -> notebook -> condition
    transform = workspace.get_run_output(tasks["transform"]["run_id"])
    assert "args ['--add', '1', '41']" in transform["logs"]
    assert tasks["transform"]["resolved_values"]["spark_python_task"]["parameters"] == ["--add", "1", "41"]
    assert tasks["check"]["condition_task"]["outcome"] == "true"
    assert tasks["check"]["resolved_values"]["condition_task"] == {"left": "84", "right": "50"}
    assert workspace.store.task_values(run["run_id"])["consume"] == {"total": 84}

    # the source notebook is never written
    src = Path(pipeline["tasks"][0]["notebook_task"]["notebook_path"])
    assert all(not c.get("outputs") for c in nbformat.read(src, as_version=4).cells)


@pytest.mark.kernels
def test_failing_notebook_keeps_its_output_and_error(workspace, tmp_path):
    write_notebook(tmp_path / "ok.ipynb", "print('fine')")
    write_notebook(tmp_path / "bad.ipynb", "x = 1", "print('before the error')\n1 / 0")
    job_id = workspace.create_job({
        "name": "fails",
        "tasks": [
            {"task_key": "a", "notebook_task": {"notebook_path": str(tmp_path / "ok.ipynb")}},
            {"task_key": "b", "depends_on": [{"task_key": "a"}],
             "notebook_task": {"notebook_path": str(tmp_path / "bad.ipynb")}},
            {"task_key": "after", "depends_on": [{"task_key": "b"}],
             "notebook_task": {"notebook_path": str(tmp_path / "ok.ipynb")}},
            {"task_key": "cleanup", "depends_on": [{"task_key": "after"}], "run_if": "ALL_DONE",
             "notebook_task": {"notebook_path": str(tmp_path / "ok.ipynb")}},
            {"task_key": "alert", "depends_on": [{"task_key": "a"}, {"task_key": "b"}],
             "run_if": "AT_LEAST_ONE_FAILED",
             "notebook_task": {"notebook_path": str(tmp_path / "ok.ipynb")}},
        ],
    })
    run = workspace.run_now(job_id)
    assert task_states(run) == {"a": "SUCCESS", "b": "FAILED", "after": "UPSTREAM_FAILED",
                                "cleanup": "SUCCESS", "alert": "SUCCESS"}
    # every leaf (cleanup, alert) succeeded, something failed
    assert run["state"]["result_state"] == "SUCCESS_WITH_FAILURES"
    b = next(t for t in run["tasks"] if t["task_key"] == "b")
    output = workspace.get_run_output(b["run_id"])
    assert "ZeroDivisionError" in output["error"]
    assert "1 / 0" in output["error_trace"] or "division by zero" in output["error_trace"]
    executed = b["run_page_url"].removeprefix("file://")
    assert "before the error" in _output_text(executed)  # the executed notebook is kept on failure
    # the run's JSON parses with the official SDK
    from databricks.sdk.service.jobs import Run
    parsed = Run.from_dict(run)
    assert parsed.state.result_state.value == "SUCCESS_WITH_FAILURES"
    assert {t.task_key: t.state.result_state.value for t in parsed.tasks}["after"] == "UPSTREAM_FAILED"


@pytest.mark.kernels
def test_a_failing_leaf_fails_the_job_and_no_rollback_of_earlier_writes(workspace, tmp_path):
    marker = tmp_path / "written.txt"
    write_notebook(tmp_path / "writes.ipynb", f"open({str(marker)!r}, 'w').write('committed')")
    write_script(tmp_path / "boom.py", "raise SystemExit('boom: bad input')\n")
    job_id = workspace.create_job({"name": "leaf-fails", "tasks": [
        {"task_key": "write", "notebook_task": {"notebook_path": str(tmp_path / "writes.ipynb")}},
        {"task_key": "boom", "depends_on": [{"task_key": "write"}],
         "spark_python_task": {"python_file": str(tmp_path / "boom.py")}},
    ]})
    run = workspace.run_now(job_id)
    assert run["state"]["result_state"] == "FAILED"
    assert marker.read_text() == "committed"
    boom = workspace.get_run_output(run["tasks"][1]["run_id"])
    assert "boom: bad input" in boom["logs"]
    assert "exit code 1" in boom["error"] or "boom: bad input" in boom["error"]


@pytest.mark.kernels
def test_condition_false_branch_and_non_numeric_operand(workspace, tmp_path):
    write_notebook(tmp_path / "n.ipynb", "print('ran')")
    job_id = workspace.create_job({"name": "cond", "parameters": [{"name": "score", "default": "0.5"}], "tasks": [
        {"task_key": "c", "condition_task": {"op": "GREATER_THAN", "left": "{{job.parameters.score}}",
                                             "right": "0.95"}},
        {"task_key": "yes", "depends_on": [{"task_key": "c", "outcome": "true"}],
         "notebook_task": {"notebook_path": str(tmp_path / "n.ipynb")}},
        {"task_key": "no", "depends_on": [{"task_key": "c", "outcome": "false"}],
         "notebook_task": {"notebook_path": str(tmp_path / "n.ipynb")}},
        {"task_key": "after_yes", "depends_on": [{"task_key": "yes"}], "run_if": "ALL_DONE",
         "notebook_task": {"notebook_path": str(tmp_path / "n.ipynb")}},
    ]})
    run = workspace.run_now(job_id)
    assert task_states(run) == {"c": "SUCCESS", "yes": "EXCLUDED", "no": "SUCCESS", "after_yes": "EXCLUDED"}
    assert run["state"]["result_state"] == "SUCCESS"

    run = workspace.run_now(job_id, {"score": "high"})
    assert task_states(run)["c"] == "FAILED"
    c = next(t for t in run["tasks"] if t["task_key"] == "c")
    assert "'high', which is not a number" in c["state"]["state_message"]
    assert run["state"]["result_state"] == "FAILED"


@pytest.mark.pure
def test_unknown_job_parameter_is_refused_before_any_run(workspace, tmp_path):
    write_notebook(tmp_path / "n.ipynb", "print('ran')")
    job_id = workspace.create_job({"name": "p", "parameters": [{"name": "a", "default": "1"}],
                                   "tasks": [{"task_key": "t", "notebook_task": {
                                       "notebook_path": str(tmp_path / "n.ipynb")}}]})
    with pytest.raises(InvalidParameterValue, match="no parameter named 'b'. Defined parameters: a"):
        workspace.start_run(job_id, {"b": "2"})
    assert workspace.list_runs(job_id=job_id) == []


@pytest.mark.kernels
def test_independent_tasks_run_in_parallel_within_the_limit(workspace, tmp_path):
    log = tmp_path / "spans.jsonl"
    write_script(tmp_path / "span.py", f"""
        import json, sys, time
        start = time.time(); time.sleep(1.0)
        with open({str(log)!r}, "a") as fh:
            fh.write(json.dumps([sys.argv[1], start, time.time()]) + "\\n")
    """)
    tasks = [{"task_key": f"t{i}", "spark_python_task": {"python_file": str(tmp_path / "span.py"),
                                                         "parameters": [f"t{i}"]}} for i in range(4)]
    job_id = workspace.create_job({"name": "fan", "tasks": tasks})
    run = asyncio_run(workspace, job_id, concurrency=2)
    assert run["state"]["result_state"] == "SUCCESS"
    spans = [json.loads(line)[1:] for line in log.read_text().splitlines()]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2  # two at once (parallel), never more than the limit


def asyncio_run(workspace, job_id, **kw):
    import asyncio
    run_id = workspace.start_run(job_id)
    return asyncio.run(workspace.execute_run(run_id, **kw))


@pytest.mark.kernels
def test_run_now_without_waiting_runs_on_the_background_engine(workspace, tmp_path):
    write_script(tmp_path / "slow.py", "import time; time.sleep(0.5); print('done')\n")
    job_id = workspace.create_job({"name": "bg", "tasks": [
        {"task_key": "slow", "spark_python_task": {"python_file": str(tmp_path / "slow.py")}}]})
    answer = workspace.run_now(job_id, wait=False)
    assert set(answer) == {"run_id", "number_in_job"}
    assert workspace.get_run(answer["run_id"])["state"]["life_cycle_state"] in ("PENDING", "RUNNING")
    run = workspace.wait(answer["run_id"], timeout=60)
    assert run["state"]["result_state"] == "SUCCESS"
