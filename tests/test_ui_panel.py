"""The Jupyter panel driven in-process: what a user sees in its widgets, graph and status lines.
(The same panel in a real JupyterLab and Chromium: tests/browser.)"""
from __future__ import annotations

import json
import threading
import time

import pytest
import yaml

from conftest import write_notebook
from nbjobs.tasks.registry import TaskKind, register, unregister
from nbjobs.ui import JobPanel, ui_state
from nbjobs.ui.editor import new_task
from nbjobs.ui.states import STATE_NAMES, legend_html, progress

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    write_notebook(src / "hello.ipynb", "print('hello', dbutils.widgets.get('who'))\n"
                                        "dbutils.jobs.taskValues.set('n', 3)\n"
                                        "dbutils.notebook.exit('said hello')")
    write_notebook(src / "flaky.ipynb", "import os\n"
                                        "if os.path.exists('FAIL'):\n"
                                        "    raise RuntimeError('flaky failed on purpose')\n"
                                        "dbutils.jobs.taskValues.set('ok', True)")
    write_notebook(src / "slow.ipynb", "import time\ntime.sleep(60)")
    (src / "tool.py").write_text("print('tool')\n")
    return src


def two_task_job() -> dict:
    return {"name": "two", "parameters": [{"name": "who", "default": "world"}],
            "tasks": [{"task_key": "hello", "notebook_task": {"notebook_path": "hello.ipynb"}},
                      {"task_key": "flaky", "depends_on": [{"task_key": "hello"}],
                       "notebook_task": {"notebook_path": "flaky.ipynb"}}]}


def node_classes(panel, key):
    return panel.graph.node(key).classes.split()


# -- pure parts ------------------------------------------------------------------------------------
@pytest.mark.pure
@pytest.mark.parametrize("state, expected", [
    ({"life_cycle_state": "PENDING"}, "pending"),
    ({"life_cycle_state": "QUEUED"}, "queued"),
    ({"life_cycle_state": "BLOCKED"}, "queued"),
    ({"life_cycle_state": "RUNNING"}, "running"),
    ({"life_cycle_state": "WAITING_FOR_RETRY"}, "waiting_for_retry"),
    ({"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}, "succeeded"),
    ({"life_cycle_state": "TERMINATED", "result_state": "FAILED"}, "failed"),
    ({"life_cycle_state": "TERMINATED", "result_state": "TIMEDOUT"}, "timed_out"),
    ({"life_cycle_state": "TERMINATED", "result_state": "CANCELED"}, "canceled"),
    ({"life_cycle_state": "SKIPPED", "result_state": "EXCLUDED"}, "excluded"),
    ({"life_cycle_state": "SKIPPED", "result_state": "UPSTREAM_FAILED"}, "upstream_failed"),
    ({"life_cycle_state": "SKIPPED", "result_state": "UPSTREAM_CANCELED"}, "upstream_canceled"),
    ({"life_cycle_state": "SKIPPED"}, "skipped"),
    ({"life_cycle_state": "SKIPPED", "result_state": "DISABLED"}, "disabled"),
])
def test_every_state_has_a_node_state_and_a_legend_entry(state, expected):
    assert ui_state({"state": state}) == expected
    assert expected in STATE_NAMES
    assert f'data-state="{expected}"' in legend_html()


@pytest.mark.pure
def test_for_each_progress_is_done_over_total():
    task = {"for_each_task": {"stats": {"task_run_stats": {"total_iterations": 5, "completed_iterations": 2}}}}
    assert progress(task) == "2/5"
    assert progress({"notebook_task": {}}) is None


# -- building ----------------------------------------------------------------------------------------
@pytest.mark.pure
def test_building_a_job_shows_problems_as_they_are_made(workspace, folder):
    panel = JobPanel(client=workspace, base_dir=folder)
    assert panel.task_keys == [] and "at least one task" in panel.problems_html.value
    assert panel.run_button.disabled

    panel.add_task()  # what "+ Add task" does
    assert panel.task_keys == ["task_1"]
    assert "notebook_path" in panel.problems_html.value
    assert "has-problem" in node_classes(panel, "task_1")
    assert "nbjobs-task-problems" in panel.form.problems._dom_classes
    assert "notebook" in panel.form.problems.value

    # the user types in the form: the dict, the graph and the problems follow
    panel.form.key.value = "hello"
    panel.form.path.value = "hello.ipynb"
    assert panel.task_keys == ["hello"]
    assert panel.problems == [] and "nbjobs-valid" in panel.problems_html.value
    assert "has-problem" not in node_classes(panel, "hello")
    assert not panel.run_button.disabled
    assert "hello.ipynb" in panel.form.path.options  # the file chooser lists the folder's notebooks

    panel.add_task("condition", key="check", left="{{tasks.hello.values.n}}", op="GREATER_THAN", right="2")
    panel.depend("check", "hello")
    panel.add_task(key="big")
    panel.form.path.value = "hello.ipynb"
    # tick "check" in the depends-on list of "big": a condition upstream gets an outcome
    boxes = {w.children[0].description: w.children for w in panel.form.deps_box.children}
    boxes["check"][1].value = "false"
    boxes["check"][0].value = True
    assert panel.task("big")["depends_on"] == [{"task_key": "check", "outcome": "false"}]
    assert {e["id"]: e.get("label") for e in panel.graph.edges} == {"hello->check": None, "check->big": "false"}
    edge = next(e for e in panel.graph.cyto.graph.edges if e.data["id"] == "check->big")
    assert "outcome-false" in edge.classes.split()

    panel.form.run_if.value = "ALL_DONE"
    panel.form.max_retries.value = 2
    panel.form.timeout.value = 30
    panel.form.compute_kind.value = "environment_key"
    panel.form.compute_value.value = "default"
    big = panel.task("big")
    assert (big["run_if"], big["max_retries"], big["timeout_seconds"], big["environment_key"]) == \
        ("ALL_DONE", 2, 30, "default")
    # an environment the job does not define is a problem on the spot; defining it clears it
    assert [p.path for p in panel.problems] == ["tasks[2] (big).environment_key"]
    assert "names no environment of this job" in panel.problems[0].message
    panel.form.compute_kind.value = ""
    assert "environment_key" not in panel.task("big")

    # renaming keeps the dependencies; a cycle is a problem on the spot
    panel.select_task("hello")
    panel.form.key.value = "greet"
    assert panel.task("check")["depends_on"] == [{"task_key": "greet"}]
    assert panel.task("check")["condition_task"]["left"] == "{{tasks.greet.values.n}}"  # references follow
    panel.depend("greet", "big")
    assert any("cycle" in p.message for p in panel.problems)
    panel.undepend("greet", "big")
    assert panel.problems == []

    panel.move_task("big", -2)
    assert panel.task_keys == ["big", "greet", "check"]
    assert [label.split()[0] for label, _ in panel.task_list.options] == ["big", "greet", "check"]
    panel.remove_task("check")
    assert panel.task_keys == ["big", "greet"]
    assert "depends_on" not in panel.task("big")  # its dependency went with the task
    assert set(panel.states) == {"big", "greet"}

    panel.job_name.value = "built"
    panel.job_params.value = "who=world\nlimit=5"
    panel.job_tags.value = "team=data\nnightly"
    assert panel.settings["name"] == "built"
    assert panel.settings["parameters"] == [{"name": "who", "default": "world"}, {"name": "limit", "default": "5"}]
    assert panel.settings["tags"] == {"team": "data", "nightly": ""}
    assert "name: built" in panel.yaml_view.value
    panel.job_params.value = "bad name=1"
    assert any(p.path == "parameters[0].name" for p in panel.problems)


@pytest.mark.pure
def test_kinds_and_the_form(workspace, folder):
    panel = JobPanel(client=workspace, base_dir=folder)
    panel.add_task(key="t")
    panel.form.kind.value = "python"
    panel.form.path.value = "tool.py"
    panel.form.params.value = "--day\n2024-01-01"
    assert panel.task("t")["spark_python_task"] == {"python_file": "tool.py", "parameters": ["--day", "2024-01-01"]}
    assert panel.graph.node("t").data["kind"] == "python"
    panel.form.kind.value = "for_each"
    panel.form.inputs.value = '["a", "b"]'
    panel.form.path.value = "hello.ipynb"
    panel.form.params.value = "who={{input}}"
    each = panel.task("t")["for_each_task"]
    assert each["inputs"] == '["a", "b"]'
    assert each["task"]["notebook_task"] == {"notebook_path": "hello.ipynb", "base_parameters": {"who": "{{input}}"}}
    assert panel.problems == []
    panel.form.kind.value = "condition"
    panel.form.left.value = "1"
    panel.form.op.value = "LESS_THAN"
    panel.form.right.value = "2"
    assert panel.task("t")["condition_task"] == {"op": "LESS_THAN", "left": "1", "right": "2"}
    assert "kind-condition" in node_classes(panel, "t")
    with pytest.raises(ValueError, match="unknown task kind"):
        new_task([], "sql")


class EchoKind(TaskKind):
    """A task kind a third party registers (metadata only: the panel needs no more)."""
    field = "echo_task"
    name = "echo"
    label = "Echo"
    needs_compute = False


@pytest.mark.pure
def test_a_registered_task_kind_shows_in_the_kind_menu_and_the_graph(workspace, folder):
    job = {"name": "echo", "tasks": [{"task_key": "hello", "notebook_task": {"notebook_path": "hello.ipynb"}},
                                     {"task_key": "say", "depends_on": [{"task_key": "hello"}],
                                      "echo_task": {"message": "hi"}}]}
    register(EchoKind)
    try:
        panel = JobPanel(job, client=workspace, base_dir=folder)
        assert ("Echo", "echo") in list(panel.form.kind.options)
        assert ("Notebook", "notebook") in list(panel.form.kind.options)
        assert panel.graph.node("say").data["kind"] == "echo" and "kind-echo" in node_classes(panel, "say")
        assert {e["id"] for e in panel.graph.edges} == {"hello->say"}
        assert [label.split()[-1] for label, _ in panel.task_list.options] == ["notebook", "echo"]
        # its form edits the payload (as JSON)
        panel.select_task("say")
        assert panel.form.kind.value == "echo"
        assert json.loads(panel.form.payload.value) == {"message": "hi"}
        panel.form.payload.value = '{"message": "bye"}'
        assert panel.task("say")["echo_task"] == {"message": "bye"}
        # new tasks of that kind: by name, and from the kind menu
        assert panel.add_task("echo", key="again", message="x", run_if="ALL_DONE") == "again"
        assert panel.task("again") == {"task_key": "again", "echo_task": {"message": "x"}, "run_if": "ALL_DONE"}
        panel.add_task(key="switch", notebook_path="hello.ipynb")
        panel.form.kind.value = "echo"
        assert panel.task("switch") == {"task_key": "switch", "echo_task": {}}
        assert panel.graph.node("switch").data["kind"] == "echo"
    finally:
        unregister("echo_task")
    other = JobPanel(job, client=workspace, base_dir=folder)
    assert "echo" not in [value for _, value in other.form.kind.options]
    assert other.graph.node("say").data["kind"] == "other"


@pytest.mark.pure
def test_the_monitor_is_woken_from_other_threads():
    from nbjobs.ui.monitor import RunMonitor
    lock = threading.Lock()
    life = {1: "RUNNING", 2: "RUNNING"}
    updates: list[dict] = []

    def get_run(run_id):
        with lock:
            return {"run_id": run_id, "state": {"life_cycle_state": life[run_id]}}

    monitor = RunMonitor(get_run, updates.append, interval=600, settle=0)  # only wakes make it read
    monitor.watch(1)
    monitor.watch(2)
    wakers = [threading.Thread(target=lambda: [monitor.wake(object()) for _ in range(500)]) for _ in range(4)]
    for t in wakers:
        t.start()
    with lock:
        life[1] = "TERMINATED"
    for t in wakers:
        t.join()
    monitor.wake()
    deadline = time.monotonic() + 10
    while monitor.watched != {2} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert monitor.watched == {2}
    assert any(u["run_id"] == 1 and u["state"]["life_cycle_state"] == "TERMINATED" for u in updates)
    monitor.stop()
    time.sleep(0.05)
    seen = len(updates)
    monitor.wake()
    time.sleep(0.1)
    assert len(updates) == seen and monitor.watched == set()


@pytest.mark.kernels
def test_the_graph_follows_a_run_by_its_events(workspace, folder):
    panel = JobPanel(two_task_job(), client=workspace, base_dir=folder, poll_interval=600)  # no polling
    run_id = panel.run()
    assert workspace.wait(run_id, timeout=120)["state"]["result_state"] == "SUCCESS"
    deadline = time.monotonic() + 10
    while panel.states != {"hello": "succeeded", "flaky": "succeeded"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert panel.states == {"hello": "succeeded", "flaky": "succeeded"}
    assert 'data-state="succeeded"' in panel.graph.caption.value


@pytest.mark.pure
def test_export_and_load_round_trip(workspace, folder, tmp_path):
    panel = JobPanel(two_task_job(), client=workspace, base_dir=folder)
    out = panel.export("jobs/two.yml")  # relative to the base folder
    data = yaml.safe_load(out.read_text())
    assert data["tasks"][0]["notebook_task"]["notebook_path"] == "../hello.ipynb"  # still finds the notebook
    other = JobPanel(client=workspace)
    other.file_path.value = str(out)
    other.file_message.value = ""
    other._click_load()
    assert other.task_keys == ["hello", "flaky"] and other.problems == []
    assert other.base_dir == out.parent
    # the File tab's buttons
    panel.file_path.value = "copy"
    panel._click_export("json")
    written = folder / "copy.json"
    assert json.loads(written.read_text())["name"] == "two"
    assert "Wrote" in panel.file_message.value
    panel.file_path.value = "missing.yml"
    panel._click_load()
    assert "missing.yml" in panel.status_html.value and "nbjobs-msg-error" in panel.status_html.value


@pytest.mark.pure
def test_a_panel_on_the_sample_job_file(workspace):
    from conftest import ROOT
    panel = JobPanel(ROOT / "sample_notebooks" / "restaurant_job.yml", client=workspace)
    assert panel.problems == []
    assert len(panel.task_keys) == 9
    labels = {e["id"]: e.get("label") for e in panel.graph.edges}
    assert labels["check_quality->publish"] == "true" and labels["check_quality->quarantine"] == "false"
    assert set(panel.states.values()) == {"none"}
    layout = panel.graph.cyto.cytoscape_layout
    assert (layout["name"], layout["rankDir"]) == ("dagre", "TB")


# -- running ------------------------------------------------------------------------------------------
@pytest.mark.kernels
def test_run_in_background_watch_details_and_repair(workspace, folder):
    (folder / "FAIL").write_text("x")
    panel = JobPanel(two_task_job(), client=workspace, base_dir=folder)
    t0 = time.monotonic()
    run_id = panel.run({"who": "Ada"})
    assert time.monotonic() - t0 < 10
    assert panel.run_id == run_id and panel.job_id is not None
    assert set(panel.states.values()) <= {"pending", "queued", "running"}
    run = panel.wait(timeout=120)
    assert run["state"]["result_state"] == "FAILED"
    assert panel.states == {"hello": "succeeded", "flaky": "failed"}
    assert "state-failed" in node_classes(panel, "flaky")
    assert 'data-state="failed"' in panel.graph.caption.value
    assert not panel.repair_button.disabled and panel.cancel_button.disabled
    assert panel.history.value == run_id and "FAILED" in panel.history.label

    panel.graph.click("hello")  # a click on the node
    details = panel.details.value
    assert 'data-task="hello"' in details and "said hello" in details  # exit value
    assert "&quot;who&quot;: &quot;Ada&quot;" in details  # resolved parameters
    assert "nbjobs-values" in details and "3" in details  # task values
    panel.graph.click("flaky")
    assert "flaky failed on purpose" in panel.details.value and "nbjobs-trace" in panel.details.value

    (folder / "FAIL").unlink()
    panel.repair_button.click()  # on the panel's worker thread
    deadline = time.monotonic() + 120
    while panel.states.get("flaky") != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert panel.states == {"hello": "succeeded", "flaky": "succeeded"}
    run = workspace.get_run(run_id)
    assert [r["type"] for r in run["repair_history"]] == ["ORIGINAL", "REPAIR"]
    assert "1 repair" in panel.graph.caption.value
    # a second repair (of chosen tasks) passes the latest repair id by itself
    panel.repair(tasks=["hello"], rerun_dependents=False)
    run = panel.wait(timeout=120)
    assert [r["type"] for r in run["repair_history"]] == ["ORIGINAL", "REPAIR", "REPAIR"]
    assert panel.states == {"hello": "succeeded", "flaky": "succeeded"}


@pytest.mark.kernels
def test_repair_failed_keeps_the_dependents_that_succeeded(workspace, folder):
    """The panel's repair default is every client's (nbjobs.contract.REPAIR_RERUN_DEPENDENT_TASKS):
    the failed tasks rerun, and after them only the dependents that did not succeed."""
    from nbjobs.contract import REPAIR_RERUN_DEPENDENT_TASKS
    assert REPAIR_RERUN_DEPENDENT_TASKS is False
    job = two_task_job()
    job["tasks"].append({"task_key": "after", "depends_on": [{"task_key": "flaky"}], "run_if": "ALL_DONE",
                         "notebook_task": {"notebook_path": "hello.ipynb"}})
    job["tasks"].append({"task_key": "next", "depends_on": [{"task_key": "flaky"}],
                         "notebook_task": {"notebook_path": "hello.ipynb"}})
    (folder / "FAIL").write_text("x")
    panel = JobPanel(job, client=workspace, base_dir=folder)
    assert panel.repair_dependents.value is REPAIR_RERUN_DEPENDENT_TASKS  # the Repair tasks… box's check box
    run_id = panel.run()
    first = panel.wait(timeout=120)
    assert panel.states == {"hello": "succeeded", "flaky": "failed", "after": "succeeded", "next": "upstream_failed"}
    (folder / "FAIL").unlink()
    panel.repair_button.click()
    _settle(panel)
    run = panel.wait(timeout=120)
    assert panel.states == {"hello": "succeeded", "flaky": "succeeded", "after": "succeeded", "next": "succeeded"}
    ids = {t["task_key"]: t["run_id"] for t in first["tasks"]}
    again = {t["task_key"]: t["run_id"] for t in run["tasks"]}
    assert again["after"] == ids["after"] and again["hello"] == ids["hello"]  # not rerun
    assert again["flaky"] != ids["flaky"] and again["next"] != ids["next"]
    assert run["run_id"] == run_id and [r["type"] for r in run["repair_history"]] == ["ORIGINAL", "REPAIR"]


@pytest.mark.kernels
def test_two_panels_run_at_once_and_the_caller_stays_free(workspace, folder):
    a = JobPanel({**two_task_job(), "name": "a"}, client=workspace, base_dir=folder)
    b = JobPanel({**two_task_job(), "name": "b"}, client=workspace, base_dir=folder)
    t0 = time.monotonic()
    runs = [a.run(), b.run(), a.run()]
    assert time.monotonic() - t0 < 15
    assert len(set(runs)) == 3
    assert len([v for _, v in a.history.options]) == 2
    for panel, run_id in ((a, runs[0]), (b, runs[1]), (a, runs[2])):
        assert workspace.wait(run_id, timeout=120)["state"]["result_state"] == "SUCCESS"
    deadline = time.monotonic() + 10
    while (a.states.get("flaky"), b.states.get("flaky")) != ("succeeded", "succeeded") and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.states == b.states == {"hello": "succeeded", "flaky": "succeeded"}
    assert a.run_id == runs[2]
    # the history selector redraws a past run
    a.history.value = runs[0]
    assert a.run_id == runs[0] and a.states == {"hello": "succeeded", "flaky": "succeeded"}
    # after an edit, a past run with other tasks is drawn as it ran
    a.add_task(key="extra", notebook_path="hello.ipynb")
    assert a.states["extra"] == "none"
    a.history.value = runs[2]
    a.show_run(runs[0])
    assert set(a.states) == {"hello", "flaky"} and "has changed since" in a.graph.caption.value


@pytest.mark.kernels
def test_run_with_parameters_and_cancel(workspace, folder):
    job = {"name": "slow", "parameters": [{"name": "who", "default": "world"}],
           "tasks": [{"task_key": "hello", "notebook_task": {"notebook_path": "hello.ipynb"}},
                     {"task_key": "slow", "depends_on": [{"task_key": "hello"}],
                      "notebook_task": {"notebook_path": "slow.ipynb"}},
                     {"task_key": "after", "depends_on": [{"task_key": "slow"}],
                      "notebook_task": {"notebook_path": "hello.ipynb"}}]}
    panel = JobPanel(job, client=workspace, base_dir=folder)
    panel.run_params_button.click()
    fields = [w for w in panel.params_box.children if "nbjobs-param" in getattr(w, "_dom_classes", ())]
    assert [(f.description, f.value) for f in fields] == [("who", "world")]
    fields[0].value = "Grace"
    start = next(w for w in panel.params_box.children if "nbjobs-start-run" in getattr(w, "_dom_classes", ()))
    start.click()
    deadline = time.monotonic() + 120
    while panel.states.get("slow") != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert panel.states["slow"] == "running"
    assert not panel.cancel_button.disabled
    params = {p["name"]: p["value"] for p in workspace.get_run(panel.run_id)["job_parameters"]}
    assert params["who"] == "Grace"
    panel.cancel_button.click()
    _settle(panel)
    assert "Cancel requested" in panel.status_html.value
    assert panel.wait(timeout=60)["state"]["result_state"] == "CANCELED"
    assert panel.states == {"hello": "succeeded", "slow": "canceled", "after": "upstream_canceled"}
    assert panel.cancel_button.disabled


@pytest.mark.server
def test_panel_over_a_server_client(tmp_path, folder):
    import nbjobs
    from nbjobs.server import ServerThread
    with ServerThread(home=tmp_path / "server-home", root=tmp_path, token="t0k") as srv:
        client = nbjobs.connect(srv.url, "t0k")
        panel = JobPanel(two_task_job(), client=client, base_dir=folder, poll_interval=0.1)
        run_id = panel.run()
        run = panel.wait(run_id, timeout=120)
        assert run["state"]["result_state"] == "SUCCESS"
        deadline = time.monotonic() + 10
        while panel.states.get("flaky") != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert panel.states == {"hello": "succeeded", "flaky": "succeeded"}
        panel.graph.click("hello")
        assert "said hello" in panel.details.value
        panel.close()
        client.close()


@pytest.mark.pure
def test_errors_show_in_the_status_line(workspace, folder):
    panel = JobPanel(two_task_job(), client=workspace, base_dir=folder)
    panel.repair_button.disabled = False
    panel._click_repair_failed()  # no run yet
    _settle(panel)
    assert "no run is shown" in panel.status_html.value
    job = panel.save()
    with pytest.raises(Exception, match="no parameter named 'nope'"):
        panel.run({"nope": "1"})
    assert workspace.get_job(job)["settings"]["name"] == "two"
    with pytest.raises(TypeError):
        JobPanel(3.5, client=workspace)


def _settle(panel) -> None:
    """Wait for the panel's worker thread (button handlers) to finish what it was given."""
    done = threading.Event()
    panel._submit(done.set)
    assert done.wait(60)
