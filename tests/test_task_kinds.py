"""Task kinds as plug-ins: a toy kind registered from this file runs through validate -> run -> runs/get;
the entry-point group `nbjobs.task_kinds` is honoured; health rules publish `duration_warning`."""
from __future__ import annotations

import asyncio
import sys
import textwrap
import threading

import pytest

from nbjobs.refs import resolve
from nbjobs.spec import validate_job_settings
from nbjobs.tasks import registry
from nbjobs.tasks.api_model import ApiModel, Text
from nbjobs.tasks.registry import Outcome, TaskKind, kind_for_field, kind_of, kinds, register, unregister

from conftest import write_script


class EchoTask(ApiModel):
    message: Text
    times: int = 1
    sleep_seconds: float = 0


class EchoKind(TaskKind):
    """Echo `message` `times` times: its exit value, and the task value `echo`."""
    field = "echo_task"
    name = "echo"
    label = "Echo"
    needs_compute = False
    model = EchoTask

    def validate(self, payload, path, check, *, upstream, nested):
        if payload.get("message") == "":
            check.add(f"{path}.message", "must not be empty", "give the text to echo")
        check.refs(payload.get("message"), f"{path}.message", upstream=upstream, in_for_each=nested)

    async def run(self, run):
        spec = self.payload(run.task)
        if spec.sleep_seconds:
            await asyncio.sleep(spec.sleep_seconds)
        text = " ".join([resolve(spec.message, run.refs)] * spec.times)
        return Outcome.succeeded(exit_value=text, resolved_values={"echo_task": {"message": text}}) \
            if text else Outcome.failed("nothing to echo")

    def run_json(self, out, row, iterations):
        out["echo_task"] = {**out["echo_task"], "echoed": row.get("exit_value")}

    def output_json(self, out, row):
        out["echo_output"] = {"text": row.get("exit_value")}


class _WithValues(EchoKind):
    async def run(self, run):
        outcome = await super().run(run)
        outcome.values = {"echo": outcome.fields.get("exit_value")}
        return outcome


@pytest.fixture
def echo_kind():
    kind = register(_WithValues)
    yield kind
    unregister("echo_task")


def echo_job(**echo):
    return {"name": "echo", "parameters": [{"name": "who", "default": "world"}], "tasks": [
        {"task_key": "say", "echo_task": {"message": "hello {{job.parameters.who}}", **echo}},
        {"task_key": "check", "depends_on": [{"task_key": "say"}],
         "condition_task": {"op": "EQUAL_TO", "left": "{{tasks.say.values.echo}}", "right": "hello world"}},
    ]}


@pytest.mark.pure
def test_builtin_kinds_are_registered():
    fields = [k.field for k in kinds()]
    assert fields[:5] == ["notebook_task", "spark_python_task", "condition_task", "for_each_task", "run_job_task"]
    assert kind_for_field("condition_task").instant and not kind_for_field("condition_task").retryable
    assert kind_of({"task_key": "x", "notebook_task": {"notebook_path": "n"}}).name == "notebook"


@pytest.mark.pure
def test_toy_kind_validates_its_payload(echo_kind):
    assert validate_job_settings(echo_job()) == []
    bad = echo_job(times="often")
    del bad["tasks"][0]["echo_task"]["message"]
    problems = {p.path: p.message for p in validate_job_settings(bad)}
    assert problems["tasks[0] (say).echo_task.message"] == "a value is required"
    assert problems["tasks[0] (say).echo_task.times"].startswith("must be a whole number")
    empty = echo_job()
    empty["tasks"][0]["echo_task"]["message"] = ""
    assert [str(p) for p in validate_job_settings(empty)] == [
        "tasks[0] (say).echo_task.message: must not be empty. Fix: give the text to echo."]
    unknown_ref = echo_job()
    unknown_ref["tasks"][0]["echo_task"]["message"] = "{{job.parameters.nope}}"
    assert [p.path for p in validate_job_settings(unknown_ref)] == ["tasks[0] (say).echo_task.message"]


@pytest.mark.kernels
def test_toy_kind_runs_and_shows_in_runs_get(workspace, echo_kind):
    job_id = workspace.create_job(echo_job(times=1))
    run = workspace.run_now(job_id)
    assert run["state"]["result_state"] == "SUCCESS", run
    say, check = run["tasks"]
    assert say["echo_task"]["echoed"] == "hello world"
    assert say["resolved_values"] == {"echo_task": {"message": "hello world"}}
    assert "cluster_instance" not in say  # needs_compute = False
    assert check["condition_task"]["outcome"] == "true"  # the task value it set
    output = workspace.get_run_output(say["run_id"])
    assert output["echo_output"] == {"text": "hello world"}
    # the panel draws the run: the toy kind is a node of its own kind, coloured by its state
    from nbjobs.ui import JobPanel
    panel = JobPanel.for_run(run["run_id"], client=workspace)
    try:
        node = panel.graph.node("say")
        assert node.data["kind"] == "echo"
        assert {"kind-echo", "state-succeeded"} <= set(node.classes.split())
        assert panel.states == {"say": "succeeded", "check": "succeeded"}
    finally:
        panel.close()


@pytest.mark.pure
def test_unregistering_restores_the_validation_error(echo_kind):
    unregister("echo_task")
    problems = validate_job_settings(echo_job())
    assert [p.path for p in problems] == ["tasks[0] (say)"]
    assert "the task has no task type" in problems[0].message
    assert "echo_task" not in problems[0].fix
    register(_WithValues)
    assert validate_job_settings(echo_job()) == []


@pytest.mark.pure
def test_a_registered_kind_is_listed_as_runnable(echo_kind):
    problems = validate_job_settings({"name": "x", "tasks": [{"task_key": "t"}]})
    assert "echo_task" in problems[0].fix


@pytest.mark.pure
def test_unsupported_type_keeps_its_clear_error():
    problems = validate_job_settings({"name": "x", "tasks": [{"task_key": "t", "sql_task": {"query": {}}}]})
    assert [(p.path, p.message) for p in problems] == [
        ("tasks[0] (t).sql_task", "nbjobs cannot run sql_task tasks locally")]


@pytest.mark.pure
def test_entry_point_group_is_honoured(tmp_path, monkeypatch):
    (tmp_path / "toy_kinds.py").write_text(textwrap.dedent('''
        from nbjobs.tasks.registry import Outcome, TaskKind

        class PluginKind(TaskKind):
            field = "plugin_task"
            name = "plugin"
            label = "Plug-in"
            needs_compute = False

            async def run(self, run):
                return Outcome.succeeded(state_message="plugged in")
        '''))
    info = tmp_path / "toy_kinds-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-kinds\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nbjobs.task_kinds]\nplugin = toy_kinds:PluginKind\n"
                                           "broken = toy_kinds_missing:Nothing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reload_entry_points()
    try:
        with pytest.warns(UserWarning, match="'broken'.*nbjobs.task_kinds"):
            found = kind_for_field("plugin_task")
        assert found is not None and found.name == "plugin"
        assert kind_for_field("notebook_task") is not None  # a broken plug-in breaks nothing
        assert validate_job_settings({"name": "p", "tasks": [{"task_key": "t", "plugin_task": {}}]}) == []
    finally:
        monkeypatch.undo()
        sys.modules.pop("toy_kinds", None)
        registry.reload_entry_points()
    assert kind_for_field("plugin_task") is None


@pytest.mark.pure
def test_register_refuses_a_field_that_is_not_a_task_field():
    class Bad(TaskKind):
        field = "echo"
    with pytest.raises(ValueError, match="ending in _task"):
        register(Bad)


# -- health rules: RUN_DURATION_SECONDS GREATER_THAN n -------------------------------------------

@pytest.mark.kernels
def test_duration_warning_for_the_run_and_the_task(workspace, tmp_path):
    script = write_script(tmp_path / "slow.py", "import time\ntime.sleep(2.5)\n")
    rule = {"rules": [{"metric": "RUN_DURATION_SECONDS", "op": "GREATER_THAN", "value": 1}]}
    job_id = workspace.create_job({"name": "slow", "health": rule, "tasks": [
        {"task_key": "slow", "spark_python_task": {"python_file": str(script)}, "health": rule},
        {"task_key": "quick", "depends_on": [{"task_key": "slow"}],
         "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"},
         "health": {"rules": [{"metric": "RUN_DURATION_SECONDS", "op": "GREATER_THAN", "value": 60}]}},
    ]})
    seen, lock = [], threading.Lock()

    def handler(event):
        with lock:
            seen.append(event)

    sub = workspace.events.subscribe(handler, kinds=["duration_warning"])
    try:
        run = workspace.run_now(job_id)
        sub.flush()
    finally:
        sub.close()
    assert run["state"]["result_state"] == "SUCCESS"
    warnings = {e.task_key: e for e in seen if e.run_id == run["run_id"]}
    assert set(warnings) == {None, "slow"}  # once each; the quick task's 60 s threshold never passes
    assert len([e for e in seen if e.run_id == run["run_id"]]) == 2
    assert "RUN_DURATION_SECONDS GREATER_THAN 1" in warnings[None].message
    assert warnings[None].message.startswith("The run ")
    assert warnings["slow"].message.startswith("Task 'slow' ")
    assert warnings["slow"].task_run_id == run["tasks"][0]["run_id"]


@pytest.mark.pure
def test_health_rules_are_validated():
    def job(rule):
        return {"name": "h", "tasks": [{"task_key": "t", "condition_task": {"op": "EQUAL_TO", "left": "1",
                                                                           "right": "1"},
                                        "health": {"rules": [rule]}}]}
    ok = {"metric": "RUN_DURATION_SECONDS", "op": "GREATER_THAN", "value": 10}
    assert validate_job_settings(job(ok)) == []
    problems = {p.path: p.message for p in validate_job_settings(job({**ok, "op": "LESS_THAN", "metric": "RAM"}))}
    assert problems == {"tasks[0] (t).health.rules[0].metric": "'RAM' is not a health metric",
                        "tasks[0] (t).health.rules[0].op": "'LESS_THAN' is not a health rule operator"}
    backlog = job({**ok, "metric": "STREAMING_BACKLOG_BYTES"})
    assert validate_job_settings(backlog) == []  # valid on Databricks: a note, not an error
    from nbjobs.spec.health import job_notes
    notes = job_notes(backlog)
    assert [n.path for n in notes] == ["tasks[0] (t).health.rules[0].metric"]
    assert "no local meaning" in notes[0].message
    from nbjobs.spec import parse_job_settings
    with pytest.warns(UserWarning, match="STREAMING_BACKLOG_BYTES has no local meaning"):
        parse_job_settings(backlog, base_dir=".")
