"""Validation: every message a user can see, and that all problems are reported at once."""
from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import pytest

from nbjobs.spec import JobDefinitionError, Problem, parse_job_settings, validate_job_settings
from nbjobs.spec.validate import cycle_in_run_order

pytestmark = pytest.mark.pure


def nb(path="a.ipynb", **params):
    return {"notebook_path": path, **({"base_parameters": params} if params else {})}


def job(*tasks, **fields):
    return {"name": "j", "tasks": list(tasks), **fields}


def messages(data, base_dir=None):
    return [str(p) for p in validate_job_settings(data, base_dir=base_dir)]


def only(data, base_dir=None) -> str:
    found = messages(data, base_dir)
    assert len(found) == 1, found
    return found[0]


BRONZE = {"task_key": "bronze", "notebook_task": nb("bronze.ipynb")}
SILVER = {"task_key": "silver", "depends_on": [{"task_key": "bronze"}], "notebook_task": nb("silver.ipynb")}
CHECK = {"task_key": "check", "depends_on": [{"task_key": "bronze"}],
         "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}


def test_problem_text_names_task_by_index_and_key():
    data = job(BRONZE, SILVER, {**SILVER, "task_key": "silver2", "run_if": "ALL_SUCESS"})
    data["tasks"][2]["task_key"] = "silver"  # tasks[2] (silver)
    data["tasks"][1]["task_key"] = "silver1"
    assert only(data) == (
        "tasks[2] (silver).run_if: 'ALL_SUCESS' is not a run_if value. Fix: use one of ALL_SUCCESS, "
        "AT_LEAST_ONE_SUCCESS, NONE_FAILED, ALL_DONE, AT_LEAST_ONE_FAILED, ALL_FAILED.")


def test_valid_job_has_no_problems():
    assert messages(job(BRONZE, SILVER, CHECK, {
        "task_key": "yes", "depends_on": [{"task_key": "check", "outcome": "true"}], "notebook_task": nb()})) == []


CASES = [
    ("no tasks", {"name": "x"},
     "tasks: a job needs at least one task. Fix: add tasks: with at least one task"),
    ("empty tasks", {"tasks": []}, "tasks: a job needs at least one task."),
    ("task_key missing", job({"notebook_task": nb()}),
     "tasks[0].task_key: a value is required. Fix: give every task a unique task_key"),
    ("duplicate task_key", job(BRONZE, {**SILVER, "task_key": "bronze", "depends_on": []}),
     "tasks[1] (bronze).task_key: task_key 'bronze' is already used by tasks[0]. "
     "Fix: give every task a unique task_key."),
    ("bad task_key characters", job({"task_key": "my task!", "notebook_task": nb()}),
     "tasks[0] (my task!).task_key: 'my task!' is not a valid task_key. Fix: use 1 to 100 letters, digits, _ and -."),
    ("task_key too long", job({"task_key": "k" * 101, "notebook_task": nb()}),
     "is not a valid task_key. Fix: use 1 to 100 letters"),
    ("zero task types", job({"task_key": "a"}),
     "tasks[0] (a): the task has no task type. Fix: add exactly one of notebook_task, spark_python_task, "
     "condition_task, for_each_task or run_job_task."),
    ("zero task types, typo", job({"task_key": "a", "notebok_task": nb()}),
     "tasks[0] (a): the task has no task type ('notebok_task' is not a task type; did you mean notebook_task?)."),
    ("two task types", job({"task_key": "a", "notebook_task": nb(), "spark_python_task": {"python_file": "a.py"}}),
     "tasks[0] (a): the task has 2 task types: notebook_task and spark_python_task. "
     "Fix: keep exactly one task type per task"),
    ("unsupported task type", job({"task_key": "p", "pipeline_task": {"pipeline_id": "123"}}),
     "tasks[0] (p).pipeline_task: nbjobs cannot run pipeline_task tasks locally. "
     "Fix: use a notebook_task or spark_python_task that does the same work, or set disabled: true."),
    ("unsupported sql_task", job({"task_key": "q", "sql_task": {"warehouse_id": "w", "query": {"query_id": "1"}}}),
     "tasks[0] (q).sql_task: nbjobs cannot run sql_task tasks locally."),
    ("unknown dependency with suggestion", job(BRONZE, {**SILVER, "depends_on": [{"task_key": "bronz"}]}),
     "tasks[1] (silver).depends_on[0].task_key: depends on unknown task 'bronz'. Fix: did you mean 'bronze'?"),
    ("unknown dependency, no close match", job(BRONZE, {**SILVER, "depends_on": [{"task_key": "zzz"}]}),
     "depends on unknown task 'zzz'. Fix: use the task_key of another task in this job: bronze, silver."),
    ("self dependency", job({**BRONZE, "depends_on": [{"task_key": "bronze"}]}),
     "tasks[0] (bronze).depends_on[0].task_key: a task cannot depend on itself. Fix: remove this dependency."),
    ("duplicate dependency", job(BRONZE, {**SILVER, "depends_on": [{"task_key": "bronze"}, {"task_key": "bronze"}]}),
     "tasks[1] (silver).depends_on[1].task_key: depends on 'bronze' twice. Fix: list each upstream task once."),
    ("outcome after a non-condition task", job(BRONZE, {**SILVER, "depends_on": [
        {"task_key": "bronze", "outcome": "true"}]}),
     "tasks[1] (silver).depends_on[0].outcome: outcome is only allowed after a condition task, and 'bronze' is a "
     "notebook_task. Fix: remove outcome, or make 'bronze' a condition_task."),
    ("bad outcome value", job(BRONZE, CHECK, {**SILVER, "depends_on": [{"task_key": "check", "outcome": "yes"}]}),
     "tasks[2] (silver).depends_on[0].outcome: 'yes' is not a condition outcome. Fix: use \"true\" or \"false\"."),
    ("bad condition op", job({"task_key": "c", "condition_task": {"op": "EQUALS", "left": "a", "right": "b"}}),
     "tasks[0] (c).condition_task.op: 'EQUALS' is not a condition op (did you mean EQUAL_TO?). Fix: use one of "
     "EQUAL_TO, NOT_EQUAL, GREATER_THAN, GREATER_THAN_OR_EQUAL, LESS_THAN, LESS_THAN_OR_EQUAL."),
    ("condition op missing", job({"task_key": "c", "condition_task": {"left": "a", "right": "b"}}),
     "tasks[0] (c).condition_task.op: a value is required. Fix: use one of EQUAL_TO"),
    ("condition right missing", job({"task_key": "c", "condition_task": {"op": "EQUAL_TO", "left": "a"}}),
     "tasks[0] (c).condition_task.right: a value is required. Fix: give the right operand: a literal or a "
     "{{...}} reference."),
    ("nested for-each", job({"task_key": "outer", "for_each_task": {"inputs": "[1]", "task": {
        "task_key": "inner", "for_each_task": {"inputs": "[2]", "task": {"task_key": "x", "notebook_task": nb()}}}}}),
     "tasks[0] (outer).for_each_task.task (inner).for_each_task: a for_each_task cannot run another "
     "for_each_task. Fix: put the inner loop in its own job and call that job with a run_job_task."),
    ("for-each inputs missing",
     job({"task_key": "l", "for_each_task": {"task": {"task_key": "i", "notebook_task": nb()}}}),
     "tasks[0] (l).for_each_task.inputs: a value is required. Fix: set inputs to a JSON array"),
    ("for-each inputs not an array", job({"task_key": "l", "for_each_task": {
        "inputs": "a,b", "task": {"task_key": "i", "notebook_task": nb()}}}),
     "tasks[0] (l).for_each_task.inputs: 'a,b' is not a JSON array."),
    ("for-each concurrency", job({"task_key": "l", "for_each_task": {
        "inputs": "[1]", "concurrency": 101, "task": {"task_key": "i", "notebook_task": nb()}}}),
     "tasks[0] (l).for_each_task.concurrency: must be between 1 and 100, not 101. Fix: use a value between 1 and 100."),
    ("for-each nested task checked like a task", job({"task_key": "l", "for_each_task": {
        "inputs": "[1]", "task": {"task_key": "i", "run_if": "SOMETIMES", "notebook_task": nb()}}}),
     "tasks[0] (l).for_each_task.task (i).run_if: 'SOMETIMES' is not a run_if value."),
    ("bad parameter name", job(BRONZE, parameters=[{"name": "my param", "default": "1"}]),
     "parameters[0].name: 'my param' is not a valid parameter name. Fix: use only letters, digits, _, - and ."),
    ("duplicate parameter", job(BRONZE, parameters=[{"name": "p", "default": "1"}, {"name": "p", "default": "2"}]),
     "parameters[1].name: parameter 'p' is declared twice. Fix: give each job parameter a unique name."),
    ("parameter without default", job(BRONZE, parameters=[{"name": "p"}]),
     'parameters[0].default: a value is required. Fix: give the parameter a default value ("" for empty).'),
    ("nested base_parameters value", job({"task_key": "a", "notebook_task": nb(tables=["x", "y"])}),
     "tasks[0] (a).notebook_task.base_parameters.tables: must be text, not a list. Fix: parameter values are "
     "strings: write a structured value as quoted JSON text."),
    ("wrong type", job({**BRONZE, "timeout_seconds": "soon"}),
     "tasks[0] (bronze).timeout_seconds: must be a whole number, not 'soon'. Fix: write an integer."),
    ("negative retries", job({**BRONZE, "max_retries": -2}),
     "tasks[0] (bronze).max_retries: must be at least -1, not -2."),
    ("depends_on shorthand", job(BRONZE, {**SILVER, "depends_on": ["bronze"]}),
     "tasks[1] (silver).depends_on[0]: must be a map of fields, not 'bronze'."),
    ("not a map", ["a"], "the job definition must be a map of JobSettings fields, not a list."),
]


@pytest.mark.parametrize("data, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_message(data, expected):
    found = messages(data)
    assert any(expected in m for m in found), found
    assert len(found) == 1, found


def test_cycle_is_printed():
    data = job({"task_key": "a", "depends_on": [{"task_key": "c"}], "notebook_task": nb()},
               {"task_key": "b", "depends_on": [{"task_key": "a"}], "notebook_task": nb()},
               {"task_key": "c", "depends_on": [{"task_key": "b"}], "notebook_task": nb()},
               {"task_key": "d", "depends_on": [{"task_key": "c"}], "notebook_task": nb()})
    assert only(data) == ("tasks[0] (a).depends_on: the tasks depend on each other in a cycle: a -> b -> c -> a "
                          "(each runs before the next). Fix: remove one of these dependencies so the tasks form a DAG.")


@pytest.mark.parametrize("deps, cycle", [
    ({}, None),
    ({"a": [], "b": ["a"], "c": ["a", "b"]}, None),  # diamond-ish DAG
    ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
    ({"x": [], "a": ["c"], "b": ["a"], "c": ["b"]}, ["a", "b", "c", "a"]),
    ({"a": ["missing"]}, None),
])
def test_cycle_in_run_order(deps, cycle):
    assert cycle_in_run_order(deps) == cycle


def test_cycle_in_run_order_long_chain_no_recursion_limit():
    deps = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(5000)}
    assert cycle_in_run_order(deps) is None
    deps["t0"] = ["t4999"]
    cycle = cycle_in_run_order(deps)
    assert cycle[0] == cycle[-1] == "t0" and len(cycle) == 5001


def test_missing_notebook_and_script_name_the_absolute_path(tmp_path: Path):
    (tmp_path / "here.ipynb").write_text("{}")
    data = job({"task_key": "n", "notebook_task": nb("notebooks/gone")},
               {"task_key": "s", "spark_python_task": {"python_file": "scripts/gone.py"}},
               {"task_key": "ok", "notebook_task": nb("here")})  # extension fallback finds here.ipynb
    found = messages(data, base_dir=tmp_path)
    assert found == [
        f"tasks[0] (n).notebook_task.notebook_path: notebook not found: {tmp_path}/notebooks/gone "
        "(also tried gone.ipynb, gone.py). Fix: check the path; a relative path is relative to the file that "
        "declares the task.",
        f"tasks[1] (s).spark_python_task.python_file: script not found: {tmp_path}/scripts/gone.py. Fix: check the "
        "path; a relative path is relative to the file that declares the task.",
    ]


def test_missing_file_inside_for_each(tmp_path: Path):
    data = job({"task_key": "l", "for_each_task": {"inputs": "[1]", "task": {
        "task_key": "i", "notebook_task": nb("gone.ipynb")}}})
    assert only(data, tmp_path).startswith(
        f"tasks[0] (l).for_each_task.task (i).notebook_task.notebook_path: notebook not found: {tmp_path}/gone.ipynb.")


def test_git_source_skips_file_checks(tmp_path: Path):
    data = job({"task_key": "n", "notebook_task": nb("src/gone")},
               git_source={"git_url": "https://example.com/r.git", "git_provider": "gitHub", "git_branch": "main"})
    assert messages(data, tmp_path) == []
    data = job({"task_key": "n", "notebook_task": {**nb("src/gone"), "source": "GIT"}})
    assert messages(data, tmp_path) == []


def test_unknown_job_reference():
    data = job({"task_key": "a", "notebook_task": nb(run="{{job.naem}}")})
    message = only(data)
    assert message.startswith("tasks[0] (a).notebook_task.base_parameters.run: ")
    assert "job.naem" in message and "Fix: correct the reference" in message


def test_reference_problems_in_every_field_that_takes_references():
    bad = "{{job.naem}}"
    data = job({"task_key": "a", "notebook_task": nb(x=bad)},
               {"task_key": "b", "spark_python_task": {"python_file": "b.py", "parameters": ["--x", bad]}},
               {"task_key": "c", "condition_task": {"op": "EQUAL_TO", "left": bad, "right": bad}},
               {"task_key": "d", "for_each_task": {"inputs": bad,
                                                   "task": {"task_key": "e", "notebook_task": nb(y=bad)}}},
               {"task_key": "f", "run_job_task": {"job_id": 1, "job_parameters": {"p": bad}}},
               parameters=[{"name": "p", "default": bad}])
    paths = [p.path for p in validate_job_settings(data, base_dir=None)]
    assert paths == ["parameters[0].default", "tasks[0] (a).notebook_task.base_parameters.x",
                     "tasks[1] (b).spark_python_task.parameters[1]", "tasks[2] (c).condition_task.left",
                     "tasks[2] (c).condition_task.right", "tasks[3] (d).for_each_task.inputs",
                     "tasks[3] (d).for_each_task.task (e).notebook_task.base_parameters.y",
                     "tasks[4] (f).run_job_task.job_parameters.p"]


def test_reference_context_passed_to_refs(monkeypatch):
    """The checker gives refs the job's parameters, task keys, transitive upstream and for-each flag."""
    calls = []

    def reference_problems(text, *, job_parameters, task_keys, upstream=None, in_for_each=False):
        calls.append((text, list(job_parameters), list(task_keys), sorted(upstream), in_for_each))
        return [f"bad {text}"] if "bad" in text else []

    monkeypatch.setitem(sys.modules, "nbjobs.refs", types.SimpleNamespace(reference_problems=reference_problems))
    data = job({"task_key": "a", "notebook_task": nb(v="{{a}}")},
               {"task_key": "b", "depends_on": [{"task_key": "a"}], "notebook_task": nb(v="{{b}}")},
               {"task_key": "c", "depends_on": [{"task_key": "b"}], "for_each_task": {
                   "inputs": "{{c}}", "task": {"task_key": "i", "notebook_task": nb(v="{{bad}}", w="plain")}}},
               parameters=[{"name": "p", "default": "{{p}}"}])
    problems = validate_job_settings(data, base_dir=None)
    assert calls == [
        ("{{p}}", ["p"], ["a", "b", "c"], [], False),
        ("{{a}}", ["p"], ["a", "b", "c"], [], False),
        ("{{b}}", ["p"], ["a", "b", "c"], ["a"], False),
        ("{{c}}", ["p"], ["a", "b", "c"], ["a", "b"], False),
        ("{{bad}}", ["p"], ["a", "b", "c"], ["a", "b"], True),
    ]
    assert [str(p) for p in problems] == [
        "tasks[2] (c).for_each_task.task (i).notebook_task.base_parameters.v: bad {{bad}}. Fix: correct the "
        "reference: job.parameters.<name> needs a declared job parameter, tasks.<task_key> a task this one "
        "depends on (directly or not)."]


@pytest.mark.parametrize("value", [10, 2.5, True, "text"])
def test_scalar_parameters_are_coerced_silently(value):
    assert messages(job({"task_key": "a", "notebook_task": nb(limit=value)})) == []


def test_disabled_task_with_unsupported_type_is_fine():
    data = job(BRONZE, {"task_key": "p", "disabled": True, "run_if": "ALL_DONE",
                        "depends_on": [{"task_key": "bronze"}], "pipeline_task": {"pipeline_id": "1"}})
    assert messages(data) == []


def test_fields_nbjobs_does_not_use_are_never_an_error():
    data = job({**BRONZE, "libraries": [{"pypi": {"package": "pandas"}}, {"whl": "x.whl"}],
                "new_cluster": {"spark_version": "15.4", "num_workers": 0}, "compute": {"x": 1},
                "email_notifications": {"on_failure": ["me@example.com"]}, "whatever": [1, {"a": None}],
                "notebook_task": {**nb(), "unknown_payload_field": 3}},
               job_clusters=[{"job_cluster_key": "c", "new_cluster": {"node_type_id": "i3.xlarge"}}],
               permissions=[{"level": "CAN_VIEW", "group_name": "users"}],
               email_notifications={"on_failure": ["me@example.com"], "no_alert_for_skipped_runs": True},
               webhook_notifications={"on_start": [{"id": "abc"}]}, health={"rules": []},
               schedule={"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC"},
               run_as={"user_name": "me"},
               access_control_list=[{"user_name": "me", "permission_level": "IS_OWNER"}],
               budget_policy_id="x", performance_target="STANDARD", something_new={"deep": [1, 2]})
    assert messages(data) == []


def test_many_problems_are_reported_at_once(tmp_path: Path):
    data = job({"task_key": "a", "depends_on": [{"task_key": "c"}], "notebook_task": nb("gone", x="{{job.naem}}")},
               {"task_key": "b", "depends_on": [{"task_key": "a", "outcome": "true"}], "run_if": "ALL_SUCESS"},
               {"task_key": "c", "depends_on": [{"task_key": "b"}], "condition_task": {"op": "EQ", "left": "1",
                                                                                      "right": "2"}},
               {"task_key": "a", "pipeline_task": {}, "timeout_seconds": "x"},
               parameters=[{"name": "bad name", "default": "1"}])
    problems = validate_job_settings(data, base_dir=tmp_path)
    found = "\n".join(str(p) for p in problems)
    for expected in ["parameters[0].name: 'bad name' is not a valid parameter name",
                     "tasks[0] (a).notebook_task.notebook_path: notebook not found",
                     "tasks[0] (a).notebook_task.base_parameters.x: {{job.naem}}",
                     "tasks[0] (a).depends_on: the tasks depend on each other in a cycle: a -> b -> c -> a",
                     "tasks[1] (b): the task has no task type",
                     "tasks[1] (b).run_if: 'ALL_SUCESS' is not a run_if value",
                     "tasks[1] (b).depends_on[0].outcome: outcome is only allowed after a condition task",
                     "tasks[2] (c).condition_task.op: 'EQ' is not a condition op",
                     "tasks[3] (a).task_key: task_key 'a' is already used by tasks[0]",
                     "tasks[3] (a).pipeline_task: nbjobs cannot run pipeline_task tasks locally",
                     "tasks[3] (a).timeout_seconds: must be a whole number, not 'x'"]:
        assert expected in found, found
    assert len(problems) == 11, found
    # parse_job_settings raises them all in one error
    with pytest.raises(JobDefinitionError) as info:
        parse_job_settings(data, base_dir=tmp_path, source="job.yml")
    assert info.value.problems == problems
    text = str(info.value)
    assert text.startswith("job.yml: invalid job definition, 11 problems:\n  - parameters[0].name: ")
    assert text.count("\n  - ") == 11


def test_validation_does_not_modify_its_input():
    data = job({"task_key": "a", "notebook_task": nb(limit=10)}, parameters=[{"name": "p", "default": 1}])
    before = copy.deepcopy(data)
    validate_job_settings(data, base_dir=None)
    assert data == before


def test_problem_is_frozen_and_formats_without_fix():
    p = Problem("tasks", "a job needs at least one task")
    assert str(p) == "tasks: a job needs at least one task."
    with pytest.raises(AttributeError):
        p.path = "x"  # type: ignore[misc]
    assert str(Problem("", "empty file", "write something")) == "empty file. Fix: write something."


def test_compute_keys_must_name_a_job_cluster_or_environment():
    from nbjobs.spec import validate_job_settings
    problems = validate_job_settings({"name": "c", "job_clusters": [{"job_cluster_key": "etl",
                                                                     "new_cluster": {"num_workers": 2}}],
                                      "tasks": [
        {"task_key": "a", "job_cluster_key": "elt", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
        {"task_key": "b", "environment_key": "default",
         "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
        {"task_key": "c", "job_cluster_key": "etl", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
    ]})
    text = [str(p) for p in problems]
    assert len(text) == 2, text
    assert text[0].startswith("tasks[0] (a).job_cluster_key: 'elt' names no job cluster of this job; "
                              "did you mean 'etl'?")
    assert text[1].startswith("tasks[1] (b).environment_key: 'default' names no environment of this job; "
                              "the job has no environments")
