"""The one client contract (nbjobs.contract.JobsClient): one suite, run unchanged against the in-process
Workspace and against a real `nbjobs serve` on 127.0.0.1 through the HTTP client (the shape of
Dagster's run-storage tests: one class of tests, a `client` fixture overridden per implementation).
Small jobs only (condition tasks and tiny scripts): no kernels."""
from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

import nbjobs
from nbjobs.client import Client
from nbjobs.contract import CONTRACT_VERBS, REPAIR_RERUN_DEPENDENT_TASKS, JobsClient
from nbjobs.errors import InvalidParameterValue, InvalidState, JobDefinitionError, ResourceDoesNotExist
from nbjobs.follow import cancel_on_interrupt
from nbjobs.service import Workspace
from conftest import ROOT, by_key, stop_process, task_states, wait_for, write_script

pytestmark = pytest.mark.timeout(180)

TOKEN = "contract-token-5678"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The folder of the jobs' scripts (the server's --root)."""
    root = tmp_path_factory.mktemp("root")
    write_script(root / "ok.py", """
        import sys
        from nbjobs import dbutils
        print("ok", sys.argv[1:])
        dbutils.jobs.taskValues.set("n", 7)
    """)
    write_script(root / "flaky.py", """
        import os, sys
        if not os.path.exists(sys.argv[1]):
            sys.exit("not fixed yet")
        print("fixed")
    """)
    write_script(root / "slow.py", "import time\nprint('slow', flush=True)\ntime.sleep(60)\n")
    return root


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def condition_job(name: str) -> dict:
    return {"name": name, "tags": {"suite": "contract"},
            "parameters": [{"name": "x", "default": "1"}],
            "tasks": [
                {"task_key": "check", "condition_task": {"op": "EQUAL_TO", "left": "{{job.parameters.x}}",
                                                         "right": "1"}},
                {"task_key": "emit", "depends_on": [{"task_key": "check", "outcome": "true"}],
                 "spark_python_task": {"python_file": "ok.py", "parameters": ["{{job.parameters.x}}"]}},
                {"task_key": "other", "depends_on": [{"task_key": "check", "outcome": "false"}],
                 "condition_task": {"op": "EQUAL_TO", "left": "a", "right": "a"}},
            ]}


def flaky_job(name: str, flag: str) -> dict:
    return {"name": name, "tasks": [
        {"task_key": "a", "spark_python_task": {"python_file": "ok.py"}},
        {"task_key": "b", "depends_on": [{"task_key": "a"}],
         "spark_python_task": {"python_file": "flaky.py", "parameters": [flag]}},
        {"task_key": "after", "depends_on": [{"task_key": "b"}], "condition_task": {
            "op": "EQUAL_TO", "left": "1", "right": "1"}},
        {"task_key": "always", "depends_on": [{"task_key": "b"}], "run_if": "ALL_DONE",
         "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
    ]}


def slow_job(name: str) -> dict:
    return {"name": name, "max_concurrent_runs": 5,
            "tasks": [{"task_key": "slow", "spark_python_task": {"python_file": "slow.py"}}]}


class ContractSuite:
    """Every JobsClient verb; subclasses give the `client` fixture."""

    @pytest.fixture
    def client(self) -> JobsClient:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- the contract itself --------------------------------------------------------------------------
    def test_is_a_jobs_client(self, client):
        assert isinstance(client, JobsClient)
        assert isinstance(client.location, str) and client.location

    # -- jobs ---------------------------------------------------------------------------------------------
    def test_job_crud(self, client, root):
        name = unique("crud")
        job_id = client.create_job(condition_job(name), base_dir=root)
        job = client.get_job(job_id)
        assert job["job_id"] == job_id and job["settings"]["name"] == name
        assert job["settings"]["tasks"][1]["spark_python_task"]["python_file"] == str(root / "ok.py")
        assert [j["job_id"] for j in client.list_jobs(name=name)] == [job_id]
        assert job_id in [j["job_id"] for j in client.list_jobs(tags={"suite": "contract"})]
        assert job_id in [j["job_id"] for j in client.list_jobs(tags={"suite": None})]
        assert job_id not in [j["job_id"] for j in client.list_jobs(tags={"suite": "other"})]
        listed = client.list_jobs(name=name, expand_tasks=True)[0]
        assert [t["task_key"] for t in listed["settings"]["tasks"]] == ["check", "emit", "other"]

        client.update_job(job_id, {"max_concurrent_runs": 3}, ["tags"])
        settings = client.get_job(job_id)["settings"]
        assert settings["max_concurrent_runs"] == 3 and "tags" not in settings
        client.update_job(job_id, {"tasks": [{"task_key": "other", "condition_task": {
            "op": "EQUAL_TO", "left": "b", "right": "b"}}]}, ["tasks/emit"])
        tasks = client.get_job(job_id)["settings"]["tasks"]
        assert [t["task_key"] for t in tasks] == ["check", "other"] and "depends_on" not in tasks[1]

        client.reset_job(job_id, {**condition_job(name), "tags": {"reset": ""}}, base_dir=root)
        assert client.get_job(job_id)["settings"]["tags"] == {"reset": ""}
        assert client.save_job(condition_job(name), base_dir=root) == (job_id, False)
        other_id, created = client.save_job(condition_job(unique("saved")), base_dir=root)
        assert created and other_id != job_id

        client.delete_job(job_id)
        with pytest.raises(ResourceDoesNotExist, match=f"Job {job_id} does not exist."):
            client.get_job(job_id)
        assert client.list_jobs(name=name) == []

    # -- runs -----------------------------------------------------------------------------------------------
    def test_run_now_waits_and_runs_get_list_and_output(self, client, root):
        job_id = client.create_job(condition_job(unique("run")), base_dir=root)
        run = client.run_now(job_id, {"x": "1"})
        assert run["state"]["result_state"] == "SUCCESS" and run["job_id"] == job_id
        assert task_states(run) == {"check": "SUCCESS", "emit": "SUCCESS", "other": "EXCLUDED"}
        assert by_key(run)["check"]["condition_task"]["outcome"] == "true"
        assert client.get_run(run["run_id"])["state"] == run["state"]
        assert [r["run_id"] for r in client.list_runs(job_id=job_id)] == [run["run_id"]]
        assert client.list_runs(job_id=job_id, active_only=True) == []
        assert client.list_runs(job_id=job_id, completed_only=True, expand_tasks=True)[0]["tasks"]
        emit = by_key(run)["emit"]["run_id"]
        assert "ok ['1']" in client.get_run_output(emit)["logs"]
        assert client.get_run(emit)["job_run_id"] == run["run_id"]  # a task run id gives that task run

        other = client.run_now(job_id, {"x": "2"}, only=["check", "other"])
        assert task_states(other) == {"check": "SUCCESS", "other": "SUCCESS"}
        assert [r["run_id"] for r in client.list_runs(job_id=job_id, limit=1)] == [other["run_id"]]

    def test_run_now_without_waiting_then_wait_follows_its_events(self, client, root):
        job_id = client.create_job(condition_job(unique("events")), base_dir=root)
        started = client.run_now(job_id, wait=False)
        assert set(started) == {"run_id", "number_in_job"}
        events = []
        run = client.wait(started["run_id"], on_event=events.append)
        assert run["state"]["result_state"] == "SUCCESS"
        seen = [(e.kind, e.task_key) for e in events]
        for key in ("check", "emit"):
            assert ("task_start", key) in seen and ("task_end", key) in seen, seen
            assert seen.index(("task_start", key)) < seen.index(("task_end", key))
        assert ("task_end", "other") in seen and ("task_start", "other") not in seen  # excluded: never ran
        assert seen[-1] == ("run_end", None) and seen.count(("run_end", None)) == 1
        assert len(seen) == len(set(seen))  # each once
        assert all(e.run_id == started["run_id"] for e in events)
        end = events[-1]
        assert (end.life_cycle_state, end.result_state) == ("TERMINATED", "SUCCESS")

        again = []  # waiting for an ended run reports what happened
        client.wait(started["run_id"], on_event=again.append)
        assert {(e.kind, e.task_key) for e in again if e.kind == "task_end"} == \
            {(k, t) for k, t in seen if k == "task_end"}

    def test_run_now_with_on_event_and_idempotency(self, client, root):
        job_id = client.create_job(condition_job(unique("token")), base_dir=root)
        events = []
        token = uuid.uuid4().hex
        run = client.run_now(job_id, idempotency_token=token, on_event=events.append)
        kinds = [e.kind for e in events]
        assert "task_start" in kinds and "task_end" in kinds and kinds[-1] == "run_end"
        assert client.run_now(job_id, idempotency_token=token, wait=False)["run_id"] == run["run_id"]
        assert len(client.list_runs(job_id=job_id)) == 1

    def test_submit_run(self, client, root):
        body = {"run_name": unique("submit"), "tasks": [
            {"task_key": "s", "spark_python_task": {"python_file": "ok.py", "parameters": ["sub"]}}]}
        started = client.submit_run(body, base_dir=root)
        assert set(started) == {"run_id"}
        run = client.wait(started["run_id"])
        assert run["state"]["result_state"] == "SUCCESS" and run["run_type"] == "SUBMIT_RUN"
        events = []
        done = client.submit_run(body, wait=True, base_dir=root, on_event=events.append)
        assert done["state"]["result_state"] == "SUCCESS" and events[-1].kind == "run_end"

    def test_repair_reruns_the_failed_tasks_and_keeps_succeeded_dependents(self, client, root, tmp_path):
        flag = tmp_path / "fixed"
        job_id = client.create_job(flaky_job(unique("repair"), str(flag)), base_dir=root)
        run = client.run_now(job_id)
        assert task_states(run) == {"a": "SUCCESS", "b": "FAILED", "after": "UPSTREAM_FAILED", "always": "SUCCESS"}
        b = by_key(run)["b"]["run_id"]
        assert client.get_run_output(b)["error"].endswith("not fixed yet")
        flag.write_text("")
        assert REPAIR_RERUN_DEPENDENT_TASKS is False
        events = []
        repaired = client.repair_run(run["run_id"], rerun_tasks=["b"], on_event=events.append)
        assert task_states(repaired) == {"a": "SUCCESS", "b": "SUCCESS", "after": "SUCCESS", "always": "SUCCESS"}
        before, after = by_key(run), by_key(repaired)
        assert after["a"]["run_id"] == before["a"]["run_id"]
        assert after["always"]["run_id"] == before["always"]["run_id"]  # succeeded: not rerun by default
        assert after["b"]["run_id"] != before["b"]["run_id"]
        assert ("task_end", "b") in [(e.kind, e.task_key) for e in events]
        latest = repaired["repair_history"][-1]["id"]

        started = client.repair_run(run["run_id"], rerun_tasks="b", rerun_dependent_tasks=True,
                                    latest_repair_id=latest, wait=False)
        assert set(started) == {"repair_id"}
        again = client.wait(run["run_id"])
        assert by_key(again)["always"]["run_id"] != after["always"]["run_id"]  # every dependent reran
        assert [r["type"] for r in again["repair_history"]] == ["ORIGINAL", "REPAIR", "REPAIR"]
        with pytest.raises(InvalidParameterValue, match="latest repair ID"):
            client.repair_run(run["run_id"], rerun_all_failed_tasks=True)
        with pytest.raises(InvalidParameterValue, match="no failed task to repair"):
            client.repair_run(run["run_id"], rerun_all_failed_tasks=True,
                              latest_repair_id=again["repair_history"][-1]["id"])

    def test_cancel_cancel_all_and_delete(self, client, root):
        job_id = client.create_job(slow_job(unique("cancel")), base_dir=root)
        first = client.run_now(job_id, wait=False)["run_id"]
        second = client.run_now(job_id, wait=False)["run_id"]

        def running(run_id):
            return client.get_run(run_id)["tasks"][0]["state"]["life_cycle_state"] == "RUNNING"
        wait_for(lambda: running(first), 60, "the slow task to run")
        with pytest.raises(InvalidState):
            client.delete_run(first)
        still = client.wait(first, timeout=0.1)
        assert still["state"]["life_cycle_state"] in ("PENDING", "RUNNING")  # timeout: the run, still active
        client.cancel_run(first)
        run = client.wait(first, timeout=60)
        assert run["state"]["result_state"] == "CANCELED" and task_states(run) == {"slow": "CANCELED"}
        client.cancel_all_runs(job_id)
        assert client.wait(second, timeout=60)["state"]["result_state"] == "CANCELED"
        client.cancel_run(first)  # an ended run: nothing to do
        client.cancel_all_runs(all_queued_runs=True)

        client.delete_run(first)
        with pytest.raises(ResourceDoesNotExist, match=f"Run {first} does not exist."):
            client.get_run(first)
        assert [r["run_id"] for r in client.list_runs(job_id=job_id)] == [second]

    def test_ctrl_c_while_following_cancels_the_run(self, client, root):
        job_id = client.create_job(slow_job(unique("interrupt")), base_dir=root)
        run_id = client.run_now(job_id, wait=False)["run_id"]

        def interrupt():
            wait_for(lambda: client.get_run(run_id)["tasks"][0]["state"]["life_cycle_state"] == "RUNNING", 60,
                     "the slow task to run")
            time.sleep(0.3)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # as Ctrl-C does
        thread = threading.Thread(target=interrupt, daemon=True)
        thread.start()
        with pytest.raises(KeyboardInterrupt):
            cancel_on_interrupt(client, run_id)
        thread.join(10)
        run = client.get_run(run_id)
        assert run["state"]["result_state"] == "CANCELED", run["state"]

    def test_export_run(self, client, root):
        job_id = client.create_job(condition_job(unique("export")), base_dir=root)
        run = client.run_now(job_id)
        with pytest.raises(InvalidParameterValue, match="has no notebook task to export"):
            client.export_run(run["run_id"])
        with pytest.raises(InvalidParameterValue, match="only notebook task runs can be exported"):
            client.export_run(by_key(run)["emit"]["run_id"])
        with pytest.raises(InvalidParameterValue, match="views_to_export"):
            client.export_run(run["run_id"], "PICTURES")

    # -- errors -----------------------------------------------------------------------------------------------
    def test_run_notifications(self, client, root):
        run = client.run_now(client.create_job(condition_job(unique("quiet")), base_dir=root))
        assert client.run_notifications(run["run_id"]) == []  # the job asks for none
        with pytest.raises(ResourceDoesNotExist, match="Run 987654 does not exist."):
            client.run_notifications(987654)

    def test_errors_name_the_resource_or_the_field(self, client, root):
        with pytest.raises(ResourceDoesNotExist, match="Job 987654 does not exist."):
            client.get_job(987654)
        with pytest.raises(ResourceDoesNotExist):
            client.run_now(987654)
        with pytest.raises(ResourceDoesNotExist, match="Run 987654 does not exist."):
            client.get_run(987654)
        with pytest.raises(ResourceDoesNotExist):
            client.cancel_run(987654)
        with pytest.raises(ResourceDoesNotExist):
            client.delete_job(987654)
        job_id = client.create_job(condition_job(unique("errors")), base_dir=root)
        with pytest.raises(InvalidParameterValue, match=r"job_parameters: .*no parameter named 'nope'"):
            client.run_now(job_id, {"nope": "1"})
        with pytest.raises(InvalidParameterValue, match="idempotency_token"):
            client.run_now(job_id, idempotency_token="x" * 65)
        with pytest.raises(InvalidParameterValue, match="active_only and completed_only"):
            client.list_runs(active_only=True, completed_only=True)
        with pytest.raises(InvalidParameterValue, match="cancel_all_runs|job_id"):
            client.cancel_all_runs()
        with pytest.raises(JobDefinitionError) as info:
            client.create_job({"name": "bad", "tasks": []})
        assert info.value.problems[0].path == "tasks"
        with pytest.raises(JobDefinitionError) as info:
            client.update_job(job_id, {"tasks": [{"task_key": "x", "depends_on": [{"task_key": "ghost"}],
                                                  "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}]})
        assert "ghost" in str(info.value)
        run = client.run_now(job_id)
        with pytest.raises(InvalidParameterValue, match="Retrieving the output of runs with multiple tasks"):
            client.get_run_output(run["run_id"])


@pytest.mark.kernels
class TestWorkspace(ContractSuite):
    """The in-process implementation: runs execute in this process."""

    @pytest.fixture
    def client(self, tmp_path):
        ws = Workspace(tmp_path / "home")
        yield ws
        ws.close()

    @pytest.mark.kernels
    def test_wait_relays_every_kind_of_the_bus_for_a_run_executing_here(self, client, root, tmp_path):
        job_id = client.create_job({"name": "retried", "tasks": [
            {"task_key": "b", "max_retries": 1, "min_retry_interval_millis": 0,
             "spark_python_task": {"python_file": "flaky.py", "parameters": [str(tmp_path / "never")]}}]},
            base_dir=root)
        run_id = client.run_now(job_id, wait=False)["run_id"]
        events = []
        run = client.wait(run_id, on_event=events.append)
        assert run["state"]["result_state"] == "FAILED"
        seen = [(e.kind, e.task_key) for e in events]
        assert ("task_retry", "b") in seen  # only the bus has it (runs/get shows no retry event)
        assert [k for k, _ in seen].count("task_start") == 2 and seen[-1] == ("run_end", None)


@pytest.fixture(scope="module")
def served(tmp_path_factory, root):
    """A real `nbjobs serve` on 127.0.0.1 (a subprocess), once for the module: (url, home)."""
    home = tmp_path_factory.mktemp("served-home")
    env = {k: v for k, v in os.environ.items() if k not in ("NBJOBS_TOKEN", "NBJOBS_HOST")}
    proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "--home", str(home), "serve", "--port", "0",
                             "--root", str(root), "--token", TOKEN], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=str(ROOT))
    try:
        line = proc.stdout.readline()
        assert "nbjobs server: " in line, line + proc.stdout.read()
        url = line.split("nbjobs server: ")[1].strip()
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
        yield url, home
    finally:
        stop_process(proc, signal.SIGINT, 30)


@pytest.mark.server
class TestServer(ContractSuite):
    """The HTTP client of a real server: runs execute in the server process."""

    @pytest.fixture
    def client(self, served):
        client = nbjobs.connect(served[0], TOKEN)
        yield client
        client.close()

    @pytest.mark.server
    def test_a_workspace_follows_a_run_executing_in_another_process(self, client, served, root):
        job_id = client.create_job(condition_job(unique("elsewhere")), base_dir=root)
        run_id = client.run_now(job_id, wait=False)["run_id"]
        events = []
        with Workspace(served[1]) as ws:  # the server's folder, opened here: the run executes there
            run = ws.wait(run_id, on_event=events.append)
        assert run["state"]["result_state"] == "SUCCESS"
        seen = [(e.kind, e.task_key) for e in events]
        assert ("task_end", "emit") in seen and seen[-1] == ("run_end", None)


@pytest.mark.pure
def test_both_implementations_have_the_contract_signatures():
    """Every verb: the same parameters (names, kinds, defaults, in order) as the Protocol's."""
    def shape(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]
    for verb in CONTRACT_VERBS:
        expected = shape(getattr(JobsClient, verb))
        assert shape(getattr(Workspace, verb)) == expected, verb
        assert shape(getattr(Client, verb)) == expected, verb
    assert isinstance(Workspace.location, property) and isinstance(Client.location, property)
