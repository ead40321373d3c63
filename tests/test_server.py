"""The Jobs API server (`nbjobs serve`'s handlers) on a real tornado server on 127.0.0.1: auth, every
endpoint and its error answers, paging, the HTTP client (`nbjobs.connect`) and the CLI's remote mode."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

import nbjobs
from nbjobs.cli import main
from nbjobs.client import ServerUnavailable, Unauthenticated
from nbjobs.server import ServerThread
from nbjobs.service import InvalidParameterValue, ResourceDoesNotExist
from nbjobs.spec import JobDefinitionError
from conftest import ROOT, write_job, write_notebook, write_script

pytestmark = [pytest.mark.timeout(120), pytest.mark.server]

TOKEN = "test-token-1234"


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    write_script(root / "ok.py", """
        import sys
        from nbjobs import dbutils
        print("ok", sys.argv[1:])
        dbutils.jobs.taskValues.set("n", 7)
    """)
    write_script(root / "fail.py", 'raise ValueError("boom")\n')
    write_script(root / "flaky.py", """
        import os, sys
        if not os.path.exists("fixed"):
            sys.exit("not fixed yet")
        print("fixed")
    """)
    write_script(root / "slow.py", "import time\ntime.sleep(30)\n")
    return root


@pytest.fixture
def server(tmp_path, root):
    srv = ServerThread(home=tmp_path / "home", root=root, token=TOKEN)
    yield srv
    srv.stop()


class Api:
    def __init__(self, srv, version="2.2", token=TOKEN):
        self.srv, self.version, self.token = srv, version, token

    def __call__(self, method, endpoint, token=..., **kw):
        token = self.token if token is ... else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, f"{self.srv.url}/api/{self.version}/jobs/{endpoint}", headers=headers,
                                timeout=30, **kw)

    def ok(self, method, endpoint, **kw):
        r = self(method, endpoint, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def error(self, method, endpoint, status, code, **kw):
        r = self(method, endpoint, **kw)
        assert r.status_code == status, r.text
        body = r.json()
        assert body["error_code"] == code, body
        assert "Unexpected error" not in body["message"]
        return body["message"]

    def wait(self, run_id, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            run = self.ok("GET", "runs/get", params={"run_id": run_id})
            if run["state"]["life_cycle_state"] in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
                return run
            assert time.monotonic() < deadline, run["state"]
            time.sleep(0.05)


@pytest.fixture
def api(server):
    return Api(server)


def script_job(name="demo", **extra):
    return {"name": name, "tasks": [
        {"task_key": "a", "spark_python_task": {"python_file": "ok.py", "parameters": ["x"]}},
        {"task_key": "b", "depends_on": [{"task_key": "a"}], "spark_python_task": {"python_file": "flaky.py"}},
    ], **extra}


# -- auth --------------------------------------------------------------------------------------------

def test_well_known_config_needs_no_token(server):
    r = requests.get(f"{server.url}/.well-known/databricks-config", timeout=10)
    assert r.status_code == 200 and r.json() == {}


def test_every_api_call_needs_the_token_and_it_is_never_logged(server, api, caplog):
    caplog.set_level(logging.INFO, logger="nbjobs.server")
    for token in (None, "wrong-token"):
        r = api("GET", "list", token=token)
        assert r.status_code == 401
        assert r.json()["error_code"] == "UNAUTHENTICATED"
        assert "Authorization: Bearer <token>" in r.json()["message"]
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert api("POST", "create", token=None, json=script_job()).status_code == 401
    assert api("GET", "list").status_code == 200
    assert requests.get(f"{server.url}/api/2.2/jobs/list", headers={"Authorization": f"token {TOKEN}"},
                        timeout=10).status_code == 200
    assert requests.get(f"{server.url}/api/2.2/jobs/list?token={TOKEN}", timeout=10).status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/api/2.2/jobs/list" in logged and "401" in logged
    assert TOKEN not in logged and "wrong-token" not in logged


def test_2_0_2_1_and_2_2_paths_unknown_endpoints_and_methods(server, api):
    job_id = api.ok("POST", "create", json=script_job())["job_id"]
    assert isinstance(job_id, int)
    for version in ("2.0", "2.1", "2.2"):
        assert Api(server, version).ok("GET", "get", params={"job_id": job_id})["job_id"] == job_id
    assert "No API found for 'GET /api/2.2/jobs/nope'" in api.error("GET", "nope", 404, "ENDPOINT_NOT_FOUND")
    assert "use GET" in api.error("POST", "get", 405, "BAD_REQUEST", json={"job_id": job_id})
    assert api.error("PUT", "create", 405, "BAD_REQUEST")
    r = requests.get(f"{server.url}/somewhere", timeout=10)
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"


# -- jobs ---------------------------------------------------------------------------------------------

def test_create_get_and_bad_bodies(server, api, root):
    created = api.ok("POST", "create", json={**script_job(), "access_control_list": [{"user_name": "x"}]})
    job = api.ok("GET", "get", params={"job_id": created["job_id"]})
    assert job["settings"]["name"] == "demo"
    assert job["settings"]["queue"] == {"enabled": True}  # Jobs API 2.2 default
    assert "access_control_list" not in job["settings"]
    assert job["settings"]["tasks"][0]["spark_python_task"]["python_file"] == str(root / "ok.py")
    job21 = Api(server, "2.1").ok("POST", "create", json=script_job("v21"))["job_id"]
    assert "queue" not in api.ok("GET", "get", params={"job_id": job21})["settings"]

    message = api.error("POST", "create", 400, "MALFORMED_REQUEST", data="{not json")
    assert "Invalid JSON given in the body of the request" in message
    assert "expected a map" in api.error("POST", "create", 400, "MALFORMED_REQUEST", data="[1]")
    r = api("POST", "create", json={"name": "x", "tasks": [
        {"task_key": "a", "spark_python_task": {"python_file": "missing.py"}},
        {"task_key": "b", "depends_on": [{"task_key": "zz"}], "spark_python_task": {"python_file": "ok.py"}}]})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    paths = [p["path"] for p in r.json()["problems"]]
    assert "tasks[0] (a).spark_python_task.python_file" in paths
    assert any(p.startswith("tasks[1] (b).depends_on") for p in paths)
    assert "script not found" in r.json()["message"]
    message = api.error("POST", "create", 400, "INVALID_PARAMETER_VALUE", json={"name": "x", "tasks": [
        {"task_key": "a", "spark_python_task": {"python_file": "../outside.py"}}]})
    assert "tasks[0] (a).spark_python_task.python_file: '../outside.py' is outside the workspace root" in message
    # A Databricks workspace path (absolute) is read under the root.
    (root / "Users" / "me").mkdir(parents=True)
    (root / "Users" / "me" / "etl.py").write_text("print(1)\n")
    created = api.ok("POST", "create", json={"name": "ws", "tasks": [
        {"task_key": "a", "spark_python_task": {"python_file": "/Users/me/etl.py"}}]})
    job = api.ok("GET", "get", params={"job_id": created["job_id"]})
    assert job["settings"]["tasks"][0]["spark_python_task"]["python_file"] == str(root / "Users/me/etl.py")

    assert api.error("GET", "get", 400, "INVALID_PARAMETER_VALUE", params={"job_id": 999}) == \
        "Job 999 does not exist."
    assert api.error("GET", "get", 400, "INVALID_PARAMETER_VALUE") == "Missing required field: job_id"
    assert api.error("GET", "get", 400, "INVALID_PARAMETER_VALUE", params={"job_id": "abc"}) == \
        'job_id: expected an integer, got "abc"'


def test_update_merges_arrays_by_key_and_removes_fields(server, api, root):
    job_id = api.ok("POST", "create", json=script_job(tags={"team": "data"}, max_concurrent_runs=1))["job_id"]
    api.ok("POST", "update", json={
        "job_id": job_id, "fields_to_remove": ["tags"],
        "new_settings": {"max_concurrent_runs": 3, "tasks": [
            {"task_key": "b", "depends_on": [{"task_key": "a"}], "spark_python_task": {"python_file": "ok.py"}},
            {"task_key": "c", "depends_on": [{"task_key": "b"}], "spark_python_task": {"python_file": "ok.py"}}]}})
    settings = api.ok("GET", "get", params={"job_id": job_id})["settings"]
    assert settings["max_concurrent_runs"] == 3 and "tags" not in settings
    assert [t["task_key"] for t in settings["tasks"]] == ["a", "b", "c"]
    assert settings["tasks"][1]["spark_python_task"]["python_file"] == str(root / "ok.py")
    assert settings["tasks"][0]["spark_python_task"]["parameters"] == ["x"]  # kept whole
    api.ok("POST", "update", json={"job_id": job_id, "fields_to_remove": ["tasks/c"]})
    assert [t["task_key"] for t in api.ok("GET", "get", params={"job_id": job_id})["settings"]["tasks"]] == \
        ["a", "b"]

    message = api.error("POST", "update", 400, "INVALID_PARAMETER_VALUE",
                        json={"job_id": job_id, "fields_to_remove": ["tasks/nope"]})
    assert "the job has no tasks entry with task_key 'nope'" in message
    message = api.error("POST", "update", 400, "INVALID_PARAMETER_VALUE",
                        json={"job_id": job_id, "fields_to_remove": ["tasks/a"]})  # b depends on a
    assert "tasks[0] (b).depends_on" in message
    assert "fields_to_remove: expected a list of strings" in api.error(
        "POST", "update", 400, "INVALID_PARAMETER_VALUE", json={"job_id": job_id, "fields_to_remove": "tags"})
    assert "new_settings: expected an object" in api.error(
        "POST", "update", 400, "INVALID_PARAMETER_VALUE", json={"job_id": job_id, "new_settings": [1]})
    assert api.error("POST", "update", 400, "INVALID_PARAMETER_VALUE",
                     json={"job_id": 999, "new_settings": {}}) == "Job 999 does not exist."


def test_reset_replaces_all_settings_and_delete(server, api):
    job_id = api.ok("POST", "create", json=script_job(tags={"team": "data"}))["job_id"]
    api.ok("POST", "reset", json={"job_id": job_id, "new_settings": {
        "name": "renamed", "tasks": [{"task_key": "z", "spark_python_task": {"python_file": "ok.py"}}]}})
    settings = api.ok("GET", "get", params={"job_id": job_id})["settings"]
    assert settings["name"] == "renamed" and "tags" not in settings
    assert [t["task_key"] for t in settings["tasks"]] == ["z"]
    assert api.error("POST", "reset", 400, "INVALID_PARAMETER_VALUE", json={"job_id": job_id}) == \
        "Missing required field: new_settings"
    assert "a job needs at least one task" in api.error(
        "POST", "reset", 400, "INVALID_PARAMETER_VALUE", json={"job_id": job_id, "new_settings": {"name": "x"}})
    assert api.ok("POST", "delete", json={"job_id": job_id}) == {}
    assert api.error("GET", "get", 400, "INVALID_PARAMETER_VALUE", params={"job_id": job_id}) == \
        f"Job {job_id} does not exist."
    assert api.error("POST", "delete", 400, "INVALID_PARAMETER_VALUE", json={"job_id": job_id}) == \
        f"Job {job_id} does not exist."
    assert api.error("POST", "delete", 400, "INVALID_PARAMETER_VALUE", json={}) == "Missing required field: job_id"


def test_list_pages_name_and_tags(server, api):
    ids = [api.ok("POST", "create", json=script_job(f"job-{i}", tags={"team": "a" if i % 2 else "b"}))["job_id"]
           for i in range(5)]
    assert api.ok("GET", "list") == {"has_more": False, "jobs": api.ok("GET", "list")["jobs"]}
    seen, token, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"page_token": token} if token else {})}
        page = api.ok("GET", "list", params=params)
        pages += 1
        seen += [j["job_id"] for j in page["jobs"]]
        assert "tasks" not in page["jobs"][0]["settings"]  # BaseJob without expand_tasks
        token = page.get("next_page_token")
        if not token:
            assert page["has_more"] is False
            break
    assert pages == 3 and seen == sorted(ids, reverse=True)  # newest first
    assert [j["job_id"] for j in api.ok("GET", "list", params={"name": "JOB-3"})["jobs"]] == [ids[3]]
    assert api.ok("GET", "list", params={"name": "job"}) == {"has_more": False}  # exact; "jobs" omitted
    assert [j["job_id"] for j in api.ok("GET", "list", params={"tag": "team=a"})["jobs"]] == [ids[3], ids[1]]
    expanded = api.ok("GET", "list", params={"expand_tasks": "true", "limit": 1})["jobs"][0]
    assert len(expanded["settings"]["tasks"]) == 2
    assert "limit: must be between 1 and 100" in api.error("GET", "list", 400, "INVALID_PARAMETER_VALUE",
                                                           params={"limit": 101})
    assert "page_token" in api.error("GET", "list", 400, "INVALID_PARAMETER_VALUE", params={"page_token": "zz"})
    assert "expand_tasks: expected true or false" in api.error("GET", "list", 400, "INVALID_PARAMETER_VALUE",
                                                               params={"expand_tasks": "yes"})


# -- runs ---------------------------------------------------------------------------------------------

def test_run_now_get_output_list_repair_delete(server, api, root):
    job_id = api.ok("POST", "create", json=script_job())["job_id"]
    started = api.ok("POST", "run-now", json={"job_id": job_id})
    assert set(started) == {"run_id", "number_in_job"} and isinstance(started["run_id"], int)
    run = api.wait(started["run_id"])
    assert run["state"]["result_state"] == "FAILED"
    tasks = {t["task_key"]: t for t in run["tasks"]}
    assert tasks["b"]["state"]["result_state"] == "FAILED"
    assert run["repair_history"][0]["type"] == "ORIGINAL"

    message = api.error("GET", "runs/get-output", 400, "INVALID_PARAMETER_VALUE", params={"run_id": run["run_id"]})
    assert message.startswith("Retrieving the output of runs with multiple tasks is not supported.")
    output = api.ok("GET", "runs/get-output", params={"run_id": tasks["a"]["run_id"]})
    assert "ok ['x']" in output["logs"] and output["metadata"]["job_run_id"] == run["run_id"]
    output = api.ok("GET", "runs/get-output", params={"run_id": tasks["b"]["run_id"]})
    assert output["error"] == "flaky.py exited with code 1: not fixed yet"
    assert api.ok("GET", "runs/get", params={"run_id": tasks["a"]["run_id"]})["tasks"][0]["task_key"] == "a"

    # repair: errors first, then rerun the failed task once it can succeed
    assert "Give exactly one of rerun_tasks" in api.error(
        "POST", "runs/repair", 400, "INVALID_PARAMETER_VALUE",
        json={"run_id": run["run_id"], "rerun_tasks": ["b"], "rerun_all_failed_tasks": True})
    assert api.error("POST", "runs/repair", 400, "INVALID_PARAMETER_VALUE",
                     json={"run_id": 999999, "rerun_all_failed_tasks": True}) == "Run 999999 does not exist."
    assert "notebook_params: legacy per-task overrides are not supported" in api.error(
        "POST", "runs/repair", 400, "INVALID_PARAMETER_VALUE",
        json={"run_id": run["run_id"], "rerun_tasks": ["b"], "notebook_params": {"x": "1"}})
    (root / "fixed").write_text("")
    repair = api.ok("POST", "runs/repair", json={"run_id": run["run_id"], "rerun_all_failed_tasks": True})
    assert isinstance(repair["repair_id"], int)
    repaired = api.wait(run["run_id"])
    assert repaired["state"]["result_state"] == "SUCCESS"
    assert [h["type"] for h in repaired["repair_history"]] == ["ORIGINAL", "REPAIR"]
    assert repaired["repair_history"][1]["id"] == repair["repair_id"]
    assert "latest repair ID needs to be provided" in api.error(
        "POST", "runs/repair", 400, "INVALID_PARAMETER_VALUE", json={"run_id": run["run_id"], "rerun_tasks": ["a"]})

    # a second run; runs/list newest first, filters, paging
    second = api.wait(api.ok("POST", "run-now", json={"job_id": job_id})["run_id"])
    runs = api.ok("GET", "runs/list", params={"job_id": job_id})
    assert [r["run_id"] for r in runs["runs"]] == [second["run_id"], run["run_id"]]
    assert runs["has_more"] is False and "next_page_token" not in runs and "tasks" not in runs["runs"][0]
    page1 = api.ok("GET", "runs/list", params={"job_id": job_id, "limit": 1, "expand_tasks": "true"})
    assert page1["has_more"] is True and len(page1["runs"][0]["tasks"]) == 2
    page2 = api.ok("GET", "runs/list", params={"job_id": job_id, "limit": 1, "page_token": page1["next_page_token"]})
    assert [r["run_id"] for r in page2["runs"]] == [run["run_id"]] and "next_page_token" not in page2
    assert api.ok("GET", "runs/list", params={"active_only": "true"}) == {"has_more": False}
    assert len(api.ok("GET", "runs/list", params={"completed_only": "true", "limit": 0})["runs"]) == 2
    assert api.ok("GET", "runs/list", params={"run_type": "SUBMIT_RUN"}) == {"has_more": False}
    assert "limit: must be between 0 and 25" in api.error("GET", "runs/list", 400, "INVALID_PARAMETER_VALUE",
                                                          params={"limit": 26})
    assert "active_only and completed_only cannot both be true" in api.error(
        "GET", "runs/list", 400, "INVALID_PARAMETER_VALUE", params={"active_only": "true", "completed_only": "true"})
    assert "run_type: expected one of" in api.error("GET", "runs/list", 400, "INVALID_PARAMETER_VALUE",
                                                    params={"run_type": "OTHER"})

    assert api.ok("POST", "runs/delete", json={"run_id": second["run_id"]}) == {}
    assert api.error("GET", "runs/get", 400, "INVALID_PARAMETER_VALUE", params={"run_id": second["run_id"]}) == \
        f"Run {second['run_id']} does not exist."
    assert api.error("POST", "runs/delete", 400, "INVALID_PARAMETER_VALUE", json={"run_id": second["run_id"]}) == \
        f"Run {second['run_id']} does not exist."


def test_run_now_errors_cancel_and_cancel_all(server, api):
    job_id = api.ok("POST", "create", json={"name": "slow", "parameters": [{"name": "p", "default": "d"}],
                                            "tasks": [{"task_key": "s", "spark_python_task": {"python_file": "slow.py"}}]})["job_id"]
    assert api.error("POST", "run-now", 400, "INVALID_PARAMETER_VALUE", json={"job_id": 999}) == \
        "Job 999 does not exist."
    assert api.error("POST", "run-now", 400, "INVALID_PARAMETER_VALUE", json={}) == "Missing required field: job_id"
    assert "has no parameter named 'nope'" in api.error("POST", "run-now", 400, "INVALID_PARAMETER_VALUE",
                                                        json={"job_id": job_id, "job_parameters": {"nope": "1"}})
    assert "job_parameters.p: expected a string" in api.error(
        "POST", "run-now", 400, "INVALID_PARAMETER_VALUE", json={"job_id": job_id, "job_parameters": {"p": [1]}})
    assert "python_params: legacy per-task overrides" in api.error(
        "POST", "run-now", 400, "INVALID_PARAMETER_VALUE", json={"job_id": job_id, "python_params": ["a"]})

    run_id = api.ok("POST", "run-now", json={"job_id": job_id, "job_parameters": {"p": "v"}})["run_id"]
    assert api.ok("GET", "runs/get", params={"run_id": run_id})["state"]["life_cycle_state"] in \
        ("PENDING", "RUNNING", "QUEUED")
    assert "INVALID_STATE" == api("POST", "runs/delete", json={"run_id": run_id}).json()["error_code"]
    assert "runs/cancel-all needs job_id" in api.error("POST", "runs/cancel-all", 400, "INVALID_PARAMETER_VALUE",
                                                       json={})
    assert api.error("POST", "runs/cancel", 400, "INVALID_PARAMETER_VALUE", json={"run_id": 999999}) == \
        "Run 999999 does not exist."
    assert api.ok("POST", "runs/cancel", json={"run_id": run_id}) == {}
    run = api.wait(run_id)
    assert run["state"]["result_state"] == "CANCELED"
    assert run["job_parameters"] == [{"name": "p", "default": "d", "value": "v"}]

    second = api.ok("POST", "run-now", json={"job_id": job_id})["run_id"]
    assert api.ok("POST", "runs/cancel-all", json={"job_id": job_id}) == {}
    assert api.wait(second)["state"]["result_state"] == "CANCELED"


def test_submit_runs_a_one_time_run_with_idempotency(server, api):
    body = {"run_name": "once", "idempotency_token": "tok-1", "tasks": [
        {"task_key": "a", "spark_python_task": {"python_file": "ok.py"}}]}
    run_id = api.ok("POST", "runs/submit", json=body)["run_id"]
    assert api.ok("POST", "runs/submit", json=body)["run_id"] == run_id
    run = api.wait(run_id)
    assert run["run_type"] == "SUBMIT_RUN" and run["run_name"] == "once" and "job_id" not in run
    assert run["state"]["result_state"] == "SUCCESS"
    assert [r["run_id"] for r in api.ok("GET", "runs/list", params={"run_type": "SUBMIT_RUN"})["runs"]] == [run_id]
    assert "tasks[0] (a).spark_python_task.python_file" in api.error(
        "POST", "runs/submit", 400, "INVALID_PARAMETER_VALUE",
        json={"tasks": [{"task_key": "a", "spark_python_task": {"python_file": "nope.py"}}]})


def test_for_each_task_runs_list_their_iterations(server, api, root):
    job_id = api.ok("POST", "create", json={"name": "loop", "tasks": [
        {"task_key": "loop", "for_each_task": {"inputs": '["x", "y"]', "concurrency": 2, "task": {
            "task_key": "each", "spark_python_task": {"python_file": "ok.py", "parameters": ["{{input}}"]}}}}]})["job_id"]
    job = api.ok("GET", "get", params={"job_id": job_id})
    assert job["settings"]["tasks"][0]["for_each_task"]["task"]["spark_python_task"]["python_file"] == \
        str(root / "ok.py")
    run = api.wait(api.ok("POST", "run-now", json={"job_id": job_id})["run_id"])
    assert run["state"]["result_state"] == "SUCCESS", run
    loop = api.ok("GET", "runs/get", params={"run_id": run["tasks"][0]["run_id"]})
    assert len(loop["iterations"]) == 2
    logs = [api.ok("GET", "runs/get-output", params={"run_id": i["run_id"]})["logs"] for i in loop["iterations"]]
    assert sorted(logs) == ["ok ['x']\n", "ok ['y']\n"]


def test_export_renders_the_executed_notebook(server, api, root):
    write_notebook(root / "nb.ipynb", "print('exported', 6 * 7)")
    job_id = api.ok("POST", "create", json={"name": "nb", "tasks": [
        {"task_key": "n", "notebook_task": {"notebook_path": "nb"}},
        {"task_key": "s", "spark_python_task": {"python_file": "ok.py"}}]})["job_id"]
    run = api.wait(api.ok("POST", "run-now", json={"job_id": job_id})["run_id"], timeout=90)
    assert run["state"]["result_state"] == "SUCCESS", run
    tasks = {t["task_key"]: t["run_id"] for t in run["tasks"]}
    views = api.ok("GET", "runs/export", params={"run_id": tasks["n"]})["views"]
    assert len(views) == 1 and views[0]["type"] == "NOTEBOOK" and views[0]["name"] == "nb"
    html = views[0]["content"]
    assert html.lstrip().lower().startswith("<!doctype html") and "exported 42" in html
    assert "injected" not in html  # nbjobs' own cell is left out
    assert len(api.ok("GET", "runs/export", params={"run_id": run["run_id"]})["views"]) == 1
    assert api.ok("GET", "runs/export", params={"run_id": tasks["n"], "views_to_export": "DASHBOARDS"}) == \
        {"views": []}
    assert "only notebook task runs can be exported" in api.error(
        "GET", "runs/export", 400, "INVALID_PARAMETER_VALUE", params={"run_id": tasks["s"]})
    assert "views_to_export: expected CODE, DASHBOARDS or ALL" in api.error(
        "GET", "runs/export", 400, "INVALID_PARAMETER_VALUE", params={"run_id": tasks["n"], "views_to_export": "X"})
    assert api.error("GET", "runs/export", 400, "INVALID_PARAMETER_VALUE", params={"run_id": 999999}) == \
        "Run 999999 does not exist."


# -- the HTTP client and the CLI's remote mode ---------------------------------------------------------

def test_connect_gives_a_workspace_like_client(server, root):
    client = nbjobs.connect(server.url, TOKEN)
    job_id = client.create_job(script_job())
    assert client.get_job(job_id)["settings"]["name"] == "demo"
    assert [j["job_id"] for j in client.list_jobs(name="demo")] == [job_id]
    events = []
    run = client.run_now(job_id, on_event=lambda e: events.append((e.kind, e.task_key, e.result_state)))
    assert run["state"]["result_state"] == "FAILED"
    assert ("task_end", "b", "FAILED") in events and events[-1][0] == "run_end"
    b = {t["task_key"]: t for t in run["tasks"]}["b"]
    assert client.get_run_output(b["run_id"])["error"].endswith("not fixed yet")
    (root / "fixed").write_text("")
    assert client.repair_run(run["run_id"], rerun_tasks=["b"])["state"]["result_state"] == "SUCCESS"
    assert [r["run_id"] for r in client.list_runs(job_id=job_id)] == [run["run_id"]]
    client.update_job(job_id, {"tags": {"t": "1"}})
    assert client.list_jobs(tags={"t": "1"})[0]["job_id"] == job_id
    assert client.save_job(script_job(), base_dir=root) == (job_id, False)

    with pytest.raises(ResourceDoesNotExist, match="Job 999 does not exist."):
        client.get_job(999)
    with pytest.raises(ResourceDoesNotExist, match="Run 999999 does not exist."):
        client.cancel_run(999999)
    with pytest.raises(JobDefinitionError) as info:
        client.create_job({"name": "bad", "tasks": []})
    assert info.value.problems[0].path == "tasks"
    with pytest.raises(InvalidParameterValue, match="has no parameter named"):
        client.run_now(job_id, {"nope": "1"})
    with pytest.raises(Unauthenticated):
        nbjobs.connect(server.url, "wrong").list_jobs()
    client.delete_job(job_id)
    assert client.list_jobs() == []


def test_connect_reports_a_server_that_is_not_there(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerUnavailable, match="cannot reach the nbjobs server"):
        nbjobs.connect(f"http://127.0.0.1:{port}", "x").list_jobs()
    with pytest.raises(InvalidParameterValue, match="needs a scheme"):
        nbjobs.connect("127.0.0.1:1", "x")


def test_cli_talks_to_a_server_with_host_and_token(server, root, tmp_path, capsys, monkeypatch):
    job_file = write_job(root / "jobs" / "job.yml", {"name": "remote", "tasks": [
        {"task_key": "a", "spark_python_task": {"python_file": "../ok.py"}}]})
    code = main(["--host", server.url, "--token", TOKEN, "run", str(job_file)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"started on {server.url}" in err and "a SUCCESS" in err and "SUCCESS" in out
    monkeypatch.setenv("NBJOBS_HOST", server.url)
    monkeypatch.setenv("NBJOBS_TOKEN", TOKEN)
    assert main(["jobs", "list", "-o", "json"]) == 0
    listed = capsys.readouterr().out
    assert '"name": "remote"' in listed
    assert main(["runs", "list"]) == 0 and "remote" in capsys.readouterr().out
    monkeypatch.setenv("NBJOBS_TOKEN", "wrong")
    assert main(["jobs", "list"]) == 1
    assert "Missing or wrong token" in capsys.readouterr().err


def test_nbjobs_serve_command(tmp_path, root):
    """The real command: prints its URL and (new) token, saves the token owner-only, stops on SIGINT."""
    home = tmp_path / "served"
    env = {k: v for k, v in os.environ.items() if k not in ("NBJOBS_TOKEN", "NBJOBS_HOST")}
    proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "--home", str(home), "serve", "--port", "0",
                             "--root", str(root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=str(ROOT))
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        url = lines[0].split("nbjobs server: ")[1].strip()
        token = lines[2].rsplit(": ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and token.startswith("nbj-")
        token_file = home / "server-token"
        assert token_file.read_text().strip() == token and (token_file.stat().st_mode & 0o777) == 0o600
        r = requests.get(f"{url}/api/2.2/jobs/list", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200
        assert requests.get(f"{url}/api/2.2/jobs/list", timeout=10).status_code == 401
        client = nbjobs.connect(url, home=home)  # the saved token, for a server on this machine
        assert client.list_jobs() == []
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert token not in rest  # the log lines carry no token
