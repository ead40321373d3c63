"""The SQLite store: schema migrations, WAL, transactions, orphaned-run recovery."""
import os
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import inspect

from nbjobs.store import Store
from nbjobs.store import schema


def test_fresh_store_is_migrated_to_the_current_schema(tmp_path):
    store = Store(tmp_path)
    assert store.schema_version == schema.SCHEMA_VERSION
    inspector = inspect(store.engine)
    for table in schema.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name


def test_database_uses_wal(tmp_path):
    Store(tmp_path)
    conn = sqlite3.connect(tmp_path / "nbjobs.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_keeps_data_and_does_not_remigrate(tmp_path):
    job_id = Store(tmp_path).create_job({"name": "a", "tags": {"team": "x"}})
    again = Store(tmp_path)
    assert again.get_job(job_id)["settings"] == {"name": "a", "tags": {"team": "x"}}
    assert again.schema_version == schema.SCHEMA_VERSION


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    Store(tmp_path)
    conn = sqlite3.connect(tmp_path / "nbjobs.db")
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this nbjobs"):
        Store(tmp_path)


def test_run_ids_and_task_run_ids_share_one_sequence(tmp_path):
    store = Store(tmp_path)
    run_id, ids = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="r",
                                   tasks=[("a", {}), ("b", {})])
    assert len({run_id, *ids.values()}) == 3
    assert store.get_task_run(ids["a"])["run_id"] == run_id


def test_task_values_keep_json_types_and_latest_value(tmp_path):
    store = Store(tmp_path)
    run_id, ids = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="r", tasks=[("a", {})])
    store.update_task_run(ids["a"], values={"n": 1, "xs": [1, "two"], "ok": True})
    store.update_task_run(ids["a"], values={"n": 2})
    assert store.task_values(run_id) == {"a": {"n": 2, "xs": [1, "two"], "ok": True}}


def test_failed_transaction_leaves_nothing_half_written(tmp_path):
    store = Store(tmp_path)
    run_id, ids = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="r", tasks=[("a", {})])
    with pytest.raises(Exception):
        # the state column is written, then the value insert fails (not JSON-serialisable): both roll back
        store.update_task_run(ids["a"], values={"bad": object()}, life_cycle_state="TERMINATED")
    assert store.get_task_run(ids["a"])["life_cycle_state"] == "PENDING"
    assert store.task_values(run_id) == {}


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


def test_runs_of_a_live_process_are_left_alone(tmp_path):
    store = Store(tmp_path)
    run_id, _ = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="r", tasks=[],
                                 life_cycle_state="RUNNING")
    assert store.get_run(run_id)["pid"] == os.getpid()
    assert store.recover_orphans() == []
    assert store.get_run(run_id)["life_cycle_state"] == "RUNNING"
