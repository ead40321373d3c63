"""Notifications end to end: a real HTTP receiver and a real SMTP server (aiosmtpd) on 127.0.0.1, runs
executed by a Workspace (or the REST server), every delivery recorded with the run."""
from __future__ import annotations

import email
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from nbjobs.notify.notifier import notifier_for
from nbjobs.service import Workspace

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]

COND = {"condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}


# -- receivers ---------------------------------------------------------------------------------------

class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST; `answers[path]` lists the statuses to give
    first (then 200), `delays[path]` how long to wait before answering."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, float]] = []
        self.answers: dict[str, list[int]] = {}
        self.delays: dict[str, float] = {}
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                path = self.path.split("?")[0]
                time.sleep(owner.delays.get(path, 0))
                statuses = owner.answers.get(path) or []
                status = statuses.pop(0) if statuses else 200
                owner.requests.append((path, body, time.time()))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self, path: str) -> list[dict]:
        return [body for p, body, _ in self.requests if p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.Message]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def smtp():
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield sink, controller.port
    controller.stop()


CONFIG = """notifications:
  smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none, sender: nbjobs@example.com}}
  destinations:
    job-hook: {{type: webhook, url: "{base}/job?token=SECRET-TOKEN"}}
    task-hook: {{type: webhook, url: "{base}/task"}}
    flaky: {{type: webhook, url: "{base}/flaky"}}
    slow: {{type: webhook, url: "{base}/slow"}}
    dead: {{type: webhook, url: "http://127.0.0.1:{dead}/hook/SECRET-PATH"}}
    slack: {{type: slack, url: "{base}/slack"}}
    teams: {{type: teams, url: "{base}/teams"}}
    pager: {{type: pagerduty, routing_key_env: NBJOBS_TEST_PD_KEY, url: "{base}/pagerduty"}}
    oncall: {{type: email, addresses: [oncall@example.com, second@example.com]}}
  timeout_seconds: 1
  max_attempts: 3
  backoff_seconds: 0.1
"""


@pytest.fixture
def ws(tmp_path, receiver, smtp, monkeypatch):
    monkeypatch.setenv("NBJOBS_TEST_PD_KEY", "PD-ROUTING-KEY")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text(CONFIG.format(smtp_port=smtp[1], base=receiver.base, dead=dead_port()))
    (tmp_path / "fail.py").write_text("print('starting')\nraise ValueError('bad row 7')\n")
    (tmp_path / "sleep.py").write_text("import sys, time\ntime.sleep(float(sys.argv[1]))\n")
    workspace = Workspace(home)
    yield workspace
    workspace.close()


def settle(ws: Workspace) -> list[dict]:
    """Wait for the deliveries of the runs so far; the latest run's deliveries."""
    assert notifier_for(ws.home).drain(60)
    runs = ws.list_runs()
    return ws.run_notifications(runs[0]["run_id"]) if runs else []


def script(tmp_path: Path, name: str, *params: str) -> dict:
    return {"spark_python_task": {"python_file": str(tmp_path / name), "parameters": list(params)}}


def events_of(receiver: Receiver, path: str) -> list[str]:
    return [b["event_type"] for b in receiver.bodies(path)]


# -- each event, exactly once ------------------------------------------------------------------------

def test_job_and_task_level_start_and_success_fire_exactly_once(ws, receiver, smtp):
    hooks = {"on_start": [{"id": "job-hook"}], "on_success": [{"id": "job-hook"}]}
    job = ws.create_job({"name": "nightly", "webhook_notifications": hooks,
                         "email_notifications": {"on_success": ["owner@example.com"]},
                         "tasks": [{"task_key": "a", **COND,
                                    "webhook_notifications": {"on_start": [{"id": "task-hook"}],
                                                              "on_success": [{"id": "task-hook"}]}},
                                   {"task_key": "b", **COND, "depends_on": [{"task_key": "a"}]}]})
    run = ws.run_now(job)
    assert run["state"]["result_state"] == "SUCCESS"
    deliveries = settle(ws)
    assert events_of(receiver, "/job") == ["jobs.on_start", "jobs.on_success"]
    assert events_of(receiver, "/task") == ["jobs.on_start", "jobs.on_success"]
    assert {b["task"]["task_key"] for b in receiver.bodies("/task")} == {"a"}
    body = receiver.bodies("/job")[1]
    assert body["run"]["run_id"] == run["run_id"] and body["job"] == {"job_id": job, "name": "nightly"}
    assert body["result_state"] == "SUCCESS" and body["run_page_url"].startswith("file://")
    sink, _ = smtp
    assert [(to, m["Subject"]) for to, m in sink.messages] == [
        (["owner@example.com"], f"nightly: run {run['run_id']} succeeded (SUCCESS)")]
    assert len(deliveries) == 5 and {d["result"] for d in deliveries} == {"DELIVERED"}
    # a second Workspace of the same folder in this process does not double the messages
    other = Workspace(ws.home)
    try:
        ws.run_now(job)
        settle(ws)
    finally:
        other.close()
    assert events_of(receiver, "/job").count("jobs.on_success") == 2


def test_failure_at_job_and_task_level_with_the_first_error_line(ws, receiver, smtp, tmp_path):
    job = ws.create_job({"name": "etl", "email_notifications": {"on_failure": ["owner@example.com"]},
                         "webhook_notifications": {"on_failure": [{"id": "job-hook"}]},
                         "tasks": [{"task_key": "load", **script(tmp_path, "fail.py"),
                                    "webhook_notifications": {"on_failure": [{"id": "task-hook"}]}}]})
    run = ws.run_now(job)
    assert run["state"]["result_state"] == "FAILED"
    settle(ws)
    assert events_of(receiver, "/job") == ["jobs.on_failure"]
    assert events_of(receiver, "/task") == ["jobs.on_failure"]
    assert receiver.bodies("/job")[0]["failed_tasks"][0]["task_key"] == "load"
    assert "bad row 7" in receiver.bodies("/job")[0]["failed_tasks"][0]["error"]
    (to, message), = smtp[0].messages
    text = message.get_payload(decode=True).decode()
    assert message["Subject"] == f"etl: run {run['run_id']} failed (FAILED)"
    for part in ("Job: etl", f"Run: {run['run_id']}", "Result: FAILED", "load: ", "bad row 7", "Run page: file://"):
        assert part in text, text


@pytest.mark.parametrize("last_attempt, starts, failures", [(False, 2, 2), (True, 1, 1)])
def test_retries_notify_each_attempt_unless_alert_on_last_attempt(ws, receiver, tmp_path, last_attempt, starts,
                                                                  failures):
    task = {"task_key": "flaky", **script(tmp_path, "fail.py"), "max_retries": 1,
            "webhook_notifications": {"on_start": [{"id": "task-hook"}], "on_failure": [{"id": "task-hook"}]}}
    if last_attempt:
        task["notification_settings"] = {"alert_on_last_attempt": True}
    run = ws.run_now(ws.create_job({"name": "r", "tasks": [task]}))
    assert run["state"]["result_state"] == "FAILED"
    settle(ws)
    kinds = events_of(receiver, "/task")
    assert kinds.count("jobs.on_start") == starts and kinds.count("jobs.on_failure") == failures


def test_the_duration_warning_fires_once_while_the_run_is_still_going(ws, receiver, tmp_path):
    job = ws.create_job({"name": "long", "health": {"rules": [
        {"metric": "RUN_DURATION_SECONDS", "op": "GREATER_THAN", "value": 1}]},
        "webhook_notifications": {"on_duration_warning_threshold_exceeded": [{"id": "job-hook"}]},
        "tasks": [{"task_key": "sleep", **script(tmp_path, "sleep.py", "4"),
                   "health": {"rules": [{"metric": "RUN_DURATION_SECONDS", "op": "GREATER_THAN", "value": 1}]},
                   "webhook_notifications": {"on_duration_warning_threshold_exceeded": [{"id": "task-hook"}]}}]})
    run = ws.run_now(job)
    assert run["state"]["result_state"] == "SUCCESS"
    settle(ws)
    ended = run["end_time"] / 1000
    for path in ("/job", "/task"):
        (_, body, received), = [r for r in receiver.requests if r[0] == path]
        assert body["event_type"] == "jobs.on_duration_warning_threshold_exceeded"
        assert received < ended, "the warning arrived after the run ended"
    assert receiver.bodies("/task")[0]["task"]["task_key"] == "sleep"


# -- suppression ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("suppress", [False, True])
def test_canceled_runs_and_no_alert_for_canceled_runs(ws, receiver, tmp_path, suppress):
    settings = {"name": "c", "webhook_notifications": {"on_failure": [{"id": "job-hook"}]},
                "tasks": [{"task_key": "sleep", **script(tmp_path, "sleep.py", "30"),
                           "webhook_notifications": {"on_failure": [{"id": "task-hook"}]}}]}
    if suppress:
        settings["notification_settings"] = {"no_alert_for_canceled_runs": True}
        settings["tasks"][0]["notification_settings"] = {"no_alert_for_canceled_runs": True}
    run_id = ws.run_now(ws.create_job(settings), wait=False)["run_id"]
    deadline = time.time() + 60
    while ws.get_run(run_id)["state"]["life_cycle_state"] != "RUNNING" and time.time() < deadline:
        time.sleep(0.1)
    ws.cancel_run(run_id)
    assert ws.wait(run_id, timeout=60)["state"]["result_state"] == "CANCELED"
    settle(ws)
    expected = [] if suppress else ["jobs.on_failure"]
    assert events_of(receiver, "/job") == expected and events_of(receiver, "/task") == expected


@pytest.mark.parametrize("flags, hooks, emails", [
    ({}, 1, 1),
    ({"notification_settings": {"no_alert_for_skipped_runs": True}}, 0, 0),
    ({"email_notifications_flag": True}, 1, 0),   # the deprecated email setting: emails only
])
def test_skipped_runs_and_no_alert_for_skipped_runs(ws, receiver, smtp, tmp_path, flags, hooks, emails):
    settings = {"name": "s", "max_concurrent_runs": 1, "queue": {"enabled": False},
                "webhook_notifications": {"on_failure": [{"id": "job-hook"}]},
                "email_notifications": {"on_failure": ["owner@example.com"]},
                "tasks": [{"task_key": "sleep", **script(tmp_path, "sleep.py", "3")}]}
    if flags.pop("email_notifications_flag", False):
        settings["email_notifications"]["no_alert_for_skipped_runs"] = True
    settings.update(flags)
    job = ws.create_job(settings)
    first = ws.run_now(job, wait=False)["run_id"]
    second = ws.run_now(job, wait=False)["run_id"]
    assert ws.wait(second, timeout=60)["state"]["life_cycle_state"] == "SKIPPED"
    assert ws.wait(first, timeout=60)["state"]["result_state"] == "SUCCESS"
    settle(ws)
    assert events_of(receiver, "/job") == ["jobs.on_failure"] * hooks
    assert len(smtp[0].messages) == emails
    if hooks:
        assert receiver.bodies("/job")[0]["run"]["run_id"] == second


@pytest.mark.parametrize("suppress", [False, True])
def test_a_task_skipped_after_an_upstream_failure(ws, receiver, tmp_path, suppress):
    down = {"task_key": "down", **COND, "depends_on": [{"task_key": "up"}],
            "webhook_notifications": {"on_failure": [{"id": "task-hook"}]}}
    if suppress:
        down["notification_settings"] = {"no_alert_for_skipped_runs": True}
    run = ws.run_now(ws.create_job({"name": "u", "tasks": [{"task_key": "up", **script(tmp_path, "fail.py")},
                                                             down]}))
    assert {t["task_key"]: t["state"]["result_state"] for t in run["tasks"]}["down"] == "UPSTREAM_FAILED"
    settle(ws)
    assert events_of(receiver, "/task") == ([] if suppress else ["jobs.on_failure"])


# -- delivery -------------------------------------------------------------------------------------------

def test_a_run_whose_process_died_notifies_its_failure_once_when_it_is_recovered(ws, receiver):
    job = {"name": "crashed", "webhook_notifications": {"on_failure": [{"id": "job-hook"}]},
           "tasks": [{"task_key": "t", **COND, "webhook_notifications": {"on_failure": [{"id": "task-hook"}]}}]}
    code = ("import json, os, sys\nfrom nbjobs.service import Workspace\n"
            "ws = Workspace(sys.argv[1])\nrun_id = ws.start_run(ws.create_job(json.loads(sys.argv[2])))\n"
            "ws.store.update_run(run_id, life_cycle_state='RUNNING')\n"
            "ws.store.update_task_run(ws.store.task_runs(run_id)[0]['task_run_id'], life_cycle_state='RUNNING')\n"
            "print(run_id, flush=True)\nos._exit(0)\n")  # ends like a crash: the run is left RUNNING
    out = subprocess.run([sys.executable, "-c", code, str(ws.home), json.dumps(job)], check=True,
                         capture_output=True, text=True).stdout
    run_id = int(out.split()[-1])
    run = ws.wait(run_id, timeout=30)  # finds the run's process gone: ends it INTERNAL_ERROR
    assert run["state"]["life_cycle_state"] == "INTERNAL_ERROR"
    deliveries = settle(ws)
    assert events_of(receiver, "/job") == ["jobs.on_failure"]
    assert events_of(receiver, "/task") == ["jobs.on_failure"]
    assert "ended before the run finished" in receiver.bodies("/job")[0]["failed_tasks"][0]["error"]
    assert {d["result"] for d in deliveries} == {"DELIVERED"} and len(deliveries) == 2
    Workspace(ws.home).close()  # opening the folder again recovers nothing more, sends nothing more
    settle(ws)
    assert events_of(receiver, "/job") == ["jobs.on_failure"]


def test_a_500_is_retried_with_backoff(ws, receiver):
    receiver.answers["/flaky"] = [500, 503]
    run = ws.run_now(ws.create_job({"name": "f", "webhook_notifications": {"on_success": [{"id": "flaky"}]},
                                    "tasks": [{"task_key": "a", **COND}]}))
    (delivery,) = settle(ws)
    assert delivery["result"] == "DELIVERED" and delivery["attempts"] == 3
    assert run["state"]["result_state"] == "SUCCESS"
    times = [t for p, _, t in receiver.requests if p == "/flaky"]
    assert len(times) == 3 and times[1] - times[0] >= 0.1 and times[2] - times[1] >= 0.2  # backoff doubles


def test_a_dead_or_slow_destination_leaves_the_run_untouched(ws, receiver):
    receiver.delays["/slow"] = 3  # longer than timeout_seconds (1)
    hooks = {e: [{"id": "dead"}, {"id": "slow"}] for e in ("on_start", "on_success")}
    job = ws.create_job({"name": "d", "webhook_notifications": hooks, "tasks": [{"task_key": "a", **COND}]})
    started = time.monotonic()
    run = ws.run_now(job)
    took = time.monotonic() - started
    assert run["state"]["result_state"] == "SUCCESS"
    assert took < 1.0, f"the run took {took:.2f}s: delivery delayed it"
    assert run["end_time"] - run["start_time"] < 1000
    deliveries = settle(ws)
    assert {(d["destination"], d["result"]) for d in deliveries} == {("dead", "FAILED"), ("slow", "FAILED")}
    dead = next(d for d in deliveries if d["destination"] == "dead")
    assert dead["attempts"] == 3 and "cannot reach http://127.0.0.1:" in dead["error"]
    assert "SECRET" not in json.dumps(deliveries) and "SECRET" not in json.dumps(ws.get_run(run["run_id"]))
    assert ws.get_run(run["run_id"])["state"]["result_state"] == "SUCCESS"


def test_an_email_destination_sends_one_message_to_its_addresses(ws, receiver, smtp):
    run = ws.run_now(ws.create_job({"name": "shapes", "webhook_notifications": {"on_success": [
        {"id": "oncall"}, {"id": "job-hook"}]}, "tasks": [{"task_key": "a", **COND}]}))
    deliveries = settle(ws)
    assert [(d["destination"], d["destination_type"], d["result"]) for d in deliveries] == [
        ("oncall", "email", "DELIVERED"), ("job-hook", "webhook", "DELIVERED")]
    (to, message), = smtp[0].messages
    assert to == ["oncall@example.com", "second@example.com"]
    assert message["From"] == "nbjobs@example.com"
    assert message["Subject"] == f"shapes: run {run['run_id']} succeeded (SUCCESS)"
    assert receiver.bodies("/job")[0]["event_type"] == "jobs.on_success"


def test_slack_teams_and_pagerduty_bodies_of_a_failed_run(ws, receiver, tmp_path):
    hooks = {"on_failure": [{"id": "slack"}, {"id": "teams"}, {"id": "pager"}]}
    run = ws.run_now(ws.create_job({"name": "shapes", "webhook_notifications": hooks,
                                    "tasks": [{"task_key": "load", **script(tmp_path, "fail.py")}]}))
    deliveries = settle(ws)
    assert {d["destination_type"] for d in deliveries} == {"slack", "teams", "pagerduty"}
    assert {d["result"] for d in deliveries} == {"DELIVERED"}
    (slack,) = receiver.bodies("/slack")
    assert set(slack) == {"text"} and f"run {run['run_id']} failed" in slack["text"] and "bad row 7" in slack["text"]
    (teams,) = receiver.bodies("/teams")
    assert teams["@type"] == "MessageCard" and teams["themeColor"] == "D70000" and "bad row 7" in teams["text"]
    (pager,) = receiver.bodies("/pagerduty")
    assert pager["routing_key"] == "PD-ROUTING-KEY" and pager["event_action"] == "trigger"
    assert pager["payload"]["severity"] == "error" and pager["payload"]["custom_details"]["job_name"] == "shapes"
    assert "PD-ROUTING-KEY" not in json.dumps(deliveries)


def test_an_unset_routing_key_or_missing_smtp_is_a_recorded_failure(ws, receiver, monkeypatch):
    monkeypatch.delenv("NBJOBS_TEST_PD_KEY")
    run = ws.run_now(ws.create_job({"name": "k", "webhook_notifications": {"on_success": [{"id": "pager"}]},
                                    "tasks": [{"task_key": "a", **COND}]}))
    (delivery,) = settle(ws)
    assert run["state"]["result_state"] == "SUCCESS"
    assert delivery["result"] == "FAILED" and delivery["attempts"] == 1
    assert delivery["error"] == "the routing key variable $NBJOBS_TEST_PD_KEY is not set"


# -- clients ---------------------------------------------------------------------------------------------

def test_cli_destinations_and_run_notifications(ws, receiver, capsys):
    from nbjobs.cli import main
    home = str(ws.home)
    assert main(["--home", home, "destinations", "list"]) == 0
    listed = capsys.readouterr().out
    assert "job-hook" in listed and "SECRET" not in listed and "SMTP: 127.0.0.1:" in listed
    assert main(["--home", home, "destinations", "test", "job-hook"]) == 0
    assert "job-hook: delivered (HTTP 200 from http://127.0.0.1:" in capsys.readouterr().out
    assert receiver.bodies("/job")[0]["event_type"] == "jobs.test"
    assert main(["--home", home, "destinations", "test", "dead"]) == 1
    err = capsys.readouterr().err
    assert "dead: not delivered after 3 attempts: cannot reach" in err and "SECRET" not in err
    assert main(["--home", home, "destinations", "test", "nope"]) == 2
    assert "known ids: dead, flaky, job-hook, oncall, pager, slack, slow, task-hook, teams" in capsys.readouterr().err
    run = ws.run_now(ws.create_job({"name": "n", "webhook_notifications": {"on_success": [{"id": "job-hook"}]},
                                    "tasks": [{"task_key": "a", **COND}]}))
    settle(ws)
    assert main(["--home", home, "runs", "notifications", str(run["run_id"])]) == 0
    line = capsys.readouterr().out
    assert "on_success" in line and "job-hook [webhook]  DELIVERED, 1 attempt" in line


def test_a_run_started_over_rest_notifies_once_and_lists_its_deliveries(ws, receiver, tmp_path):
    from nbjobs.client import connect
    from nbjobs.server.app import ServerThread

    server = ServerThread(workspace=ws, root=tmp_path, services=False)
    try:
        client = connect(server.url, server.token)
        job = client.create_job({"name": "rest", "webhook_notifications": {"on_success": [{"id": "job-hook"}]},
                                 "tasks": [{"task_key": "a", **COND}]})
        run = client.run_now(job)
        settle(ws)
        deliveries = client.run_notifications(run["run_id"])
        client.close()
    finally:
        server.stop()
    assert [d["result"] for d in deliveries] == ["DELIVERED"]
    assert events_of(receiver, "/job") == ["jobs.on_success"]


def test_an_unknown_destination_id_is_refused_when_the_job_is_created(ws):
    from nbjobs.errors import JobDefinitionError
    with pytest.raises(JobDefinitionError) as err:
        ws.create_job({"name": "x", "webhook_notifications": {"on_start": [{"id": "nope"}]},
                       "tasks": [{"task_key": "a", **COND}]})
    assert "'nope' is not a notification destination of this workspace; known ids: dead, flaky" in str(err.value)


def test_the_panel_shows_the_deliveries(ws, receiver):
    from nbjobs.ui.notifications import RunNotifications
    run = ws.run_now(ws.create_job({"name": "p", "webhook_notifications": {"on_success": [{"id": "dead"}]},
                                    "tasks": [{"task_key": "a", **COND}]}))
    settle(ws)
    widget = RunNotifications(ws.run_notifications)
    widget.show(run)
    assert "on_success" in widget.value and 'data-result="FAILED"' in widget.value and "SECRET" not in widget.value


def test_smtp_login_takes_the_password_from_the_environment_and_never_shows_it(tmp_path, monkeypatch):
    from aiosmtpd.smtp import AuthResult

    from nbjobs.notify.config import load_notifications_config
    from nbjobs.notify.messages import MessageContext
    from nbjobs.notify.send import deliver

    def authenticator(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=auth_data.login == b"nbjobs" and auth_data.password == b"s3cret-pw")

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                            auth_require_tls=False)
    controller.start()
    try:
        (tmp_path / "config.yml").write_text(
            f"notifications:\n  smtp: {{host: 127.0.0.1, port: {controller.port}, tls: none, sender: n@example.com, "
            "user: nbjobs, password_env: NBJOBS_TEST_SMTP_PW}\n"
            "  destinations: {oncall: {type: email, addresses: [oncall@example.com]}}\n  max_attempts: 1\n"
            "  timeout_seconds: 2\n")
        config = load_notifications_config(tmp_path)
        ctx = MessageContext(event="on_failure", run_id=1, job_name="j", result_state="FAILED")
        monkeypatch.setenv("NBJOBS_TEST_SMTP_PW", "s3cret-pw")
        assert deliver(config.destinations["oncall"], ctx, config).result == "DELIVERED"
        assert len(sink.messages) == 1
        monkeypatch.setenv("NBJOBS_TEST_SMTP_PW", "wrong-pw")
        refused = deliver(config.destinations["oncall"], ctx, config)
        assert refused.result == "FAILED" and "wrong-pw" not in refused.error and "s3cret" not in refused.error
        monkeypatch.delenv("NBJOBS_TEST_SMTP_PW")
        unset = deliver(config.destinations["oncall"], ctx, config)
        assert unset.error == f"SMTP server 127.0.0.1:{controller.port}: the password variable " \
                              "$NBJOBS_TEST_SMTP_PW is not set"
    finally:
        controller.stop()
