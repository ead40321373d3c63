"""The SQLite store: schema migrations, WAL, transactions, orphaned-run recovery, admission at
max_concurrent_runs, idempotency tokens, cancel flags."""
import os
import sqlite3
import subprocess
import sys
import time

import pytest
from sqlalchemy import inspect

from nbjobs.store import Store
from nbjobs.store import schema


@pytest.mark.pure
def test_fresh_store_is_migrated_to_the_current_schema(tmp_path):
    store = Store(tmp_path)
    assert store.schema_version == schema.SCHEMA_VERSION
    inspector = inspect(store.engine)
    for table in schema.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name


@pytest.mark.pure
def test_database_uses_wal(tmp_path):
    Store(tmp_path)
    conn = sqlite3.connect(tmp_path / "nbjobs.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.pure
def test_reopening_keeps_data_and_does_not_remigrate(tmp_path):
    job_id = Store(tmp_path).create_job({"name": "a", "tags": {"team": "x"}})
    again = Store(tmp_path)
    assert again.get_job(job_id)["settings"] == {"name": "a", "tags": {"team": "x"}}
    assert again.schema_version == schema.SCHEMA_VERSION


@pytest.mark.pure
def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    Store(tmp_path)
    conn = sqlite3.connect(tmp_path / "nbjobs.db")
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this nbjobs"):
        Store(tmp_path)


@pytest.mark.pure
def test_run_ids_and_task_run_ids_share_one_sequence(tmp_path):
    store = Store(tmp_path)
    run_id, ids = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="r",
                                   tasks=[("a", {}), ("b", {})])
    assert len({run_id, *ids.values()}) == 3
    assert store.get_task_run(ids["a"])["run_id"] == run_id


@pytest.mark.pure
def test_task_values_keep_json_types_and_latest_value(tmp_path):
    store = Store(tmp_path)
    run_id, ids = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="r", tasks=[("a", {})])
    store.update_task_run(ids["a"], values={"n": 1, "xs": [1, "two"], "ok": True})
    store.update_task_run(ids["a"], values={"n": 2})
    assert store.task_values(run_id) == {"a": {"n": 2, "xs": [1, "two"], "ok": True}}


@pytest.mark.pure
def test_failed_transaction_leaves_nothing_half_written(tmp_path):
    store = Store(tmp_path)
    run_id, ids = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="r", tasks=[("a", {})])
    with pytest.raises(Exception):
        # the state column is written, then the value insert fails (not JSON-serialisable): both roll back
        store.update_task_run(ids["a"], values={"bad": object()}, life_cycle_state="TERMINATED")
    assert store.get_task_run(ids["a"])["life_cycle_state"] == "PENDING"
    assert store.task_values(run_id) == {}


@pytest.mark.kernels
def test_runs_of_a_dead_process_end_as_internal_error_and_keep_finished_tasks(tmp_path):
    # A real process creates the run and exits without finishing it.
    code = (
        "from nbjobs.store import Store\n"
        f"s = Store({str(tmp_path)!r})\n"
        "r, ids = s.create_run(job_id=None, settings={}, job_parameters=[], run_name='r',"
        " tasks=[('a', {}), ('b', {})], life_cycle_state='RUNNING')\n"
        "s.update_task_run(ids['a'], values={'k': 1}, life_cycle_state='TERMINATED', result_state='SUCCESS')\n"
        "s.update_task_run(ids['b'], life_cycle_state='RUNNING')\n"
        "print(r)\n")
    run_id = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                text=True).stdout)
    store = Store(tmp_path)
    assert store.recover_orphans() == [run_id]
    run = store.get_run(run_id)
    assert run["life_cycle_state"] == "INTERNAL_ERROR"
    assert "ended before the run finished" in run["state_message"]
    states = {r["task_key"]: (r["life_cycle_state"], r["result_state"]) for r in store.task_runs(run_id)}
    assert states == {"a": ("TERMINATED", "SUCCESS"), "b": ("INTERNAL_ERROR", "FAILED")}
    assert store.task_values(run_id) == {"a": {"k": 1}}


@pytest.mark.pure
def test_runs_of_a_live_process_are_left_alone(tmp_path):
    store = Store(tmp_path)
    run_id, _ = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="r", tasks=[],
                                 life_cycle_state="RUNNING")
    assert store.get_run(run_id)["pid"] == os.getpid()
    assert store.recover_orphans() == []
    assert store.get_run(run_id)["life_cycle_state"] == "RUNNING"


@pytest.mark.pure
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


@pytest.mark.pure
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


@pytest.mark.pure
def test_idempotency_token_returns_the_existing_run_per_job(tmp_path):
    store = Store(tmp_path)
    run_id, ids = new_run(store, idempotency_token="t")
    assert new_run(store, idempotency_token="t") == (run_id, None)
    other, ids2 = new_run(store, job_id=2, idempotency_token="t")
    assert other != run_id and ids2


@pytest.mark.pure
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


@pytest.mark.kernels
def test_processes_opening_a_new_workspace_at_once_all_get_it(tmp_path):
    # the first open switches the file to WAL and migrates it; the others must wait, not fail
    home, start = tmp_path / "home", time.time() + 2
    code = ("import sys, time; from nbjobs.store import Store; time.sleep(max(0, float(sys.argv[2]) - time.time())); "
            "s = Store(sys.argv[1]); print(s.schema_version); s.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(home), str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in results]
    assert {out.strip() for out, _ in results} == {str(schema.SCHEMA_VERSION)}
