"""Every notebook task gets a fresh kernel from the warm pool: nothing one task does is seen by the next."""
from __future__ import annotations

import pytest

import os

import nbformat

from conftest import task_states, write_notebook

pytestmark = pytest.mark.kernels


def outputs(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "stream")


def test_a_variable_an_import_side_effect_and_a_chdir_do_not_leak_into_the_next_task(workspace, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "sneaky.py").write_text("import builtins\nbuiltins.SNEAKY = 'imported'\nLOADED = True\n")
    write_notebook(tmp_path / "first.ipynb", f"""
        import os, sys, sneaky, colorsys
        leaked_variable = 42
        colorsys.rgb_to_hls = lambda *a: "patched"   # a side effect on a module both tasks import
        os.environ["NBJOBS_LEAK"] = "yes"
        os.chdir({str(elsewhere)!r})
        print("first pid", os.getpid(), "cwd", os.getcwd())
        """)
    write_notebook(tmp_path / "second.ipynb", """
        import os, sys, colorsys, builtins
        print("variable", "leaked_variable" in globals())
        print("module", "sneaky" in sys.modules, hasattr(builtins, "SNEAKY"))
        print("patched", colorsys.rgb_to_hls(0, 0, 0))
        print("env", os.environ.get("NBJOBS_LEAK"))
        print("second pid", os.getpid(), "cwd", os.getcwd())
        """)
    job_id = workspace.create_job({"name": "isolation", "tasks": [
        {"task_key": "first", "notebook_task": {"notebook_path": "first.ipynb"}},
        {"task_key": "second", "depends_on": [{"task_key": "first"}],
         "notebook_task": {"notebook_path": "second.ipynb"}}]}, base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert task_states(run) == {"first": "SUCCESS", "second": "SUCCESS"}
    rows = {r["task_key"]: r for r in workspace.task_runs(run["run_id"])}
    first, second = outputs(rows["first"]["output_path"]), outputs(rows["second"]["output_path"])
    assert f"cwd {elsewhere}" in first
    assert "variable False\n" in second
    assert "module False False\n" in second
    assert "patched (0.0, 0.0, 0.0)\n" in second
    assert "env None\n" in second
    assert f"cwd {tmp_path}\n" in second                       # the task's folder, set per task
    first_pid = first.split("first pid ")[1].split()[0]
    second_pid = second.split("second pid ")[1].split()[0]
    assert first_pid != second_pid and first_pid != str(os.getpid())
    assert {r["compute"] for r in rows.values()} == {"local"}


def test_random_state_differs_between_pooled_kernels(workspace, tmp_path):
    """Kernels forked from one server reseed `random`: two tasks do not draw the same numbers."""
    write_notebook(tmp_path / "draw.ipynb", "import random\nprint('draw', random.random())")
    job_id = workspace.create_job({"name": "draws", "tasks": [
        {"task_key": f"d{i}", "notebook_task": {"notebook_path": "draw.ipynb"}} for i in range(3)]},
        base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert set(task_states(run).values()) == {"SUCCESS"}
    draws = {outputs(r["output_path"]) for r in workspace.task_runs(run["run_id"])}
    assert len(draws) == 3
