"""Orchestration cost: task state is written in batches and task rows are not re-read per task."""
from __future__ import annotations

import asyncio

import pytest

from nbjobs.store import Store
from nbjobs.store.batched import BatchedRunStore

from conftest import task_states

pytestmark = pytest.mark.pure


def conditions(n: int) -> dict:
    tasks = [{"task_key": "c0", "condition_task": {"op": "EQUAL_TO", "left": "{{job.parameters.x}}", "right": "1"}}]
    for i in range(1, n):
        tasks.append({"task_key": f"c{i}", "depends_on": [{"task_key": f"c{i - 1}", "outcome": "true"}],
                      "condition_task": {"op": "EQUAL_TO", "left": "{{tasks.c0.result_state}}", "right": "success"}})
    return {"name": f"chain-{n}", "parameters": [{"name": "x", "default": "1"}], "tasks": tasks}


def test_a_chain_of_conditions_is_persisted_in_a_few_transactions(workspace, monkeypatch):
    writes, full_reads = [], []
    original_write, original_rows = Store.write_task_runs, Store.task_runs
    monkeypatch.setattr(Store, "write_task_runs", lambda self, *a, **k: (writes.append(1), original_write(self, *a, **k))[1])
    monkeypatch.setattr(Store, "task_runs", lambda self, *a, **k: (full_reads.append(1), original_rows(self, *a, **k))[1])
    job_id = workspace.create_job(conditions(300))
    run = workspace.run_now(job_id)
    assert set(task_states(run).values()) == {"SUCCESS"} and len(run["tasks"]) == 300
    assert len(writes) <= 5, f"{len(writes)} write transactions for 300 instant tasks"
    assert len(full_reads) <= 4, f"the run's task rows were read {len(full_reads)} times"
    rows = workspace.store.task_runs(run["run_id"])                       # all of it reached the database
    assert {r["result_state"] for r in rows} == {"SUCCESS"}
    assert all(r["condition_outcome"] == "true" and r["execution_count"] == 1 for r in rows)


def test_the_batched_view_reads_its_own_writes_and_keeps_program_order(tmp_path):
    store = Store(tmp_path / "home")
    run_id, ids = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="r",
                                   tasks=[("a", {"task_key": "a"}), ("b", {"task_key": "b"})])
    view = BatchedRunStore(store, run_id)

    async def driver_turns() -> None:
        view.update_task_run(ids["a"], life_cycle_state="RUNNING", execution_count=1)
        view.update_task_run(ids["a"], values={"k": [1, 2]}, life_cycle_state="TERMINATED", result_state="SUCCESS")
        assert view.get_task_run(ids["a"])["result_state"] == "SUCCESS"          # from memory
        assert store.get_task_run(ids["a"])["result_state"] is None              # not written yet
        assert view.execution_count(run_id, "a") == 1 and view.values_of("a") == {"k": [1, 2]}
        assert view.latest_task_row("b")["life_cycle_state"] == "PENDING"
        await asyncio.sleep(0)                                                   # the loop turns: one commit
        assert store.get_task_run(ids["a"])["result_state"] == "SUCCESS"
        assert store.task_values(run_id) == {"a": {"k": [1, 2]}}
        view.update_task_run(ids["b"], life_cycle_state="RUNNING")
        view.update_run(run_id, life_cycle_state="RUNNING")                      # any other call flushes first
        assert store.get_task_run(ids["b"])["life_cycle_state"] == "RUNNING"
        new = view.new_task_run(run_id, "a", {"task_key": "a"}, attempt_number=1)  # a retry: the cache reloads
        assert view.latest_task_row("a")["task_run_id"] == new

    asyncio.run(driver_turns())
    store.close()


@pytest.mark.parametrize("n", [1, 3])
def test_new_ids_are_handed_out_in_order(tmp_path, n):
    store = Store(tmp_path / "home")
    _, ids = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="r",
                              tasks=[(f"t{i}", {}) for i in range(n)])
    assert list(ids.values()) == sorted(ids.values()) and list(ids) == [f"t{i}" for i in range(n)]
    store.close()
