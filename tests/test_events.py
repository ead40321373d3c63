"""The event bus: every run publishes its lifecycle events, whichever client started it, and a
subscriber that blocks or raises neither stalls nor breaks a run."""
from __future__ import annotations

import threading

import pytest

from nbjobs.events import EVENT_KINDS, EventBus, RunEvent
from nbjobs.service import Workspace

def conditions_job(n: int = 20) -> dict:
    return {"name": "chain", "tasks": [
        {"task_key": f"c{i}", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"},
         **({"depends_on": [{"task_key": f"c{i - 1}"}]} if i else {})} for i in range(n)]}


@pytest.mark.pure
def test_a_blocked_subscriber_does_not_stall_the_run_and_gets_every_event_afterwards(workspace):
    release = threading.Event()
    seen: list[RunEvent] = []

    def blocked(event: RunEvent) -> None:
        release.wait(60)
        seen.append(event)

    sub = workspace.events.subscribe(blocked)
    try:
        run = workspace.run_now(workspace.create_job(conditions_job()))
        assert run["state"]["result_state"] == "SUCCESS"   # ended while the subscriber was still blocked
        assert seen == []
    finally:
        release.set()
    assert sub.flush(30)
    sub.close()
    kinds = [e.kind for e in seen]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert kinds.count("task_start") == kinds.count("task_end") == 20
    assert [e.task_key for e in seen if e.kind == "task_end"] == [f"c{i}" for i in range(20)]  # in order


@pytest.mark.pure
def test_a_failing_subscriber_breaks_neither_the_run_nor_the_others(workspace, caplog):
    def failing(event: RunEvent) -> None:
        raise RuntimeError("subscriber bug")

    got: list[str] = []
    bad = workspace.events.subscribe(failing, name="failing")
    good = workspace.events.subscribe(lambda e: got.append(e.kind), kinds=["task_end", "run_end"])
    run = workspace.run_now(workspace.create_job(conditions_job(3)))
    assert run["state"]["result_state"] == "SUCCESS"
    good.close()
    bad.close()
    assert got == ["task_end", "task_end", "task_end", "run_end"]
    assert bad.failures == 8  # run_start, three task_start, three task_end, run_end
    assert "subscriber bug" in caplog.text and "failing" in caplog.text


@pytest.mark.pure
def test_on_event_of_one_run_sees_only_that_run_and_all_of_it_before_run_now_returns(workspace):
    job_id = workspace.create_job(conditions_job(2))
    other = workspace.run_now(job_id, wait=False)["run_id"]
    mine: list[RunEvent] = []
    run = workspace.run_now(job_id, on_event=mine.append)
    workspace.wait(other, timeout=60)
    assert {e.run_id for e in mine} == {run["run_id"]}
    assert mine[-1].kind == "run_end" and mine[-1].result_state == "SUCCESS"


@pytest.mark.server
def test_runs_started_by_another_workspace_object_or_the_rest_api_publish_on_the_folders_bus(tmp_path):
    from nbjobs.client import connect
    from nbjobs.server.app import ServerThread

    home = tmp_path / "home"
    watcher = Workspace(home)
    ended: list[int] = []
    sub = watcher.events.subscribe(lambda e: ended.append(e.run_id), kinds=["run_end"])
    other = Workspace(home)
    server = ServerThread(workspace=other, root=tmp_path, services=False)
    try:
        local = other.run_now(other.create_job(conditions_job(2)))["run_id"]
        client = connect(server.url, server.token)
        remote = client.run_now(client.create_job(conditions_job(2)), wait=True)["run_id"]
        client.close()
        assert sub.flush(30)
        assert ended == [local, remote]
    finally:
        sub.close()
        server.stop()
        other.close()
        watcher.close()


@pytest.mark.pure
def test_subscribing_to_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown event kind.*run_ended.*run_end"):
        EventBus().subscribe(print, kinds=["run_ended"])
    assert "duration_warning" in EVENT_KINDS
