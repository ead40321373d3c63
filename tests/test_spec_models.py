"""The job model and the JSON / YAML loaders."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import nbjobs.spec as spec
from nbjobs.spec import (
    ConditionTask,
    ForEachTask,
    JobDefinitionError,
    JobParameterDefinition,
    JobSettings,
    NotebookTask,
    RunJobTask,
    SparkPythonTask,
    Task,
    TaskDependency,
    load_job,
    parse_job_settings,
)

pytestmark = pytest.mark.pure

FIXTURES = Path(__file__).parent / "fixtures" / "spec"
SIMPLE = FIXTURES / "simple"


def test_public_names_are_sorted_and_importable():
    assert spec.__all__ == sorted(spec.__all__)
    for name in spec.__all__:
        assert getattr(spec, name) is not None


def test_build_from_python_objects_and_round_trip(tmp_path: Path):
    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / "b.py").write_text("")
    settings = JobSettings(
        name="x",
        parameters=[JobParameterDefinition(name="n", default="1")],
        tasks=[
            Task(task_key="a", notebook_task=NotebookTask(notebook_path="a.ipynb", base_parameters={"n": "1"})),
            Task(task_key="b", depends_on=[TaskDependency(task_key="a")],
                 spark_python_task=SparkPythonTask(python_file="b.py", parameters=["--n", "{{job.parameters.n}}"])),
            Task(task_key="c", depends_on=[TaskDependency(task_key="b")],
                 condition_task=ConditionTask(op="EQUAL_TO", left="1", right="1")),
            Task(task_key="d", depends_on=[TaskDependency(task_key="c", outcome="true")],
                 for_each_task=ForEachTask(inputs="[1, 2]", concurrency=2,
                                           task=Task(task_key="d_iter", notebook_task=NotebookTask(
                                               notebook_path="a.ipynb", base_parameters={"i": "{{input}}"})))),
            Task(task_key="e", run_job_task=RunJobTask(job_id=42, job_parameters={"p": "v"})),
        ])
    assert [t.task_type for t in settings.tasks] == [
        "notebook_task", "spark_python_task", "condition_task", "for_each_task", "run_job_task"]
    assert settings.tasks[2].payload == ConditionTask(op="EQUAL_TO", left="1", right="1")
    assert settings.task("d").for_each_task.task.task_type == "notebook_task"
    with pytest.raises(KeyError):
        settings.task("zz")

    parsed = parse_job_settings(settings.to_dict(), base_dir=tmp_path)
    assert parsed.tasks[0].notebook_task.notebook_path == str(tmp_path / "a.ipynb")
    assert parsed.tasks[3].for_each_task.task.notebook_task.notebook_path == str(tmp_path / "a.ipynb")
    assert parsed.tasks[1].spark_python_task.python_file == str(tmp_path / "b.py")
    # the model itself is accepted too, and re-parsing resolved settings changes nothing
    assert parse_job_settings(settings, base_dir=tmp_path) == parsed
    assert parse_job_settings(parsed.to_dict(), base_dir=Path("/elsewhere")).to_dict() == parsed.to_dict()


def test_to_dict_echoes_only_what_was_given():
    settings = JobSettings.model_validate({"tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "/a"}}]})
    assert settings.to_dict() == {"name": "Untitled",
                                  "tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "/a"}}]}
    assert settings.name == "Untitled"
    task = settings.tasks[0]
    assert task.depends_on == [] and task.disabled is False and task.run_if is None
    assert task.notebook_task.base_parameters == {}


def test_extra_fields_are_kept_and_echoed():
    data = {
        "name": "x", "something_new": {"deep": [1, 2]}, "access_control_list": [{"user_name": "me"}],
        "job_clusters": [{"job_cluster_key": "c", "new_cluster": {"num_workers": 2}, "extra": 1}],
        "permissions": [{"level": "CAN_VIEW", "group_name": "users"}],
        "email_notifications": {"on_failure": ["me@example.com"]},
        "queue": {"enabled": True, "future": "x"},
        "tasks": [{"task_key": "a", "compute": {"k": 1}, "libraries": [{"pypi": {"package": "pandas"}}],
                   "notebook_task": {"notebook_path": "/a.ipynb", "new_payload_field": 3},
                   "depends_on": [], "environment_variables_key": "e"}],
    }
    settings = JobSettings.model_validate(data)
    dumped = settings.model_dump(exclude_none=True)
    assert dumped["something_new"] == {"deep": [1, 2]}
    assert dumped["access_control_list"] == [{"user_name": "me"}]
    assert dumped["job_clusters"] == [{"job_cluster_key": "c", "new_cluster": {"num_workers": 2}, "extra": 1}]
    assert dumped["permissions"] == [{"level": "CAN_VIEW", "group_name": "users"}]
    assert dumped["queue"] == {"enabled": True, "future": "x"}
    assert dumped["tasks"][0]["compute"] == {"k": 1}
    assert dumped["tasks"][0]["notebook_task"]["new_payload_field"] == 3
    assert settings.to_dict() == data


def test_yaml_scalars_become_text():
    task = Task.model_validate({"task_key": 1, "depends_on": [{"task_key": "c", "outcome": True}],
                                "notebook_task": {"notebook_path": "a", "base_parameters": {
                                    "n": 10, "f": 2.5, "flag": False, "day": __import__("datetime").date(2024, 1, 2)}}})
    assert task.task_key == "1"
    assert task.depends_on[0].outcome == "true"
    assert task.notebook_task.base_parameters == {"n": "10", "f": "2.5", "flag": "false", "day": "2024-01-02"}
    loop = ForEachTask.model_validate({"inputs": [1, "a", {"k": 2}], "task": {"task_key": "t", "notebook_task": {
        "notebook_path": "a"}}})
    assert loop.inputs == '[1, "a", {"k": 2}]'
    assert RunJobTask.model_validate({"job_id": "12"}).job_id == 12
    assert JobParameterDefinition.model_validate({"name": "n", "default": 0}).default == "0"


def test_task_with_other_task_type_is_recognised():
    task = Task.model_validate({"task_key": "p", "pipeline_task": {"pipeline_id": "x"}})
    assert task.task_type == "pipeline_task" and task.payload == {"pipeline_id": "x"}
    assert Task(task_key="none").task_type is None


# -- loading JSON and YAML -----------------------------------------------------------------------

def _check_simple(settings: JobSettings):
    bronze, clean, check, silver = settings.tasks
    assert settings.name == "simple"
    assert settings.parameters == [JobParameterDefinition(name="limit", default="10")]
    # paths relative to the file; extension fallback prefers .ipynb for notebooks, .py for scripts
    assert bronze.notebook_task.notebook_path == str(SIMPLE / "notebooks" / "bronze.ipynb")
    assert clean.spark_python_task.python_file == str(SIMPLE / "scripts" / "clean.py")
    assert silver.notebook_task.notebook_path == str(SIMPLE / "notebooks" / "silver.ipynb")
    assert bronze.notebook_task.base_parameters == {"limit": "{{job.parameters.limit}}", "flag": "true", "n": "3"}
    assert clean.spark_python_task.parameters == ["--limit", "10"]
    assert check.condition_task == ConditionTask(op="GREATER_THAN", left="{{tasks.bronze.values.rows}}", right="0")
    assert silver.depends_on == [TaskDependency(task_key="check", outcome="true")]


@pytest.mark.parametrize("name", ["job.yml", "job.json", "jobs_get.json"])
def test_load_json_and_yaml(name):
    loaded = load_job(SIMPLE / name)
    assert loaded.source_path == SIMPLE / name
    assert loaded.resource_key is None and loaded.target is None
    _check_simple(loaded.settings)


def test_load_from_another_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    _check_simple(load_job(os.path.relpath(SIMPLE / "job.yml", tmp_path)).settings)


def test_jobs_create_body_keeps_access_control_list(tmp_path: Path):
    (tmp_path / "nb.ipynb").write_text("{}")
    body = {"name": "c", "access_control_list": [{"user_name": "me", "permission_level": "IS_OWNER"}],
            "tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "nb"}}]}
    (tmp_path / "create.json").write_text(json.dumps(body))
    settings = load_job(tmp_path / "create.json").settings
    assert settings.to_dict()["access_control_list"] == body["access_control_list"]
    assert settings.tasks[0].notebook_task.notebook_path == str(tmp_path / "nb.ipynb")


def test_notebook_py_fallback_and_absolute_paths(tmp_path: Path):
    (tmp_path / "only_py.py").write_text("# Databricks notebook source\n")
    (tmp_path / "abs.ipynb").write_text("{}")
    (tmp_path / "job.yml").write_text(
        "tasks:\n"
        "  - task_key: a\n    notebook_task: {notebook_path: only_py}\n"
        f"  - task_key: b\n    notebook_task: {{notebook_path: {tmp_path / 'abs'}}}\n")
    a, b = load_job(tmp_path / "job.yml").settings.tasks
    assert a.notebook_task.notebook_path == str(tmp_path / "only_py.py")
    assert b.notebook_task.notebook_path == str(tmp_path / "abs.ipynb")


def test_invalid_file_reports_problems_with_the_file_name(tmp_path: Path):
    path = tmp_path / "bad.yml"
    path.write_text("tasks:\n  - task_key: a\n    run_if: SOMETIMES\n    notebook_task: {notebook_path: gone}\n")
    with pytest.raises(JobDefinitionError) as info:
        load_job(path)
    assert str(info.value) == (
        f"{path}: invalid job definition, 2 problems:\n"
        f"  - tasks[0] (a).run_if: 'SOMETIMES' is not a run_if value. Fix: use one of ALL_SUCCESS, "
        "AT_LEAST_ONE_SUCCESS, NONE_FAILED, ALL_DONE, AT_LEAST_ONE_FAILED, ALL_FAILED.\n"
        f"  - tasks[0] (a).notebook_task.notebook_path: notebook not found: {tmp_path}/gone (also tried "
        "gone.ipynb, gone.py). Fix: check the path; a relative path is relative to the file that declares the task.")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name, text, expected", [
    ("bad.json", '{"tasks": [}', "bad.json: invalid job definition, 1 problem:\n  - line 1, column 12: invalid JSON"),
    ("bad.yml", "tasks: [a\n  b: c", "bad.yml: invalid job definition, 1 problem:\n  - line 2, column 4: invalid YAML"),
    ("empty.yml", "", "empty.yml: invalid job definition, 1 problem:\n  - the file is empty. Fix: write the job's"),
    ("list.yml", "- a\n", "the file is a list, not a map."),
])
def test_unreadable_files(tmp_path: Path, name, text, expected):
    (tmp_path / name).write_text(text)
    with pytest.raises(JobDefinitionError) as info:
        load_job(tmp_path / name)
    assert expected in str(info.value)


def test_missing_file(tmp_path: Path):
    with pytest.raises(JobDefinitionError, match="file not found: .*nope.yml. Fix: check the path."):
        load_job(tmp_path / "nope.yml")


def test_folder_without_bundle(tmp_path: Path):
    with pytest.raises(JobDefinitionError, match="is a folder without a databricks.yml"):
        load_job(tmp_path)
