"""The panel in a real JupyterLab: build the sample job, add a task and a dependency by clicking,
run it (the nodes go from pending to succeeded/excluded while the kernel is busy with another
cell), a failing task, its details, then Repair turning it green."""
from __future__ import annotations

import time

import pytest

from .conftest import (click_node, graph_info, graph_states, kernel_status, open_notebook, run_cell,
                       wait_graph, write_notebook)

pytestmark = [pytest.mark.timeout(150), pytest.mark.browser]

FLAKY = """
import os, time
time.sleep(1.5)  # long enough to still run while the test keeps the kernel busy
if os.path.exists("FAIL_REPORT"):
    raise RuntimeError("report failed on purpose (FAIL_REPORT exists)")
dbutils.jobs.taskValues.set("pages", 12)
dbutils.notebook.exit("report ok")
"""
DONE = ("succeeded", "excluded", "failed", "upstream_failed", "canceled", "timed_out")


def test_build_run_watch_and_repair(page, lab, tmp_path):
    folder = lab.root / "restaurant"
    write_notebook(folder / "flaky.ipynb", FLAKY)
    (folder / "FAIL_REPORT").write_text("remove me to make the report task pass")
    write_notebook(lab.root / "build.ipynb",
                   'from nbjobs.ui import JobPanel\npanel = JobPanel("restaurant/restaurant_job.yml")\npanel',
                   'import time\ntime.sleep(5)\nprint("kernel was busy")')
    open_notebook(page, lab, "build.ipynb")
    run_cell(page, 0)
    wait_graph(page, "cy.nodes().length === 9 && cy.edges().length >= 12")
    states = graph_states(page)
    assert set(states) == {"ingest", "silver", "gold", "validate", "check_quality", "publish", "quarantine",
                           "cleanup", "alert"}
    assert set(states.values()) == {"none"}
    info = graph_info(page)
    labels = {(e["source"], e["target"]): e["label"] for e in info["edges"]}
    assert labels[("check_quality", "publish")] == "true"
    assert labels[("check_quality", "quarantine")] == "false"
    page.screenshot(path=str(tmp_path / "1-loaded.png"))

    # add a task and a dependency, by clicking
    panel = page.locator(".nbjobs-panel")
    panel.locator(".nbjobs-add-task").click()
    wait_graph(page, "cy.$id('task_1').length === 1")
    key = panel.locator(".nbjobs-task-key input")
    key.fill("report")
    key.press("Enter")
    wait_graph(page, "cy.$id('report').length === 1 && cy.$id('task_1').length === 0")
    path = panel.locator(".nbjobs-task-path input")
    path.fill("flaky.ipynb")
    path.press("Enter")
    panel.locator(".nbjobs-dep-gold input").check()
    wait_graph(page, "cy.edges('[source = \"gold\"][target = \"report\"]').length === 1")
    page.locator(".nbjobs-problems-box .nbjobs-valid").wait_for()
    assert "report" in panel.locator(".nbjobs-yaml").inner_text()
    page.screenshot(path=str(tmp_path / "2-edited.png"))

    # run it; while it runs, make the kernel busy with another cell: the graph keeps updating
    panel.locator(".nbjobs-run").click()
    seen: dict[str, list[str]] = {}
    changed_while_busy = busy_cell_started = False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        now = graph_states(page)
        busy = kernel_status(page) == "busy"
        for k, v in now.items():
            if v != "none" and (not seen.get(k) or seen[k][-1] != v):
                if seen.get(k) and busy and busy_cell_started:
                    changed_while_busy = True
                seen.setdefault(k, []).append(v)
        if not busy_cell_started and seen:
            run_cell(page, 1)  # the kernel is busy for 5 s: the graph must keep updating meanwhile
            busy_cell_started = True
        if all(v in DONE for v in now.values()):
            break
        time.sleep(0.05)
    final = graph_states(page)
    assert final == {"ingest": "succeeded", "silver": "succeeded", "gold": "succeeded", "validate": "succeeded",
                     "check_quality": "succeeded", "publish": "succeeded", "quarantine": "excluded",
                     "cleanup": "succeeded", "alert": "excluded", "report": "failed"}, seen
    for k, history in seen.items():
        assert history[0] in ("pending", "queued", "running"), (k, history)
    assert "pending" in seen["cleanup"], seen["cleanup"]
    assert changed_while_busy, f"no state changed while the kernel ran another cell: {seen}"
    page.locator(".jp-OutputArea-output:has-text('kernel was busy')").wait_for(timeout=30_000)
    fills = {n["id"]: n["fill"] for n in graph_info(page)["nodes"]}
    assert fills["ingest"] == "rgb(165,214,167)" and fills["report"] == "rgb(239,154,154)", fills
    assert panel.locator(".nbjobs-run-summary").get_attribute("data-state") == "failed"

    # the failed node's details: state, error, traceback, a link to the executed notebook
    click_node(page, "report")
    details = panel.locator(".nbjobs-task-details[data-task='report']")
    details.wait_for()
    assert details.get_attribute("data-state") == "failed"
    assert "report failed on purpose" in details.locator(".nbjobs-error").inner_text()
    link = details.locator("a.nbjobs-open")
    assert link.get_attribute("href").endswith("notebook.ipynb")
    assert link.get_attribute("data-commandlinker-command") == "docmanager:open"
    page.screenshot(path=str(tmp_path / "3-failed.png"))

    # Repair: only the failed task reruns and turns green
    (folder / "FAIL_REPORT").unlink()
    panel.locator(".nbjobs-repair").click()
    wait_graph(page, "cy.$id('report').data('state') === 'succeeded'", timeout=60)
    after = graph_states(page)
    assert after == {**final, "report": "succeeded"}
    wait_graph(page, "true")
    summary = panel.locator(".nbjobs-run-summary")
    assert summary.get_attribute("data-state") == "succeeded"
    assert "1 repair" in summary.inner_text()
    click_node(page, "report")
    panel.locator(".nbjobs-task-details[data-task='report'][data-state='succeeded']").wait_for()
    assert "report ok" in details.locator(".nbjobs-exit").inner_text()
    assert "pages" in details.locator(".nbjobs-values").inner_text()
    page.screenshot(path=str(tmp_path / "4-repaired.png"))

    # the executed notebook opens in JupyterLab
    details.locator("a.nbjobs-open").click()
    page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget;"
                           " return w && w.context && w.context.path.endsWith('notebook.ipynb'); }")
