"""The dbutils shim in-process (no kernels): widgets, task values, exit, context files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbjobs.kernel import InputWidgetNotDefined, TaskContext, activate, dbutils, deactivate
from nbjobs.kernel.context import CONTEXT_FILE, ENV_VAR, EXIT_FILE, VALUES_FILE, read_exit_value, read_values
from nbjobs.kernel.dbutils import MAX_VALUE_BYTES, _session

NOTEBOOKS = Path(__file__).parent / "notebooks"


def make_context(run_dir: Path, **overrides) -> TaskContext:
    fields = dict(job_id=7, job_name="nightly", run_id=11, task_key="transform", task_run_id=12,
                  attempt_number=0, parameters={"env": "prod", "date": "2024-01-01"},
                  upstream_values={"ingest": {"rows": 42, "path": "/data/x", "ok": True}},
                  task_keys=["ingest", "transform", "report", "side"], upstream_tasks=["ingest"],
                  run_dir=str(run_dir), notebook_path=str(NOTEBOOKS / "params.ipynb"))
    fields.update(overrides)
    return TaskContext(**fields)


@pytest.fixture(autouse=True)
def interactive(monkeypatch):
    """Every test starts outside a job, with no context in the environment."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    dbutils.widgets.removeAll()
    deactivate()
    yield
    dbutils.widgets.removeAll()
    deactivate()


@pytest.fixture
def job(tmp_path):
    context = make_context(tmp_path / "run")
    Path(context.run_dir).mkdir()
    activate(context)
    return context


# -- TaskContext ----------------------------------------------------------------------------------

@pytest.mark.pure
def test_context_json_round_trip(tmp_path):
    ctx = make_context(tmp_path, notebook_path=None, job_id=None)
    again = TaskContext.from_json(ctx.to_json())
    assert again == ctx
    assert again.upstream_values["ingest"]["rows"] == 42 and isinstance(again.upstream_values["ingest"]["rows"], int)
    path = ctx.save(tmp_path / "sub" / CONTEXT_FILE)
    assert TaskContext.load(path) == ctx
    assert not [p for p in path.parent.iterdir() if p.name != CONTEXT_FILE]  # no temp files left


@pytest.mark.pure
def test_context_from_json_tolerates_new_fields_and_names_missing_ones():
    data = make_context(Path("/r")).to_dict()
    data["added_later"] = 1
    data["parameters"] = {"n": 3}
    ctx = TaskContext.from_dict(data)
    assert ctx.parameters == {"n": "3"}
    with pytest.raises(ValueError, match="task context is missing task_key"):
        TaskContext.from_json(json.dumps({"job_name": "j"}))


@pytest.mark.kernels
def test_kernel_package_is_light():
    code = ("import sys, nbjobs.kernel; from nbjobs.kernel import dbutils; "
            "heavy = {'pydantic', 'sqlalchemy', 'IPython', 'ipywidgets', 'papermill', 'nbformat', 'nbclient'}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- widgets in a job -----------------------------------------------------------------------------

@pytest.mark.pure
def test_widgets_in_a_job_read_parameters_then_declared_defaults(job):
    w = dbutils.widgets
    assert w.get("env") == "prod"
    w.text("env", "dev")                      # the job's value wins over the declared default
    w.text("limit", "10", "Row limit")
    w.combobox("fmt", "csv", ["csv", "json"])
    w.multiselect("cols", "a", ["a", "b", "c"])
    assert (w.get("env"), w.get("limit"), w.get("fmt"), w.get("cols")) == ("prod", "10", "csv", "a")
    assert w.getAll() == {"env": "prod", "date": "2024-01-01", "limit": "10", "fmt": "csv", "cols": "a"}
    assert w.getArgument("limit") == "10"
    assert w.getArgument("nope", "fallback") == "fallback"
    w.remove("limit")
    with pytest.raises(InputWidgetNotDefined) as info:
        w.get("limit")
    assert str(info.value) == "InputWidgetNotDefined: No input widget named 'limit' is defined"
    w.removeAll()
    assert w.get("env") == "prod"             # job parameters stay readable


@pytest.mark.pure
def test_widget_errors_a_user_sees(job):
    w = dbutils.widgets
    with pytest.raises(InputWidgetNotDefined, match="No input widget named 'missing' is defined"):
        w.get("missing")
    with pytest.raises(InputWidgetNotDefined):
        w.getArgument("missing")
    with pytest.raises(ValueError) as info:
        w.dropdown("mode", "medium", ["fast", "slow"])
    assert str(info.value) == "Default value 'medium' of dropdown widget 'mode' must be one of the choices: 'fast', 'slow'"
    with pytest.raises(ValueError, match="multiselect widget 'cols' must be among the choices: 'a', 'b'"):
        w.multiselect("cols", "a,z", ["a", "b"])
    with pytest.raises(ValueError, match="Widget name must be a non-empty string"):
        w.text("", "x")
    with pytest.raises(TypeError, match="choices of dropdown widget 'd' must be a list of strings"):
        w.dropdown("d", "a", "abc")
    with pytest.raises(InputWidgetNotDefined):
        w.remove("never-declared")


# -- widgets outside a job ------------------------------------------------------------------------

@pytest.mark.pure
def test_widgets_outside_a_job_are_real_controls_whose_value_get_follows():
    import ipywidgets
    w = dbutils.widgets
    w.text("name", "Ada", "Your name")
    w.dropdown("color", "red", ["red", "blue"])
    w.combobox("city", "Paris", ["Paris", "Rome"])
    w.multiselect("days", "mon", ["mon", "tue", "wed"])
    controls = {name: control for name, (_, control) in w._controls.items()}
    assert isinstance(controls["name"], ipywidgets.Text) and controls["name"].description == "Your name"
    assert isinstance(controls["color"], ipywidgets.Dropdown)
    assert isinstance(controls["city"], ipywidgets.Combobox)
    assert isinstance(controls["days"], ipywidgets.SelectMultiple)
    assert w.getAll() == {"name": "Ada", "color": "red", "city": "Paris", "days": "mon"}

    controls["name"].value = "Grace"
    controls["color"].value = "blue"
    controls["city"].value = "Oslo"                # a combobox accepts free text
    controls["days"].value = ("mon", "wed")
    assert [w.get(n) for n in ("name", "color", "city", "days")] == ["Grace", "blue", "Oslo", "mon,wed"]

    w.text("name", "Ada")                          # re-running the cell reuses the control, keeps the value
    w.dropdown("color", "red", ["red", "blue", "green"])
    assert w._controls["name"][1] is controls["name"] and w.get("name") == "Grace"
    assert w._controls["color"][1] is controls["color"] and w.get("color") == "blue"
    assert list(controls["color"].options) == ["red", "blue", "green"]

    w.remove("name")
    assert controls["name"].comm is None           # closed
    with pytest.raises(InputWidgetNotDefined):
        w.get("name")
    w.removeAll()
    assert controls["color"].comm is None and w.getAll() == {}


# -- task values ----------------------------------------------------------------------------------

@pytest.mark.pure
def test_task_values_set_persists_json_types_immediately(job):
    tv = dbutils.jobs.taskValues
    tv.set("count", 3)
    values_file = Path(job.run_dir) / VALUES_FILE
    assert json.loads(values_file.read_text()) == {"count": 3}
    tv.set("pair", (1, "b"))
    tv.set("nested", {"a": [1.5, None, False]})
    assert read_values(job.run_dir) == {"count": 3, "pair": [1, "b"], "nested": {"a": [1.5, None, False]}}
    assert tv.get("transform", "count") == 3  # the task's own values
    assert tv.get("transform", "pair") == [1, "b"]
    assert sorted(p.name for p in Path(job.run_dir).iterdir()) == [VALUES_FILE]


@pytest.mark.pure
def test_task_values_size_limit_is_48_kib_of_json(job):
    tv = dbutils.jobs.taskValues
    tv.set("just_fits", "x" * (MAX_VALUE_BYTES - 2))    # two quotes make 49,152 bytes
    with pytest.raises(ValueError) as info:
        tv.set("big", "x" * (MAX_VALUE_BYTES - 1))
    assert str(info.value) == ("Task value 'big' is too large: its JSON form is 49,153 bytes; "
                               "the limit is 48 KiB (49,152 bytes)")
    assert "big" not in read_values(job.run_dir)


@pytest.mark.pure
def test_task_values_set_rejects_bad_keys_and_values(job):
    tv = dbutils.jobs.taskValues
    with pytest.raises(ValueError, match="Task value key must be a non-empty string, got ''"):
        tv.set("", 1)
    with pytest.raises(ValueError, match="Task value key must be a non-empty string, got 5"):
        tv.set(5, 1)
    with pytest.raises(ValueError, match="Task value 's' must be JSON-serialisable: Object of type set"):
        tv.set("s", {1, 2})
    with pytest.raises(ValueError, match="Task value 'nan' must be JSON-serialisable"):
        tv.set("nan", float("nan"))


@pytest.mark.pure
def test_task_values_get_in_a_job(job):
    tv = dbutils.jobs.taskValues
    rows = tv.get("ingest", "rows")
    assert rows == 42 and type(rows) is int
    assert tv.get("ingest", "ok") is True
    assert tv.get("ingest", "absent", default=0) == 0
    with pytest.raises(ValueError) as info:
        tv.get("ingest", "absent")
    assert str(info.value) == "Task 'ingest' did not set a task value with key 'absent' (pass default= to get a fallback)"
    with pytest.raises(ValueError) as info:
        tv.get("report", "rows")
    assert str(info.value) == ("Cannot read task values of 'report': task 'report' is not upstream of "
                               "'transform'; add it to depends_on")
    with pytest.raises(ValueError) as info:
        tv.get("ingset", "rows")
    assert str(info.value) == ("Cannot read task values of 'ingset': job 'nightly' has no task 'ingset' "
                               "(tasks: 'ingest', 'transform', 'report', 'side')")
    assert tv.get("ingest", "rows", debugValue=1) == 42  # debugValue is only for outside a job


@pytest.mark.pure
def test_task_values_outside_a_job():
    tv = dbutils.jobs.taskValues
    assert tv.get("ingest", "rows", debugValue=5) == 5
    assert tv.get("ingest", "rows", default=1, debugValue="d") == "d"
    with pytest.raises(TypeError) as info:
        tv.get("ingest", "rows")
    assert str(info.value) == ("Must pass debugValue when calling get outside of a job context. "
                               "debugValue cannot be None.")
    tv.set("kept", [1])                              # no error, kept in memory only
    assert _session.values == {"kept": [1]}


# -- context from the environment (scripts) --------------------------------------------------------

@pytest.mark.pure
def test_context_is_read_lazily_from_the_environment(tmp_path, monkeypatch):
    ctx = make_context(tmp_path)
    path = ctx.save(tmp_path / CONTEXT_FILE)
    monkeypatch.setenv(ENV_VAR, str(path))
    _session.reset()                                 # as in a fresh process
    assert dbutils.widgets.get("env") == "prod"
    dbutils.jobs.taskValues.set("from_script", 1)
    assert read_values(tmp_path) == {"from_script": 1}


@pytest.mark.pure
def test_unreadable_context_in_the_environment_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope.json"))
    _session.reset()
    with pytest.raises(RuntimeError, match=f"{ENV_VAR}=.*nope.json does not name a readable task context"):
        dbutils.widgets.get("x")


# -- notebook.exit / notebook.run without a kernel -------------------------------------------------

@pytest.mark.pure
def test_exit_in_a_script_task_writes_the_value_then_exits_0(job):
    with pytest.raises(SystemExit) as info:
        dbutils.notebook.exit({"rows": 3})
    assert info.value.code == 0
    assert json.loads((Path(job.run_dir) / EXIT_FILE).read_text()) == {"value": "{'rows': 3}"}
    assert read_exit_value(job.run_dir) == "{'rows': 3}"


@pytest.mark.pure
def test_exit_outside_a_job_without_ipython_prints_the_value(capsys):
    with pytest.raises(SystemExit) as info:
        dbutils.notebook.exit(5)
    assert info.value.code == 0
    assert capsys.readouterr().out == "Notebook exited: 5\n"


@pytest.mark.pure
def test_notebook_run_names_a_missing_notebook(job):
    with pytest.raises(FileNotFoundError) as info:
        dbutils.notebook.run("nowhere", 10)
    message = str(info.value)
    assert message.startswith("Notebook 'nowhere' not found (looked for ")
    assert str(NOTEBOOKS / "nowhere") in message and str(NOTEBOOKS / "nowhere.ipynb") in message


# -- notebook preparation (papermill, no kernel) ---------------------------------------------------

@pytest.mark.pure
def test_prepare_injects_context_cell_first_and_parameters_after_the_parameters_cell(tmp_path):
    from nbjobs.kernel.execute import INJECTED_TAG, prepare_notebook
    source = NOTEBOOKS / "params.ipynb"
    before = source.read_bytes()
    nb = prepare_notebook(source, tmp_path / CONTEXT_FILE, {"alpha": "A", "my-param": "x", "class": "c"},
                          workdir=tmp_path)
    assert source.read_bytes() == before
    first = nb.cells[0]
    assert first.metadata["tags"] == [INJECTED_TAG] and first.metadata["jupyter"]["source_hidden"] is True
    assert f"activate({str(tmp_path / CONTEXT_FILE)!r}, cwd={str(tmp_path)!r})" in first.source
    tags = [c.metadata.get("tags") for c in nb.cells]
    assert tags[1] == ["parameters"] and tags[2] == ["injected-parameters"]
    assert 'alpha = "A"' in nb.cells[2].source
    assert "my-param" not in nb.cells[2].source and "class" not in nb.cells[2].source

    plain = prepare_notebook(NOTEBOOKS / "fail.ipynb", tmp_path / CONTEXT_FILE, {"alpha": "A"})
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in plain.cells)
    assert len(plain.cells) == 4


@pytest.mark.pure
def test_script_error_summary():
    from nbjobs.compute.subprocess import _summary
    lines = ["starting", "Traceback (most recent call last):", '  File "x.py", line 3, in <module>',
             "    parse('a')", "ValueError: invalid literal for int() with base 10: 'a'"]
    assert _summary("x.py", 1, lines) == "x.py exited with code 1: ValueError: invalid literal for int() with base 10: 'a'"
    assert _summary("x.py", 3, ["fatal: no input"]) == "x.py exited with code 3: fatal: no input"
    assert _summary("x.py", 2, []) == "x.py exited with code 2"
    assert _summary("x.py", -9, []) == "x.py was killed by SIGKILL"


@pytest.mark.pure
def test_no_stray_state_between_tests():
    assert dbutils.widgets.getAll() == {} and os.environ.get(ENV_VAR) is None


@pytest.mark.pure
def test_an_exit_that_surfaced_as_an_error_output_still_counts_as_success():
    import nbformat
    from nbjobs.kernel.execute import EXIT_ENAME, _finish_exit, _first_error
    nb = nbformat.v4.new_notebook()
    exit_cell = nbformat.v4.new_code_cell("dbutils.notebook.exit('done')", execution_count=1)
    exit_cell.outputs = [nbformat.v4.new_output("error", ename=EXIT_ENAME, evalue="done", traceback=["..."])]
    later = nbformat.v4.new_code_cell("1/0", execution_count=2)
    nb.cells = [exit_cell, later]
    assert _first_error(nb)[1]["ename"] == EXIT_ENAME
    _finish_exit(nb)
    assert _first_error(nb) is None
    assert exit_cell.outputs[0]["output_type"] == "display_data"
    assert exit_cell.outputs[0]["data"]["text/plain"] == "Notebook exited: done"
    assert later.execution_count is None and later.metadata["nbjobs"] == {"skipped": "dbutils.notebook.exit() was called"}
