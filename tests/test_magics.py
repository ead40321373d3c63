"""`%load_ext nbjobs` in an IPython shell: %%job, every %job verb, and the interactive dbutils.
What a user sees: a panel, a table or a readable message, never a traceback or a raw dict."""
from __future__ import annotations

import os
import time

import pytest
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import capture_output

import nbjobs
from conftest import write_notebook
from nbjobs.ui import JobPanel, use

pytestmark = pytest.mark.timeout(240)

JOB = """
parameters:
  - {name: who, default: world}
tasks:
  - task_key: hello
    notebook_task: {notebook_path: hello.ipynb}
  - task_key: check
    depends_on: [{task_key: hello}]
    condition_task: {op: EQUAL_TO, left: "{{tasks.hello.values.n}}", right: "3"}
  - task_key: flaky
    depends_on: [{task_key: check, outcome: "true"}]
    notebook_task: {notebook_path: flaky.ipynb}
"""


@pytest.fixture(scope="module")
def ip():
    shell = start_ipython()
    shell.run_line_magic("load_ext", "nbjobs")
    return shell


@pytest.fixture
def nb(ip, workspace, tmp_path, monkeypatch):
    """An IPython shell in a notebook folder, the magics on a fresh workspace."""
    folder = tmp_path / "nb"
    write_notebook(folder / "hello.ipynb", "print('hello', dbutils.widgets.get('who'))\n"
                                           "dbutils.jobs.taskValues.set('n', 3)")
    write_notebook(folder / "flaky.ipynb", "import os\nassert not os.path.exists('FAIL'), 'flaky failed'")
    monkeypatch.chdir(folder)
    use(workspace)
    yield ip
    use(None)


def shown(cap) -> str:
    """The text/plain of everything displayed (and printed)."""
    parts = [o.data.get("text/plain", "") for o in cap.outputs] + [cap.stdout, cap.stderr]
    return "\n".join(parts)


def cell(ip, line: str, body: str):
    with capture_output() as cap:
        result = ip.run_cell_magic("job", line, body)
    return result, cap


def line(ip, text: str):
    with capture_output() as cap:
        result = ip.run_line_magic("job", text)
    return result, cap


def wait_states(panel: JobPanel, expected: dict, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while panel.states != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert panel.states == expected


@pytest.mark.pure
def test_load_ext_gives_dbutils_and_the_magics(ip):
    from nbjobs.kernel import dbutils
    assert ip.user_ns["dbutils"] is dbutils is nbjobs.dbutils
    assert "job" in ip.magics_manager.magics["cell"] and "job" in ip.magics_manager.magics["line"]


@pytest.mark.kernels
def test_job_cell_validates_registers_shows_and_runs(nb, workspace):
    panel, cap = cell(nb, "greet --run --job-param who=Ada", JOB)
    assert isinstance(panel, JobPanel)
    jobs = workspace.list_jobs(name="greet")
    assert [j["job_id"] for j in jobs] == [panel.job_id]
    assert panel.run_id is not None
    wait_states(panel, {"hello": "succeeded", "check": "succeeded", "flaky": "succeeded"})
    run = workspace.get_run(panel.run_id)
    assert {p["name"]: p["value"] for p in run["job_parameters"]} == {"who": "Ada"}
    assert "Traceback" not in shown(cap)
    # the same cell again updates the job (no second job), and without --run does not run
    panel2, _ = cell(nb, "greet", JOB)
    assert panel2.job_id == panel.job_id and len(workspace.list_jobs(name="greet")) == 1
    assert panel2.run_id is None and panel2.history.options  # the earlier run is in the history


@pytest.mark.pure
def test_job_cell_problems_are_a_readable_list(nb, workspace):
    result, cap = cell(nb, "broken", "tasks:\n  - task_key: a\n    depends_on: [{task_key: ghost}]\n"
                                     "    notebook_task: {notebook_path: nowhere.ipynb}\n")
    assert result is None
    text = shown(cap)
    assert "Invalid job definition: 2 problems" in text
    assert "tasks[0] (a).depends_on[0].task_key: depends on unknown task 'ghost'" in text
    assert "nowhere.ipynb" in text and "Traceback" not in text
    html = cap.outputs[0].data["text/html"]
    assert "nbjobs-problems" in html and "2 problems" in html
    assert workspace.list_jobs() == []

    result, cap = cell(nb, "", "tasks: [unclosed\n")
    assert result is None and "not valid YAML or JSON (line" in shown(cap)
    result, cap = cell(nb, "", "- just\n- a list\n")
    assert result is None and "must hold a job" in shown(cap)
    result, cap = cell(nb, "x --job-param nothing", JOB)
    assert result is None and "expected NAME=VALUE" in shown(cap)
    # JSON works as well as YAML
    panel, _ = cell(nb, "", '{"name": "as-json", "tasks": [{"task_key": "t", '
                            '"notebook_task": {"notebook_path": "hello.ipynb"}}]}')
    assert panel.job_id == workspace.list_jobs(name="as-json")[0]["job_id"]


@pytest.mark.kernels
def test_job_verbs(nb, workspace, tmp_path):
    os.close(os.open("FAIL", os.O_CREAT))
    panel, _ = cell(nb, "verbs", JOB)
    run_panel, cap = line(nb, "run verbs --job-param who=Bob")
    assert isinstance(run_panel, JobPanel) and run_panel.job_id == panel.job_id
    run = run_panel.wait(timeout=120)
    assert run["state"]["result_state"] == "FAILED"
    run_id = run["run_id"]

    _, cap = line(nb, "runs verbs")
    text = shown(cap)
    assert str(run_id) in text and "FAILED" in text and "run_id" in text
    assert "text/html" in cap.outputs[0].data
    _, cap = line(nb, "list --tag nothing")
    assert "verbs" not in shown(cap)
    _, cap = line(nb, "list")
    assert "verbs" in shown(cap) and "job_id" in shown(cap)

    shown_panel, _ = line(nb, f"show {run_id}")
    assert shown_panel.run_id == run_id and shown_panel.states["flaky"] == "failed"

    os.unlink("FAIL")
    repaired, _ = line(nb, f"repair {run_id}")
    assert repaired.wait(timeout=120)["state"]["result_state"] == "SUCCESS"
    wait_states(repaired, {"hello": "succeeded", "check": "succeeded", "flaky": "succeeded"})
    again, _ = line(nb, f"repair {run_id} --rerun-tasks hello --rerun-dependents")
    run = again.wait(timeout=120)
    assert [r["type"] for r in run["repair_history"]] == ["ORIGINAL", "REPAIR", "REPAIR"]

    _, cap = line(nb, "run nosuchjob")
    assert "No job named 'nosuchjob'" in shown(cap) and "'verbs'" in shown(cap)
    _, cap = line(nb, "show 999999")
    assert "Run 999999 does not exist" in shown(cap)
    _, cap = line(nb, f"repair {run_id}")  # nothing failed any more (the latest repair id is passed)
    assert f"Run {run_id} has no failed task to repair" in shown(cap)


@pytest.mark.kernels
def test_cancel_shows_the_run_table(nb, workspace, tmp_path):
    write_notebook(tmp_path / "nb" / "slow.ipynb", "import time\ntime.sleep(60)")
    panel, _ = cell(nb, "slow --run", "tasks:\n  - task_key: slow\n    notebook_task: {notebook_path: slow.ipynb}\n")
    deadline = time.monotonic() + 120
    while panel.states.get("slow") != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    _, cap = line(nb, f"cancel {panel.run_id}")
    text = shown(cap)
    assert f"Run {panel.run_id}" in text and "CANCELED" in text


@pytest.mark.kernels
def test_validate_and_batch(nb, workspace, tmp_path):
    from conftest import ROOT
    _, cap = line(nb, f"validate {ROOT / 'sample_notebooks' / 'restaurant_job.yml'}")
    assert "OK: job 'restaurant-pipeline' (9 tasks)" in shown(cap)
    bad = tmp_path / "bad.yml"
    bad.write_text("tasks:\n  - task_key: a\n    run_if: SOMETIMES\n    notebook_task: {notebook_path: x.ipynb}\n")
    _, cap = line(nb, f"validate {bad}")
    text = shown(cap)
    assert "'SOMETIMES' is not a run_if value" in text and "Traceback" not in text
    _, cap = line(nb, "validate nowhere.yml")
    assert "nowhere.yml" in shown(cap)

    batch, _ = line(nb, "batch hello.ipynb --grid who=a,b,c --concurrency 2")
    assert isinstance(batch, JobPanel)
    run = batch.wait(timeout=120)
    assert run["state"]["result_state"] == "SUCCESS"
    deadline = time.monotonic() + 10
    while "3/3" not in batch.graph.node("batch").data["label"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batch.graph.node("batch").data["label"] == "batch\n3/3"  # the for-each node's done/total
    assert batch.states == {"batch": "succeeded"}


@pytest.mark.pure
def test_usage_errors_are_one_line_messages(nb):
    with capture_output() as cap:
        result = nb.run_cell("%job bogus")
    assert result.error_in_exec is not None and type(result.error_in_exec).__name__ == "UsageError"
    assert "invalid choice: 'bogus'" in str(result.error_in_exec)
    assert "Traceback" not in cap.stdout + cap.stderr
    _, cap = line(nb, "help")
    assert "%job repair RUN_ID" in shown(cap)


@pytest.mark.pure
def test_interactive_widgets_render_and_get_returns_the_current_value(nb):
    with capture_output() as cap:
        nb.run_cell('dbutils.widgets.text("city", "Paris", "City")\n'
                    'dbutils.widgets.dropdown("size", "S", ["S", "M", "L"])')
    views = [o.data for o in cap.outputs if "application/vnd.jupyter.widget-view+json" in o.data]
    assert len(views) == 2
    widgets = nb.user_ns["dbutils"].widgets
    assert widgets.get("city") == "Paris"
    kind, control = widgets._controls["city"]
    control.value = "Lyon"  # the user types
    widgets._controls["size"][1].value = "L"
    assert widgets.get("city") == "Lyon" and widgets.get("size") == "L"
    assert widgets.getAll() == {"city": "Lyon", "size": "L"}
    widgets.removeAll()
