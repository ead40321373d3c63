"""The store's control-flow parts: migration 2 over an existing database, admission, cancel flags."""
from __future__ import annotations

import sqlite3

from nbjobs.store import Store
from nbjobs.store import schema


def test_migration_2_upgrades_a_version_1_database_keeping_its_runs(tmp_path):
    conn = sqlite3.connect(tmp_path / "nbjobs.db")
    for statement in schema.MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (run_id, job_id, life_cycle_state, result_state, settings_json, trigger_time, "
                 "start_time) VALUES (7, 1, 'TERMINATED', 'SUCCESS', '{}', 1, 1)")
    conn.execute("INSERT INTO task_runs (task_run_id, run_id, task_key, life_cycle_state, task_json) "
                 "VALUES (8, 7, 'a', 'TERMINATED', '{}')")
    conn.commit()
    conn.close()
    store = Store(tmp_path)
    assert store.schema_version == schema.SCHEMA_VERSION >= 2
    run = store.get_run(7)
    assert (run["result_state"], run["cancel_requested"], run["queue_duration"], run["only"]) == ("SUCCESS", 0, 0, None)
    task = store.get_task_run(8)
    assert (task["cancel_requested"], task["child_run_id"], task["input"]) == (0, None, None)


def new_run(store, job_id=1, **kw):
    return store.create_run(job_id=job_id, settings={}, job_parameters=[], run_name="r", tasks=[("a", {})], **kw)


def test_admission_queues_first_in_first_out_and_skips_without_a_queue(tmp_path):
    store = Store(tmp_path)
    first, _ = new_run(store, admission=(1, True))
    second, _ = new_run(store, admission=(1, True))
    third, _ = new_run(store, admission=(1, True))
    skipped, ids = new_run(store, admission=(1, False))
    states = [store.get_run(r)["life_cycle_state"] for r in (first, second, third, skipped)]
    assert states == ["PENDING", "QUEUED", "QUEUED", "SKIPPED"]
    assert store.get_run(skipped)["result_state"] == "MAXIMUM_CONCURRENT_RUNS_REACHED"
    assert store.get_task_run(ids["a"])["life_cycle_state"] == "SKIPPED"
    other_job, _ = new_run(store, job_id=2, admission=(1, True))        # the limit is per job
    assert store.get_run(other_job)["life_cycle_state"] == "PENDING"

    assert store.try_admit(third, 1) == "QUEUED"     # the first still runs
    store.update_run(first, life_cycle_state="TERMINATED", result_state="SUCCESS")
    assert store.try_admit(third, 1) == "QUEUED"     # an earlier queued run goes first
    assert store.try_admit(second, 1) == "PENDING"
    assert store.get_run(second)["queue_duration"] >= 0
    assert store.try_admit(third, 2) == "PENDING"    # the limit was raised meanwhile
    zero, _ = new_run(store, job_id=3, admission=(0, True))
    assert store.get_run(zero)["life_cycle_state"] == "SKIPPED"


def test_idempotency_token_returns_the_existing_run_per_job(tmp_path):
    store = Store(tmp_path)
    run_id, ids = new_run(store, idempotency_token="t")
    assert new_run(store, idempotency_token="t") == (run_id, None)
    other, ids2 = new_run(store, job_id=2, idempotency_token="t")
    assert other != run_id and ids2


def test_cancel_requests_count_and_task_flags(tmp_path):
    store = Store(tmp_path)
    run_id, ids = new_run(store)
    assert store.cancel_requests(run_id) == (0, [])
    store.request_cancel(run_id)
    store.request_cancel(run_id)
    store.request_task_cancel(ids["a"])
    assert store.cancel_requests(run_id) == (2, [ids["a"]])
    store.end_run(run_id, life_cycle_state="TERMINATED", result_state="CANCELED", message="stop")
    assert store.get_task_run(ids["a"])["result_state"] == "CANCELED"
    assert store.cancel_requests(run_id) == (2, [])   # only active task runs are reported
