"""Notebook and script executors with real kernels and real subprocesses.

Kernel tests are few: the four golden notebooks run concurrently once per module (which also shows
executions in parallel threads do not interfere), then each test reads its result.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nbformat
import pytest

from nbjobs.kernel.context import CONTEXT_FILE, EXIT_FILE, LOGS_FILE, NOTEBOOK_FILE, TaskContext
from nbjobs.tasks import TaskOutput
from nbjobs.tasks.notebook import run_notebook_task
from nbjobs.tasks.python_script import run_python_task

NOTEBOOKS = Path(__file__).parent / "notebooks"


def context(run_dir: Path, task_key: str = "transform", **overrides) -> TaskContext:
    fields = dict(job_id=1, job_name="golden", run_id=100, task_key=task_key, task_run_id=101, attempt_number=0,
                  parameters={}, upstream_values={"ingest": {"rows": 21}},
                  task_keys=["ingest", task_key, "report"], upstream_tasks=["ingest"], run_dir=str(run_dir),
                  notebook_path=None)
    fields.update(overrides)
    return TaskContext(**fields)


def texts(cell) -> str:
    return "".join(o.get("text", "") if o["output_type"] == "stream" else
                   "".join(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))


def user_cells(nb):
    return [c for c in nb.cells if not {"injected-nbjobs", "injected-parameters", "papermill-error-cell-tag"}
            & set(c.metadata.get("tags", []))]


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """Run params / task_values / exit / fail concurrently; {name: (TaskOutput, run_dir)}."""
    root = tmp_path_factory.mktemp("runs")
    jobs = {
        "params": {"alpha": "from-job", "count": "5", "my-param": "dashed"},
        "task_values": {},
        "exit": {},
        "fail": {},
    }

    async def run_all():
        outs = await asyncio.gather(*(
            run_notebook_task(NOTEBOOKS / f"{name}.ipynb", params, context(root / name), NOTEBOOKS)
            for name, params in jobs.items()))
        return {name: (out, root / name) for name, out in zip(jobs, outs)}

    return asyncio.run(run_all())


@pytest.mark.kernels
def test_parameters_reach_variables_and_widgets(golden):
    out, run_dir = golden["params"]
    assert out.ok and out.error is None and out.output_path == run_dir / NOTEBOOK_FILE
    nb = nbformat.read(out.output_path, as_version=4)
    assert nb.cells[0].metadata["tags"] == ["injected-nbjobs"]
    assert nb.cells[0].metadata["jupyter"]["source_hidden"] is True
    assert [c.metadata.get("tags") for c in nb.cells[1:3]] == [["parameters"], ["injected-parameters"]]
    body = texts(user_cells(nb)[1])
    assert "variable alpha=from-job count=5\n" in body
    assert "widget alpha=from-job\n" in body
    assert "widget my-param=dashed\n" in body          # not an identifier: a widget value only
    assert "widget region=eu-west mode=fast\n" in body  # declared defaults
    assert texts(user_cells(nb)[2]) == f"cwd={NOTEBOOKS}\n"
    saved = TaskContext.load(run_dir / CONTEXT_FILE)
    assert saved.parameters == {"alpha": "from-job", "count": "5", "my-param": "dashed"}
    assert saved.notebook_path == str(NOTEBOOKS / "params.ipynb")
    source = nbformat.read(NOTEBOOKS / "params.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in source.cells)   # the source notebook is never written


@pytest.mark.pure
def test_task_values_keep_json_types(golden):
    out, _ = golden["task_values"]
    assert out.ok
    assert out.values == {"count": 42, "ratio": 0.5, "name": "bronze", "flag": True, "items": [1, "two", None],
                          "meta": {"a": {"b": [1, 2]}}}
    assert type(out.values["count"]) is int
    nb = nbformat.read(out.output_path, as_version=4)
    assert texts(user_cells(nb)[0]) == "rows=21 type=int\n"
    assert texts(user_cells(nb)[1]) == "42\n"             # a task reads its own values


@pytest.mark.pure
def test_exit_ends_the_notebook_successfully(golden):
    out, run_dir = golden["exit"]
    assert out.ok and out.exit_value == "done" and out.error_trace is None
    assert out.values == {"stage": "exited"}
    assert json.loads((run_dir / EXIT_FILE).read_text()) == {"value": "done"}
    nb = nbformat.read(out.output_path, as_version=4)
    cells = user_cells(nb)
    assert texts(cells[0]) == "before exit\n"
    assert texts(cells[1]) == "Notebook exited: done"    # the rest of that cell did not run
    for later in cells[2:]:                               # later cells did not run
        assert later.execution_count is None and later.outputs == []
    assert not any(o["output_type"] == "error" for c in nb.cells for o in c.get("outputs", []))
    assert nb.metadata["papermill"]["exception"] is False


@pytest.mark.pure
def test_failing_notebook_keeps_the_executed_notebook_and_reports_the_error(golden):
    out, run_dir = golden["fail"]
    assert not out.ok
    assert out.error == "ZeroDivisionError: division by zero (in cell 2)"
    assert "\x1b[" not in out.error_trace
    assert "----> 2 x / 0" in out.error_trace and out.error_trace.rstrip().endswith("ZeroDivisionError: division by zero")
    assert out.output_path == run_dir / NOTEBOOK_FILE
    nb = nbformat.read(out.output_path, as_version=4)
    cells = user_cells(nb)
    assert texts(cells[0]) == "first cell ran\n"
    errors = [o for o in cells[1].outputs if o["output_type"] == "error"]
    assert [(e["ename"], e["evalue"]) for e in errors] == [("ZeroDivisionError", "division by zero")]
    assert cells[2].execution_count is None               # papermill stopped there
    assert out.exit_value is None and out.values == {}


@pytest.mark.kernels
def test_notebook_run_returns_the_child_exit_value_and_names_a_failing_child(tmp_path):
    run_dir = tmp_path / "parent"
    out = asyncio.run(run_notebook_task(NOTEBOOKS / "parent.ipynb", {}, context(run_dir), NOTEBOOKS))
    assert out.ok, out.error_trace
    assert out.values == {"child_result": "hello parent x6"}
    nb = nbformat.read(out.output_path, as_version=4)
    cells = user_cells(nb)
    assert texts(cells[0]) == "child said: hello parent x6\n"
    failure = texts(cells[1])
    assert failure.startswith("NotebookRunError: Notebook './child_fails.ipynb' failed: KeyError: 'missing-thing' "
                              "(in cell 1) (executed notebook: ")
    children = run_dir / "children"
    assert sorted(p.name for p in children.glob("*.ipynb")) == ["1-child.ipynb", "2-child_fails.ipynb"]
    child = nbformat.read(children / "1-child.ipynb", as_version=4)
    assert texts(user_cells(child)[1]) == "Notebook exited: hello parent x6"
    assert TaskContext.load(children / "1-child" / CONTEXT_FILE).parameters == {"who": "parent", "n": "3"}


@pytest.mark.kernels
def test_cancelling_a_notebook_task_kills_its_kernel_and_keeps_the_notebook(tmp_path):
    run_dir = tmp_path / "sleep"

    async def main():
        task = asyncio.ensure_future(run_notebook_task(NOTEBOOKS / "sleep.ipynb", {}, context(run_dir), NOTEBOOKS))
        output = run_dir / NOTEBOOK_FILE
        for _ in range(300):                              # until the sleeping cell has started
            await asyncio.sleep(0.05)
            try:
                cell = user_cells(nbformat.read(output, as_version=4))[0]
            except (OSError, ValueError):                 # not written yet, or half written
                continue
            if cell.metadata["papermill"].get("status") == "running":
                await asyncio.sleep(0.5)                  # let it print
                break
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(main()) < 10
    nb = nbformat.read(run_dir / NOTEBOOK_FILE, as_version=4)
    assert texts(user_cells(nb)[0]) == "sleeping\n"


@pytest.mark.kernels
def test_dbutils_outside_a_job_in_a_real_kernel(tmp_path):
    from nbclient import NotebookClient
    nb = nbformat.read(NOTEBOOKS / "interactive.ipynb", as_version=4)
    NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   shutdown_kernel="immediate").execute()
    cells = nb.cells
    widget = cells[1].outputs[0]
    assert widget["output_type"] == "display_data"
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    assert texts(cells[2]) == "color=red\n"
    assert texts(cells[3]) == "7\n"
    assert texts(cells[4]) == "Notebook exited: bye"      # the cell stopped quietly, no error
    assert texts(cells[5]) == "later cells still run interactively\n"


@pytest.mark.kernels
def test_unknown_kernel_and_unreadable_notebook_fail_clearly(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "x", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("1")]
    nbformat.write(nb, tmp_path / "k.ipynb")
    out = asyncio.run(run_notebook_task(tmp_path / "k.ipynb", {}, context(tmp_path / "k"), tmp_path))
    assert out.error == "NoSuchKernel: No such kernel named no-such-kernel"
    (tmp_path / "broken.ipynb").write_text("{not json")
    out = asyncio.run(run_notebook_task(tmp_path / "broken.ipynb", {}, context(tmp_path / "b"), tmp_path))
    assert out.error.startswith(f"cannot read notebook {tmp_path / 'broken.ipynb'}: ")
    assert out.output_path is None


# -- scripts ----------------------------------------------------------------------------------------

@pytest.mark.kernels
def test_script_reads_and_sets_task_values(tmp_path):
    run_dir = tmp_path / "script"
    ctx = context(run_dir, parameters={"env": "prod"})
    out = asyncio.run(run_python_task(NOTEBOOKS / "reader.py", ["--date", "2024-01-01"], ctx, tmp_path))
    assert isinstance(out, TaskOutput) and out.ok, out.error_trace
    assert out.values == {"total": 22, "args": ["--date", "2024-01-01"]}
    assert out.exit_value == "script done" and out.output_path is None
    assert out.logs_path == run_dir / LOGS_FILE
    assert out.logs_path.read_text() == ("argv=['--date', '2024-01-01']\nrows=21 type=int\nwidget env=prod\n")
    assert TaskContext.load(run_dir / CONTEXT_FILE) == ctx


@pytest.mark.kernels
def test_failing_script_reports_exit_code_and_keeps_logs(tmp_path):
    run_dir = tmp_path / "failing"
    out = asyncio.run(run_python_task(NOTEBOOKS / "failing.py", [], context(run_dir), tmp_path))
    assert not out.ok
    assert out.error == "failing.py exited with code 1: ValueError: invalid literal for int() with base 10: " \
                        "'not-a-number'"
    assert out.error_trace.startswith("starting\nTraceback (most recent call last):")
    assert out.error_trace.endswith("ValueError: invalid literal for int() with base 10: 'not-a-number'")
    assert out.logs_path.read_text().startswith("starting\n")


@pytest.mark.kernels
def test_cancelling_a_script_task_kills_it(tmp_path):
    script = tmp_path / "sleepy.py"
    script.write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    run_dir = tmp_path / "sleepy"

    async def main():
        try:
            await asyncio.wait_for(run_python_task(script, [], context(run_dir), tmp_path), timeout=1.5)
        except asyncio.TimeoutError:
            return True
        return False

    started = time.monotonic()
    assert asyncio.run(main())
    assert time.monotonic() - started < 8
    assert (run_dir / LOGS_FILE).read_text() == "up\n"
