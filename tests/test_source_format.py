"""Databricks source-format notebooks (`# Databricks notebook source`) as notebook tasks, and
`from databricks.sdk.runtime import dbutils` inside tasks."""
from __future__ import annotations

import sys
import textwrap

import pytest

from nbjobs.kernel.source_format import from_source, is_source_notebook, read_notebook
from conftest import task_states, write_script

pytestmark = pytest.mark.timeout(120)

SOURCE = textwrap.dedent('''\
    # Databricks notebook source
    # MAGIC %md
    # MAGIC # Daily load
    # MAGIC Reads the `day` widget.

    # COMMAND ----------

    # DBTITLE 1,Imports
    from databricks.sdk.runtime import dbutils
    import json

    # COMMAND ----------

    # MAGIC %run ./helpers

    # COMMAND ----------

    # MAGIC %sql
    # MAGIC SELECT 1

    # COMMAND ----------

    # MAGIC %sh ls

    # COMMAND ----------

    # MAGIC %pip install nothing

    # COMMAND ----------

    day = dbutils.widgets.get("day")
    ''')


@pytest.mark.pure
def test_cells_markdown_magics_and_titles(tmp_path):
    (tmp_path / "helpers.py").write_text("# Databricks notebook source\nHELP = 1\n")
    assert is_source_notebook(SOURCE) and not is_source_notebook("print(1)\n")
    nb = from_source(SOURCE, base_dir=tmp_path)
    kinds = [(c.cell_type, c.source) for c in nb.cells]
    assert kinds == [
        ("markdown", "# Daily load\nReads the `day` widget."),
        ("code", "from databricks.sdk.runtime import dbutils\nimport json"),
        ("code", '%run -i "./helpers.py"'),
        ("code", "%%sql\nSELECT 1"),
        ("code", "%%sh ls"),
        ("code", "%pip install nothing"),
        ("code", 'day = dbutils.widgets.get("day")'),
    ]
    assert nb.cells[1].metadata["title"] == "Imports"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.pure
def test_plain_py_and_other_languages(tmp_path):
    nb = from_source("x = 1\n\nprint(x)\n")
    assert [c.source for c in nb.cells] == ["x = 1\n\nprint(x)"]
    with pytest.raises(ValueError, match="Databricks SQL notebook; nbjobs runs Python notebooks only"):
        from_source("-- Databricks notebook source\nSELECT 1\n")
    path = tmp_path / "nb.py"
    path.write_text("# Databricks notebook source\r\nprint(1)\r\n# COMMAND ----------\r\nprint(2)\r\n")
    assert [c.source for c in read_notebook(path).cells] == ["print(1)", "print(2)"]


@pytest.mark.kernels
def test_a_source_format_notebook_runs_as_a_notebook_task(workspace, tmp_path):
    src = tmp_path / "src"
    (src).mkdir()
    (src / "helpers.py").write_text("# Databricks notebook source\ndef double(x):\n    return 2 * x\n")
    (src / "etl.py").write_text(textwrap.dedent('''\
        # Databricks notebook source
        # MAGIC %md
        # MAGIC ## ETL

        # COMMAND ----------

        from databricks.sdk.runtime import dbutils, getArgument, spark
        assert spark is None
        day = dbutils.widgets.get("day")

        # COMMAND ----------

        # MAGIC %run ./helpers

        # COMMAND ----------

        dbutils.jobs.taskValues.set("rows", double(21))
        dbutils.notebook.exit(f"loaded {day} via {getArgument('day')}")
        '''))
    write_script(src / "check.py", """
        from databricks.sdk.runtime import dbutils
        assert type(dbutils).__module__ == "nbjobs.kernel.dbutils", type(dbutils)
        print("rows", dbutils.jobs.taskValues.get("etl", "rows"))
    """)
    job_id = workspace.create_job({"name": "source-format", "tasks": [
        {"task_key": "etl", "notebook_task": {"notebook_path": "etl", "base_parameters": {"day": "2026-01-31"}}},
        {"task_key": "check", "depends_on": [{"task_key": "etl"}],
         "spark_python_task": {"python_file": "check.py"}}]}, base_dir=src)
    assert workspace.get_job(job_id)["settings"]["tasks"][0]["notebook_task"]["notebook_path"] == \
        str(src / "etl.py")  # `etl` resolved to etl.py
    run = workspace.run_now(job_id)
    assert task_states(run) == {"etl": "SUCCESS", "check": "SUCCESS"}, \
        [workspace.get_run_output(t["run_id"]).get("error") for t in run["tasks"]]
    tasks = {t["task_key"]: t["run_id"] for t in run["tasks"]}
    assert workspace.get_run_output(tasks["etl"])["notebook_output"]["result"] == "loaded 2026-01-31 via 2026-01-31"
    assert "rows 42" in workspace.get_run_output(tasks["check"])["logs"]
    html = workspace.export_run(tasks["etl"])["views"][0]["content"]
    assert "ETL" in html
    # nothing changed in this (non-task) process
    runtime = sys.modules.get("databricks.sdk.runtime")
    assert runtime is None or "nbjobs" not in runtime.__name__


@pytest.mark.kernels
def test_a_failing_script_reports_its_own_traceback(workspace, tmp_path):
    write_script(tmp_path / "bad.py", """
        import sys
        def main():
            raise KeyError("missing " + sys.argv[1])
        main()
    """)
    job_id = workspace.create_job({"name": "bad", "tasks": [
        {"task_key": "bad", "spark_python_task": {"python_file": "bad.py", "parameters": ["col"]}}]},
        base_dir=tmp_path)
    run = workspace.run_now(job_id)
    output = workspace.get_run_output(run["tasks"][0]["run_id"])
    assert output["error"] == "bad.py exited with code 1: KeyError: 'missing col'"
    trace = output["error_trace"]
    assert trace.startswith("Traceback (most recent call last):")
    assert "bad.py" in trace and "runpy" not in trace and "script_main" not in trace
