"""A run keeps the cyclic garbage collector off its bulk objects while it runs, and leaves the
collector as it found it (nbjobs/_gc.py)."""
from __future__ import annotations

import gc

import pytest

import nbjobs._gc as nbjobs_gc
from conftest import task_states, wait_for, write_script


def conditions_job(n: int = 30) -> dict:
    return {"name": "conditions", "tasks": [
        {"task_key": f"c{i}", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"},
         **({"depends_on": [{"task_key": f"c{i - 1}"}]} if i else {})} for i in range(n)]}


@pytest.fixture
def clean_collector(monkeypatch):
    monkeypatch.setattr(nbjobs_gc, "_may_freeze", True)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    yield
    gc.unfreeze()
    gc.enable()


@pytest.mark.kernels
def test_a_run_freezes_its_objects_while_it_runs_and_leaves_the_collector_as_it_found_it(workspace, tmp_path,
                                                                                         clean_collector):
    # events reach subscribers off the run loop, so look at the collector while a slow task runs
    write_script(tmp_path / "slow.py", "import time\ntime.sleep(1.5)\n")
    settings = conditions_job()
    settings["tasks"].append({"task_key": "slow", "depends_on": [{"task_key": "c29"}],
                              "spark_python_task": {"python_file": str(tmp_path / "slow.py")}})
    run_id = workspace.run_now(workspace.create_job(settings), wait=False)["run_id"]
    wait_for(lambda: workspace.get_run(run_id)["tasks"][-1]["state"]["life_cycle_state"] == "RUNNING",
             what="the slow task to start")
    assert gc.get_freeze_count() > 0  # the run's settings, rows and plan: out of the collector's walks
    run = workspace.wait(run_id, timeout=60)
    assert set(task_states(run).values()) == {"SUCCESS"}
    wait_for(lambda: gc.get_freeze_count() == 0, what="the run to unfreeze")
    assert gc.isenabled()


@pytest.mark.pure
def test_a_background_run_unfreezes_when_it_ends(workspace, clean_collector):
    run_id = workspace.run_now(workspace.create_job(conditions_job()), wait=False)["run_id"]
    assert workspace.wait(run_id, timeout=60)["state"]["result_state"] == "SUCCESS"
    wait_for(lambda: gc.get_freeze_count() == 0, what="the engine's run to unfreeze")
    assert gc.isenabled()


@pytest.mark.pure
def test_an_application_that_freezes_objects_itself_keeps_them_frozen(workspace, clean_collector):
    gc.freeze()  # e.g. a pre-fork server
    mine = gc.get_freeze_count()
    assert mine > 0
    run = workspace.run_now(workspace.create_job(conditions_job()))
    assert run["state"]["result_state"] == "SUCCESS"
    assert gc.get_freeze_count() >= mine  # nbjobs did not unfreeze what it did not freeze
    assert gc.isenabled()


@pytest.mark.pure
def test_runs_get_builds_its_answer_with_the_collector_paused(workspace, clean_collector, monkeypatch):
    # runs/get of a 10,000-task run allocates tens of thousands of dicts: collections during it were
    # what made benchmark 3 superlinear (docs/performance.md)
    import nbjobs.api_json as api_json
    seen: list[bool] = []
    original = api_json.run_json

    def recording(*args, **kwargs):
        seen.append(gc.isenabled())
        return original(*args, **kwargs)

    monkeypatch.setattr(api_json, "run_json", recording)
    run = workspace.run_now(workspace.create_job(conditions_job(3)))
    seen.clear()
    workspace.get_run(run["run_id"])
    assert seen == [False]
    assert gc.isenabled()
