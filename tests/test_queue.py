"""max_concurrent_runs with and without the queue, idempotency tokens and run-now `only`."""
from __future__ import annotations

import pytest
from databricks.sdk.service.jobs import Run

from nbjobs.service import InvalidParameterValue
from conftest import task_states, write_script

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def gated(tmp_path):
    """A script that waits until the file `go` exists."""
    return write_script(tmp_path / "gated.py", f"""
        import pathlib, time
        while not pathlib.Path({str(tmp_path / 'go')!r}).exists():
            time.sleep(0.05)
        print("through")
    """)


@pytest.mark.kernels
def test_at_the_limit_a_run_waits_queued_then_starts_and_without_queue_it_is_skipped(workspace, tmp_path, gated):
    job_id = workspace.create_job({"name": "one-at-a-time", "max_concurrent_runs": 1, "tasks": [
        {"task_key": "t", "spark_python_task": {"python_file": str(gated)}}]})
    first = workspace.run_now(job_id, wait=False)["run_id"]
    second = workspace.run_now(job_id, wait=False)["run_id"]

    queued = workspace.get_run(second)
    Run.from_dict(queued)
    assert queued["state"]["life_cycle_state"] == "QUEUED"
    reason = f"Queued: job {job_id} already has 1 active run (max_concurrent_runs = 1); it starts when a slot frees."
    assert queued["state"]["queue_reason"] == reason
    assert queued["status"] == {"state": "QUEUED", "queue_details": {"code": "MAX_CONCURRENT_RUNS_REACHED",
                                                                     "message": reason}}
    skipped = workspace.run_now(job_id, queue={"enabled": False})   # this run only: no queue
    Run.from_dict(skipped)
    assert skipped["state"]["life_cycle_state"] == "SKIPPED"
    assert skipped["state"]["result_state"] == "MAXIMUM_CONCURRENT_RUNS_REACHED"
    assert skipped["status"]["termination_details"]["code"] == "MAX_CONCURRENT_RUNS_EXCEEDED"
    assert "queueing is off" in skipped["state"]["state_message"]

    (tmp_path / "go").write_text("")
    a, b = workspace.wait(first, timeout=60), workspace.wait(second, timeout=60)
    assert a["state"]["result_state"] == b["state"]["result_state"] == "SUCCESS"
    assert b["tasks"][0]["start_time"] >= a["end_time"]   # the queued run started after the slot freed
    assert b["queue_duration"] > 0


@pytest.mark.pure
def test_max_concurrent_runs_zero_skips_every_run(workspace, tmp_path, gated):
    job_id = workspace.create_job({"name": "paused", "max_concurrent_runs": 0, "queue": {"enabled": True},
                                   "tasks": [{"task_key": "t", "spark_python_task": {"python_file": str(gated)}}]})
    run = workspace.run_now(job_id)
    assert (run["state"]["life_cycle_state"], run["state"]["result_state"]) == \
        ("SKIPPED", "MAXIMUM_CONCURRENT_RUNS_REACHED")
    assert run["state"]["state_message"].startswith("Skipped: the job's max_concurrent_runs is 0")
    assert task_states(run) == {"t": "MAXIMUM_CONCURRENT_RUNS_REACHED"}


@pytest.mark.kernels
def test_a_queue_disabled_job_skips_at_the_limit(workspace, tmp_path, gated):
    job_id = workspace.create_job({"name": "no-queue", "max_concurrent_runs": 1, "queue": {"enabled": False},
                                   "tasks": [{"task_key": "t", "spark_python_task": {"python_file": str(gated)}}]})
    first = workspace.run_now(job_id, wait=False)["run_id"]
    assert workspace.run_now(job_id)["state"]["result_state"] == "MAXIMUM_CONCURRENT_RUNS_REACHED"
    # a queue override on the run itself queues it instead
    queued = workspace.run_now(job_id, wait=False, queue={"enabled": True})["run_id"]
    assert workspace.get_run(queued)["state"]["life_cycle_state"] == "QUEUED"
    (tmp_path / "go").write_text("")
    assert workspace.wait(queued, timeout=60)["state"]["result_state"] == "SUCCESS"
    assert workspace.wait(first, timeout=60)["state"]["result_state"] == "SUCCESS"


@pytest.mark.kernels
def test_the_same_idempotency_token_gives_the_same_run(workspace, tmp_path):
    write_script(tmp_path / "count.py", f"open({str(tmp_path / 'count.txt')!r}, 'a').write('x')\n")
    job_id = workspace.create_job({"name": "once", "max_concurrent_runs": 5, "tasks": [
        {"task_key": "t", "spark_python_task": {"python_file": str(tmp_path / "count.py")}}]})
    first = workspace.run_now(job_id, idempotency_token="nightly-2026-01-31")
    again = workspace.run_now(job_id, idempotency_token="nightly-2026-01-31")
    answer = workspace.run_now(job_id, wait=False, idempotency_token="nightly-2026-01-31")
    assert again["run_id"] == first["run_id"] == answer["run_id"]
    assert (tmp_path / "count.txt").read_text() == "x"          # it ran once
    other = workspace.run_now(job_id, idempotency_token="nightly-2026-02-01")
    assert other["run_id"] != first["run_id"]
    assert len(workspace.list_runs(job_id=job_id)) == 2
    with pytest.raises(InvalidParameterValue, match="idempotency_token: .* is not a string of 1 to 64 characters"):
        workspace.run_now(job_id, idempotency_token="x" * 65)

    # the token of a deleted run is refused rather than starting a new run (databricks-sdk `JobsAPI.run_now`: idempotency_token)
    workspace.delete_run(first["run_id"])
    with pytest.raises(InvalidParameterValue) as err:
        workspace.run_now(job_id, idempotency_token="nightly-2026-01-31")
    assert str(err.value) == (f"idempotency_token 'nightly-2026-01-31' belongs to run {first['run_id']}, which "
                              "was deleted; use a new idempotency_token to start a new run")
    assert len(workspace.list_runs(job_id=job_id)) == 1 and (tmp_path / "count.txt").read_text() == "xx"


@pytest.mark.kernels
def test_only_runs_the_selected_tasks_and_what_the_plus_signs_add(workspace, tmp_path):
    write_script(tmp_path / "ok.py", "print('ok')\n")
    task = {"spark_python_task": {"python_file": str(tmp_path / "ok.py")}}
    job_id = workspace.create_job({"name": "subset", "max_concurrent_runs": 5, "tasks": [
        {"task_key": "extract", **task},
        {"task_key": "transform", "depends_on": [{"task_key": "extract"}], **task},
        {"task_key": "load", "depends_on": [{"task_key": "transform"}], **task},
        {"task_key": "report", **task}]})
    run = workspace.run_now(job_id, only=["transform"])
    assert task_states(run) == {"transform": "SUCCESS"}
    run = workspace.run_now(job_id, only=["+transform", "report"])
    assert task_states(run) == {"extract": "SUCCESS", "transform": "SUCCESS", "report": "SUCCESS"}
    run = workspace.run_now(job_id, only="transform+")
    assert task_states(run) == {"transform": "SUCCESS", "load": "SUCCESS"}
    Run.from_dict(run)
    with pytest.raises(InvalidParameterValue, match="only: 'lod' is not a task of this job"):
        workspace.run_now(job_id, only=["lod"])
