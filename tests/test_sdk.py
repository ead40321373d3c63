"""The official databricks-sdk drives nbjobs unchanged: WorkspaceClient against a real server on 127.0.0.1."""
from __future__ import annotations

import warnings
from datetime import timedelta

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, ResourceDoesNotExist, Unauthenticated
from databricks.sdk.service import jobs

from nbjobs.server import ServerThread
from conftest import write_script

pytestmark = [pytest.mark.timeout(120), pytest.mark.server]

TOKEN = "sdk-token-5678"


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "root"
    write_script(root / "extract.py", """
        import sys
        from databricks.sdk.runtime import dbutils
        print("extract", sys.argv[1:])
        dbutils.jobs.taskValues.set("rows", 3)
    """)
    write_script(root / "load.py", """
        import os, sys
        from databricks.sdk.runtime import dbutils
        rows = dbutils.jobs.taskValues.get("extract", "rows")
        if not os.path.exists("ready"):
            sys.exit(f"target not ready ({rows} rows waiting)")
        print("loaded", rows)
    """)
    write_script(root / "sleep.py", "import time\ntime.sleep(30)\n")
    srv = ServerThread(home=tmp_path / "home", root=root, token=TOKEN)
    srv.root_path = root
    yield srv
    srv.stop()


def client(srv, token=TOKEN) -> WorkspaceClient:
    return WorkspaceClient(host=srv.url, token=token, auth_type="pat")


def test_the_sdk_scenario(server):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "failed to resolve host metadata" warning either
        w = client(server)
    created = w.jobs.create(
        name="sdk-demo", tags={"team": "data"},
        parameters=[jobs.JobParameterDefinition(name="day", default="2026-01-31")],
        tasks=[jobs.Task(task_key="extract",
                         spark_python_task=jobs.SparkPythonTask(python_file="extract.py",
                                                                parameters=["{{job.parameters.day}}"])),
               jobs.Task(task_key="load", depends_on=[jobs.TaskDependency(task_key="extract")],
                         spark_python_task=jobs.SparkPythonTask(python_file="load.py"))])
    job_id = created.job_id
    assert [j.job_id for j in w.jobs.list()] == [job_id]
    assert [j.settings.name for j in w.jobs.list(name="SDK-DEMO")] == ["sdk-demo"]
    job = w.jobs.get(job_id)
    assert job.settings.name == "sdk-demo" and [t.task_key for t in job.settings.tasks] == ["extract", "load"]

    run = w.jobs.run_now(job_id, job_parameters={"day": "2026-02-01"}).result(timeout=timedelta(seconds=60))
    assert run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    assert run.state.result_state == jobs.RunResultState.FAILED
    tasks = {t.task_key: t for t in run.tasks}
    assert tasks["extract"].state.result_state == jobs.RunResultState.SUCCESS
    assert tasks["load"].state.result_state == jobs.RunResultState.FAILED
    got = w.jobs.get_run(run.run_id)
    assert got.job_parameters[0].value == "2026-02-01"
    output = w.jobs.get_run_output(tasks["extract"].run_id)
    assert "extract ['2026-02-01']" in output.logs
    assert w.jobs.get_run_output(tasks["load"].run_id).error == "load.py exited with code 1: target not ready " \
                                                               "(3 rows waiting)"
    with pytest.raises(InvalidParameterValue, match="multiple tasks is not supported"):
        w.jobs.get_run_output(run.run_id)

    (server.root_path / "ready").write_text("")
    repaired = w.jobs.repair_run(run.run_id, rerun_tasks=["load"]).result(timeout=timedelta(seconds=60))
    assert repaired.run_id == run.run_id
    assert repaired.state.result_state == jobs.RunResultState.SUCCESS
    assert [h.type for h in repaired.repair_history] == [jobs.RepairHistoryItemType.ORIGINAL,
                                                        jobs.RepairHistoryItemType.REPAIR]
    load = {t.task_key: t for t in repaired.tasks}["load"]
    assert load.run_id != tasks["load"].run_id
    assert "loaded 3" in w.jobs.get_run_output(load.run_id).logs

    runs = list(w.jobs.list_runs(job_id=job_id, expand_tasks=True))
    assert [r.run_id for r in runs] == [run.run_id] and len(runs[0].tasks) == 2

    w.jobs.update(job_id, new_settings=jobs.JobSettings(
        max_concurrent_runs=2, tasks=[jobs.Task(task_key="wait", spark_python_task=jobs.SparkPythonTask(
            python_file="sleep.py"))]), fields_to_remove=["tags", "tasks/load"])
    settings = w.jobs.get(job_id).settings
    assert settings.max_concurrent_runs == 2 and not settings.tags
    assert [t.task_key for t in settings.tasks] == ["extract", "wait"]

    waiter = w.jobs.run_now(job_id)
    w.jobs.cancel_run(waiter.run_id)
    canceled = waiter.result(timeout=timedelta(seconds=60))
    assert canceled.state.result_state == jobs.RunResultState.CANCELED

    w.jobs.reset(job_id, new_settings=jobs.JobSettings(name="sdk-demo-2", tasks=[
        jobs.Task(task_key="extract", spark_python_task=jobs.SparkPythonTask(python_file="extract.py"))]))
    assert w.jobs.get(job_id).settings.name == "sdk-demo-2"
    assert len(list(w.jobs.list_runs(job_id=job_id))) == 2

    w.jobs.delete(job_id)
    with pytest.raises(ResourceDoesNotExist, match=f"Job {job_id} does not exist"):
        w.jobs.get(job_id)
    with pytest.raises(ResourceDoesNotExist, match="Run 987654 does not exist"):
        w.jobs.get_run(987654)
    with pytest.raises(InvalidParameterValue, match=f"Job {job_id} does not exist"):
        w.jobs.delete(job_id)


def test_the_sdk_pages_through_lists(server):
    w = client(server)
    ids = [w.jobs.create(name=f"j{i}", tasks=[jobs.Task(task_key="a", spark_python_task=jobs.SparkPythonTask(
        python_file="extract.py"))]).job_id for i in range(3)]
    assert [j.job_id for j in w.jobs.list(limit=1)] == ids[::-1]  # three requests, newest first
    run_ids = [w.jobs.run_now(ids[0]).run_id for _ in range(2)]
    for run_id in run_ids:
        w.jobs.wait_get_run_job_terminated_or_skipped(run_id, timeout=timedelta(seconds=60))
    assert [r.run_id for r in w.jobs.list_runs(job_id=ids[0], limit=1)] == run_ids[::-1]
    submitted = w.jobs.submit(run_name="once", tasks=[jobs.SubmitTask(
        task_key="a", spark_python_task=jobs.SparkPythonTask(python_file="extract.py"))]).result(
        timeout=timedelta(seconds=60))
    assert submitted.run_type == jobs.RunType.SUBMIT_RUN and submitted.state.result_state.value == "SUCCESS"


def test_the_sdk_without_the_right_token_is_unauthenticated(server):
    with pytest.raises(Unauthenticated, match="Missing or wrong token"):
        list(client(server, token="not-the-token").jobs.list())
