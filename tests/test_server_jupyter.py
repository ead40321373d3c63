"""The Jobs API as a Jupyter server extension: a real `jupyter server`, enabled by the installed config."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from databricks.sdk import WorkspaceClient

from nbjobs.service import Workspace
from conftest import stop_process, write_script

pytestmark = [pytest.mark.timeout(120), pytest.mark.server]

TOKEN = "jupyter-token-9012"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _enabled_on_install() -> bool:
    from jupyter_core.paths import jupyter_config_path
    return any((Path(p) / "jupyter_server_config.d" / "nbjobs.json").is_file() for p in jupyter_config_path())


@pytest.fixture
def jupyter(tmp_path):
    assert _enabled_on_install(), ("nbjobs' jupyter_server_config.d/nbjobs.json is not installed: "
                                   "run `make venv-test` (or pip install .)")
    root = tmp_path / "root"
    write_script(root / "hello.py", """
        from databricks.sdk.runtime import dbutils
        print("hello from a task")
        dbutils.jobs.taskValues.set("greeting", "hi")
    """)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBJOBS_", "JUPYTER_"))}
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    log = open(tmp_path / "jupyter.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
         f"--ServerApp.root_dir={root}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(root))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "jupyter.log").read_text()
            try:
                if requests.get(f"{url}/api/status", headers={"Authorization": f"token {TOKEN}"},
                                timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "jupyter.log").read_text()
            time.sleep(0.1)
        yield url, root, tmp_path / "jupyter.log"
    finally:
        stop_process(proc)
        log.close()


def test_the_extension_answers_with_jupyters_token(jupyter):
    url, root, log = jupyter
    api = f"{url}/api/2.2/jobs"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = requests.get(f"{url}/.well-known/databricks-config", timeout=10)
    assert r.status_code == 200 and r.json() == {}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = requests.get(f"{api}/list", headers=headers, timeout=10)
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
        assert "the Jupyter server's token" in r.json()["message"]
    assert requests.post(f"{api}/create", json={"name": "x"}, timeout=10).status_code == 401

    job = {"name": "in-jupyter", "tasks": [{"task_key": "hello", "spark_python_task": {"python_file": "hello.py"}}]}
    r = requests.post(f"{api}/create", json=job, headers=auth, timeout=10)  # no XSRF cookie needed
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    r = requests.post(f"{api}/create", json={"name": "bad"}, headers=auth, timeout=10)
    assert r.status_code == 400 and "a job needs at least one task" in r.json()["message"]

    w = WorkspaceClient(host=url, token=TOKEN, auth_type="pat")  # Jupyter's token works for the SDK too
    assert [j.job_id for j in w.jobs.list()] == [job_id]
    run_id = requests.post(f"{api}/run-now", json={"job_id": job_id}, headers=auth, timeout=10).json()["run_id"]
    deadline = time.monotonic() + 60
    while True:
        run = requests.get(f"{api}/runs/get", params={"run_id": run_id}, headers=auth, timeout=10).json()
        if run["state"]["life_cycle_state"] == "TERMINATED":
            break
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    assert run["state"]["result_state"] == "SUCCESS", run
    output = w.jobs.get_run_output(run["tasks"][0]["run_id"])
    assert "hello from a task" in output.logs

    # The workspace store is shared: the CLI and the panel see the run the server executed.
    ws = Workspace(root / ".nbjobs")
    try:
        assert ws.get_run(run_id)["state"]["result_state"] == "SUCCESS"
        assert ws.store.task_values(run_id) == {"hello": {"greeting": "hi"}}
    finally:
        ws.close()
    assert TOKEN not in log.read_text()
