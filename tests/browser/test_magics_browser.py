"""`%load_ext nbjobs` in a real JupyterLab: the %%job magic's panel and run, its readable problem
list, a %job table, and the interactive `dbutils` widgets."""
from __future__ import annotations

import pytest

from .conftest import cell_output, graph_info, open_notebook, run_cell, wait_graph, wait_idle, write_notebook

pytestmark = [pytest.mark.timeout(120), pytest.mark.browser]

JOB_CELL = '''%%job magic-demo --run --job-param who=Ada
parameters:
  - {name: who, default: world}
tasks:
  - task_key: hello
    notebook_task: {notebook_path: hello.ipynb}
  - task_key: check
    depends_on: [{task_key: hello}]
    condition_task: {op: EQUAL_TO, left: "{{tasks.hello.values.n}}", right: "3"}
  - task_key: yes_branch
    depends_on: [{task_key: check, outcome: "true"}]
    notebook_task: {notebook_path: hello.ipynb}
  - task_key: no_branch
    depends_on: [{task_key: check, outcome: "false"}]
    notebook_task: {notebook_path: hello.ipynb}
'''
BROKEN_CELL = '''%%job broken
tasks:
  - task_key: a
    depends_on: [{task_key: ghost}]
    notebook_task: {notebook_path: nowhere.ipynb}
'''


def test_job_magic_registers_runs_and_reports_problems(page, lab, tmp_path):
    folder = lab.root / "magic"
    write_notebook(folder / "hello.ipynb", 'print("hello", dbutils.widgets.get("who"))\n'
                                          'dbutils.jobs.taskValues.set("n", 3)')
    write_notebook(folder / "magic.ipynb", "%load_ext nbjobs", JOB_CELL, BROKEN_CELL, "%job list")
    open_notebook(page, lab, "magic/magic.ipynb")
    for i in range(4):
        run_cell(page, i)
    wait_graph(page, "cy.nodes().length === 4 && ['hello', 'check', 'yes_branch'].every("
                     "k => cy.$id(k).data('state') === 'succeeded') && "
                     "cy.$id('no_branch').data('state') === 'excluded'", timeout=60)
    edges = {(e["source"], e["target"]): e["label"] for e in graph_info(page)["edges"]}
    assert edges == {("hello", "check"): None, ("check", "yes_branch"): "true", ("check", "no_branch"): "false"}
    panel = cell_output(page, 1).locator(".nbjobs-panel")
    assert "magic-demo" in panel.locator(".nbjobs-title").inner_text()
    assert "Run" in panel.locator(".nbjobs-run-summary").inner_text()

    broken = cell_output(page, 2)
    broken.locator(".nbjobs-problems").wait_for()
    text = broken.inner_text()
    assert "2 problems" in text
    assert "depends on unknown task 'ghost'" in text
    assert "nowhere.ipynb" in text
    assert "Traceback" not in text
    assert broken.locator(".nbjobs-panel").count() == 0

    wait_idle(page)
    table = cell_output(page, 3)
    table.locator("text=magic-demo").wait_for()
    assert "job_id" in table.inner_text()
    page.screenshot(path=str(tmp_path / "magic.png"), full_page=True)


def test_interactive_dbutils_widgets(page, lab, tmp_path):
    write_notebook(lab.root / "widgets.ipynb",
                   '%load_ext nbjobs\ndbutils.widgets.text("city", "Paris", "City")\n'
                   'dbutils.widgets.dropdown("size", "S", ["S", "M", "L"])',
                   'print("VALUES", dbutils.widgets.get("city"), dbutils.widgets.get("size"))')
    open_notebook(page, lab, "widgets.ipynb")
    run_cell(page, 0)
    out = cell_output(page, 0)
    city = out.locator(".widget-text input")
    city.wait_for()
    assert city.input_value() == "Paris"
    assert "City" in out.inner_text()
    city.fill("Lyon")
    city.press("Enter")
    out.locator(".widget-dropdown select").select_option("L")
    page.wait_for_timeout(300)  # the new values travel to the kernel
    run_cell(page, 1)
    cell_output(page, 1).locator("text=VALUES Lyon L").wait_for()
    page.screenshot(path=str(tmp_path / "widgets.png"), full_page=True)
