"""trigger.file_arrival: where a url is (pure), when new files fire (pure), validation (pure), and a real
host watching a real folder (settle time, {{job.trigger.file_arrival.location}}, one run per batch)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from nbjobs.schedule.file_arrival import FileWatch, listing, local_path, url_problem
from nbjobs.spec.validate import validate_job_settings
from conftest import wait_for, write_script

HOME = Path("/home/me/.nbjobs")


@pytest.mark.pure
@pytest.mark.parametrize("url,path", [
    ("/Volumes/main/raw/landing/orders", HOME / "volumes/main/raw/landing/orders"),
    ("/Volumes/main/raw/landing/", HOME / "volumes/main/raw/landing"),
    ("dbfs:/mnt/in", HOME / "dbfs/mnt/in"),
    ("file:///data/in%20box", Path("/data/in box")),
    ("/data/incoming", Path("/data/incoming")),
])
def test_local_path(url, path):
    assert url_problem(url) is None
    assert local_path(url, HOME) == path


@pytest.mark.pure
@pytest.mark.parametrize("url,text", [("s3://bucket/x", "s3:// locations are not supported"),
                                      ("incoming", "relative path"), ("/Volumes/main", "volume path"),
                                      (None, "needs url")])
def test_url_problems(url, text):
    assert text in url_problem(url)


@pytest.mark.pure
def test_validation_of_file_arrival_fields():
    tasks = [{"task_key": "a", "spark_python_task": {"python_file": "a.py"}}]
    ok = {"url": "/Volumes/m/s/v/", "min_time_between_triggers_seconds": 60, "wait_after_last_change_seconds": 0}
    assert validate_job_settings({"name": "j", "tasks": tasks, "trigger": {"file_arrival": ok}}) == []
    bad = {"url": "gs://b/x", "wait_after_last_change_seconds": -1}
    problems = {p.path: p.message for p in validate_job_settings({"name": "j", "tasks": tasks,
                                                                 "trigger": {"file_arrival": bad}})}
    assert "gs:// locations are not supported" in problems["trigger.file_arrival.url"]
    assert "-1 is not a whole number" in problems["trigger.file_arrival.wait_after_last_change_seconds"]


@pytest.mark.pure
def test_watch_fires_once_per_batch_after_it_settles_and_spaced_triggers():
    watch = FileWatch("/x", min_between=30, settle=5)
    assert watch.observe({"old.csv": (1, 1)}, 0) is None  # present at the start: not new
    assert watch.observe({"old.csv": (1, 1), "a.csv": (2, 1)}, 10) is None  # changed at 10: settling
    assert watch.observe({"old.csv": (1, 1), "a.csv": (2, 1), "b.csv": (3, 1)}, 13) is None
    assert watch.observe({"old.csv": (1, 1), "a.csv": (2, 1), "b.csv": (3, 1)}, 17) is None  # 4 s < 5 s
    assert watch.observe({"old.csv": (1, 1), "a.csv": (2, 1), "b.csv": (3, 1)}, 18) == ["a.csv", "b.csv"]
    files = {"old.csv": (1, 1), "a.csv": (2, 1), "b.csv": (3, 1), "c.csv": (4, 1)}
    assert watch.observe(files, 30) is None  # settles at 35, but the last trigger was at 18: wait for 48
    assert watch.observe(files, 40) is None
    assert watch.observe(files, 48) == ["c.csv"]
    assert watch.observe(files, 100) is None
    restarted = FileWatch("/x")
    restarted.start(files, since_ns=3)  # files modified after the last trigger's scan arrived meanwhile
    assert restarted.new_files(files) == ["c.csv"]


@pytest.mark.pure
def test_listing_is_recursive_and_skips_hidden_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.csv").write_text("1")
    (tmp_path / ".tmp").write_text("x")
    assert set(listing(tmp_path)) == {"sub/a.csv"}
    assert listing(tmp_path / "missing") == {}


@pytest.mark.server
@pytest.mark.timeout(120)
def test_a_host_starts_one_run_per_settled_batch_of_new_files(tmp_path):
    from nbjobs.service import Workspace
    from nbjobs.services import ServiceHost
    from nbjobs.services.file_arrival import FileArrivalService

    home = tmp_path / "home"
    script = write_script(tmp_path / "show.py", "import sys\nprint('location', sys.argv[1])\n")
    ws = Workspace(home)
    landing = home / "volumes" / "main" / "raw" / "landing"
    landing.mkdir(parents=True)
    (landing / "before.csv").write_text("present before the trigger existed")
    job_id = ws.create_job({
        "name": "on-arrival", "parameters": [{"name": "where", "default": "{{job.trigger.file_arrival.location}}"}],
        "trigger": {"file_arrival": {"url": "/Volumes/main/raw/landing/", "wait_after_last_change_seconds": 1}},
        "tasks": [{"task_key": "show", "spark_python_task": {"python_file": str(script),
                                                             "parameters": ["{{job.parameters.where}}"]}}]})
    host = ServiceHost([FileArrivalService(interval=0.2)], workspace=ws, lease_ttl=1.0, backoff=(0.05, 0.4),
                       stop_timeout=5.0, tick=0.05).start()
    try:
        wait_for(lambda: host.health()["services"]["file_arrival"].get("watched_jobs") == 1, 20, "the watch")
        time.sleep(0.5)
        assert ws.list_runs(job_id=job_id) == []  # files present at the start are not new
        for name in ("a.csv", "b.csv", "c.csv"):  # one batch, written 0.3 s apart
            (landing / name).write_text(name)
            time.sleep(0.3)
        runs = wait_for(lambda: ws.list_runs(job_id=job_id), 20, "a file-arrival run")
        time.sleep(2)
        assert len(ws.list_runs(job_id=job_id)) == 1  # the batch started one run, after it settled
        run = ws.wait(runs[0]["run_id"], timeout=60)
        assert run["trigger"] == "FILE_ARRIVAL" and run["state"]["result_state"] == "SUCCESS"
        assert run["trigger_info"]["new_files"] == ["a.csv", "b.csv", "c.csv"]
        assert {p["name"]: p["value"] for p in run["job_parameters"]}["where"] == "/Volumes/main/raw/landing/"
        (landing / "d.csv").write_text("d")
        wait_for(lambda: len(ws.list_runs(job_id=job_id)) == 2, 20, "a second run for a new file")
        state = ws.get_job(job_id)["trigger_state"]
        assert state["file_arrival"] == {"using_file_events": False}
        assert [s["status"] for s in state["recent_slots"]] == ["STARTED", "STARTED"]
    finally:
        host.stop()
        ws.close()
