"""Which notifications an event sends (nbjobs.notify.rules): table-driven over events and settings."""
from __future__ import annotations

import pytest

from nbjobs.notify.config import ConfigError, load_notifications_config, redact
from nbjobs.notify.messages import MessageContext, email_message, pagerduty_body, slack_body, teams_body, webhook_body
from nbjobs.notify.notifier import has_notifications
from nbjobs.notify.rules import Notice, notices_for

pytestmark = pytest.mark.pure

ALL = {e: ["a@x.io"] for e in ("on_start", "on_success", "on_failure", "on_duration_warning_threshold_exceeded")}
HOOKS = {e: [{"id": "hook"}] for e in ALL}


def job(notify=None, emails=ALL, task_notify=None, task_emails=None):
    task = {"task_key": "t", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}
    if task_emails is not None:
        task["email_notifications"] = task_emails
    if task_notify is not None:
        task["notification_settings"] = task_notify
    out = {"name": "j", "email_notifications": dict(emails), "webhook_notifications": HOOKS, "tasks": [task]}
    if notify is not None:
        out["notification_settings"] = notify
    return out


def events(job_settings, kind, **kw):
    return sorted({(n.event, n.channel) for n in notices_for(kind, job_settings, **kw)})


BOTH = lambda e: [(e, "email"), (e, "webhook")]  # noqa: E731

JOB_CASES = [
    # (bus event, its fields, settings, expected (event, channel) pairs)
    ("run_start", {}, {}, BOTH("on_start")),
    ("run_end", {"result_state": "SUCCESS"}, {}, BOTH("on_success")),
    ("run_end", {"result_state": "SUCCESS_WITH_FAILURES"}, {}, BOTH("on_success")),
    ("run_end", {"result_state": "FAILED"}, {}, BOTH("on_failure")),
    ("run_end", {"result_state": "TIMEDOUT"}, {}, BOTH("on_failure")),
    ("run_end", {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED"}, {}, BOTH("on_failure")),
    ("run_end", {"result_state": "CANCELED"}, {}, BOTH("on_failure")),
    ("run_end", {"result_state": "CANCELED"}, {"no_alert_for_canceled_runs": True}, []),
    ("run_end", {"result_state": "CANCELED"}, {"no_alert_for_skipped_runs": True}, BOTH("on_failure")),
    ("run_end", {"life_cycle_state": "SKIPPED", "result_state": "MAXIMUM_CONCURRENT_RUNS_REACHED"}, {},
     BOTH("on_failure")),
    ("run_end", {"life_cycle_state": "SKIPPED", "result_state": "MAXIMUM_CONCURRENT_RUNS_REACHED"},
     {"no_alert_for_skipped_runs": True}, []),
    ("run_end", {"result_state": "FAILED"}, {"no_alert_for_skipped_runs": True, "no_alert_for_canceled_runs": True},
     BOTH("on_failure")),
    ("duration_warning", {}, {}, BOTH("on_duration_warning_threshold_exceeded")),
    ("task_progress", {}, {}, []),
    ("run_queued", {}, {}, []),
]


@pytest.mark.parametrize("kind, fields, notify, expected", JOB_CASES)
def test_job_level_events(kind, fields, notify, expected):
    assert events(job(notify or None), kind, **fields) == expected


def test_the_deprecated_email_setting_drops_only_the_emails_of_skipped_runs():
    settings = job(emails={**ALL, "no_alert_for_skipped_runs": True})
    skipped = {"life_cycle_state": "SKIPPED", "result_state": "MAXIMUM_CONCURRENT_RUNS_REACHED"}
    assert events(settings, "run_end", **skipped) == [("on_failure", "webhook")]
    assert events(settings, "run_end", result_state="FAILED") == BOTH("on_failure")


TASK_CASES = [
    # (bus event, its fields, task notification_settings, expected events of the task)
    ("task_start", {"attempt_number": 0}, {}, ["on_start"]),
    ("task_start", {"attempt_number": 1}, {}, ["on_start"]),
    ("task_start", {"attempt_number": 0}, {"alert_on_last_attempt": True}, ["on_start"]),
    ("task_start", {"attempt_number": 2}, {"alert_on_last_attempt": True}, []),
    ("task_retry", {"result_state": "FAILED", "attempt_number": 1}, {}, ["on_failure"]),
    ("task_retry", {"result_state": "FAILED", "attempt_number": 1}, {"alert_on_last_attempt": True}, []),
    ("task_end", {"result_state": "FAILED", "attempt_number": 2}, {"alert_on_last_attempt": True}, ["on_failure"]),
    ("task_end", {"result_state": "SUCCESS"}, {}, ["on_success"]),
    ("task_end", {"result_state": "TIMEDOUT"}, {}, ["on_failure"]),
    ("task_end", {"result_state": "CANCELED"}, {}, ["on_failure"]),
    ("task_end", {"result_state": "CANCELED"}, {"no_alert_for_canceled_runs": True}, []),
    ("task_end", {"result_state": "UPSTREAM_FAILED", "life_cycle_state": "SKIPPED"}, {}, ["on_failure"]),
    ("task_end", {"result_state": "UPSTREAM_CANCELED", "life_cycle_state": "SKIPPED"},
     {"no_alert_for_skipped_runs": True}, []),
    ("task_end", {"result_state": "EXCLUDED", "life_cycle_state": "SKIPPED"}, {}, []),
    ("task_end", {"result_state": "DISABLED", "life_cycle_state": "SKIPPED"}, {}, []),
    ("duration_warning", {}, {}, ["on_duration_warning_threshold_exceeded"]),
]


@pytest.mark.parametrize("kind, fields, notify, expected", TASK_CASES)
def test_task_level_events(kind, fields, notify, expected):
    settings = job(emails={}, task_emails=ALL, task_notify=notify)
    settings["webhook_notifications"] = {}
    got = notices_for(kind, settings, task_key="t", **fields)
    assert [n.event for n in got] == expected
    assert all(n == Notice(n.event, "email", "a@x.io", "t") for n in got)


def test_job_settings_do_not_apply_to_task_events_nor_task_settings_to_run_events():
    settings = job(task_emails={"on_success": ["t@x.io"]})
    assert [n.target for n in notices_for("task_end", settings, task_key="t", result_state="SUCCESS")] == ["t@x.io"]
    assert {n.target for n in notices_for("run_end", settings, result_state="SUCCESS")} == {"a@x.io", "hook"}
    assert notices_for("task_end", settings, task_key="missing", result_state="SUCCESS") == []


def test_a_recipient_named_twice_gets_one_message():
    settings = {"email_notifications": {"on_start": ["a@x.io", "a@x.io"]},
                "webhook_notifications": {"on_start": [{"id": "h"}, {"id": "h"}]}, "tasks": []}
    assert len(notices_for("run_start", settings)) == 2


def test_has_notifications_looks_at_the_job_and_its_tasks():
    assert not has_notifications({"tasks": [{"task_key": "a"}], "email_notifications": {"on_start": []}})
    assert has_notifications({"tasks": [{"task_key": "a", "webhook_notifications": {"on_failure": [{"id": "h"}]}}]})
    assert not has_notifications({"email_notifications": {"no_alert_for_skipped_runs": True}, "tasks": []})


# -- messages ------------------------------------------------------------------------------------

CTX = MessageContext(event="on_failure", run_id=7, job_id=3, job_name="nightly", result_state="FAILED",
                     life_cycle_state="TERMINATED", message="Task load did not succeed",
                     run_page_url="file:///w/runs/7", failed_tasks=[("load", "ValueError: bad row")])


def test_the_generic_webhook_has_databricks_shape():
    body = webhook_body(CTX)
    assert body["event_type"] == "jobs.on_failure"
    assert body["run"]["run_id"] == 7 and body["job"] == {"job_id": 3, "name": "nightly"}
    assert body["result_state"] == "FAILED" and body["run_page_url"] == "file:///w/runs/7"
    assert body["failed_tasks"] == [{"task_key": "load", "error": "ValueError: bad row"}]


def test_slack_teams_pagerduty_and_email_bodies():
    assert "nightly" in slack_body(CTX)["text"] and "ValueError: bad row" in slack_body(CTX)["text"]
    teams = teams_body(CTX)
    assert teams["@type"] == "MessageCard" and "run 7 failed" in teams["title"]
    pd = pagerduty_body(CTX, "KEY")
    assert pd["routing_key"] == "KEY" and pd["event_action"] == "trigger"
    assert pd["payload"]["severity"] == "error" and pd["payload"]["source"] == "nbjobs"
    msg = email_message(CTX, "nbjobs@x.io", ["a@x.io"])
    assert msg["Subject"] == "nightly: run 7 failed (FAILED)"
    text = msg.get_content()
    for part in ("Job: nightly (job_id 3)", "Run: 7", "Result: FAILED", "load: ValueError: bad row",
                 "Run page: file:///w/runs/7"):
        assert part in text


# -- config --------------------------------------------------------------------------------------

def write(tmp_path, text):
    (tmp_path / "config.yml").write_text(text)
    return tmp_path


def test_the_documented_config_loads(tmp_path):
    config = load_notifications_config(write(tmp_path, """
notifications:
  smtp: {host: 127.0.0.1, port: 1025, tls: none, sender: nbjobs@example.com, user: null, password_env: SMTP_PASSWORD}
  destinations:
    ops-hook: {type: webhook, url: "http://127.0.0.1:9000/hook"}
    team-slack: {type: slack, url: "https://hooks.slack.com/services/T000/B000/XXXX"}
    team-teams: {type: teams, url: "https://example.webhook.office.com/webhookb2/abc"}
    pager: {type: pagerduty, routing_key_env: PD_KEY}
    oncall: {type: email, addresses: [oncall@example.com]}
"""))
    assert sorted(config.destinations) == ["oncall", "ops-hook", "pager", "team-slack", "team-teams"]
    assert config.smtp.port == 1025 and config.smtp.password_env == "SMTP_PASSWORD"
    assert config.destinations["team-slack"].describe() == "https://hooks.slack.com/…"


@pytest.mark.parametrize("text, words", [
    ("notifications: {destinations: {h: {type: webhook, url: 'ftp://x/y'}}}", "http:// or https://"),
    ("notifications: {destinations: {h: {type: fax, url: 'http://x'}}}", "webhook, slack, teams"),
    ("notifications: {destinations: {h: {type: webhook}}}", "url is required"),
    ("notifications: {destinations: {h: {type: pagerduty, routing_key: abc}}}", "unknown key(s) ['routing_key']"),
    ("notifications: {smtp: {sender: a@b, tls: tls}}", "none, starttls, ssl"),
    ("notifications: {smtp: {sender: a@b, password: hunter2}}", "password_env"),
    ("notifications: {destinations: {h: {type: email, addresses: []}}}", "list of email addresses"),
    ("notifications: {max_attempts: 0}", "notifications.max_attempts"),
])
def test_bad_config_names_the_field(tmp_path, text, words):
    with pytest.raises(ConfigError) as err:
        load_notifications_config(write(tmp_path, text))
    assert words in str(err.value)
    assert "hunter2" not in str(err.value)


def test_a_bad_url_is_shown_redacted(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_notifications_config(write(tmp_path, "notifications: {destinations: {h: {type: slack, "
                                                  "url: 'file://host/services/SECRET'}}}"))
    assert "SECRET" not in str(err.value)


def test_redact_keeps_scheme_host_and_port_only():
    assert redact("https://hooks.slack.com/services/T/B/SECRET?x=1") == "https://hooks.slack.com/…"
    assert redact("http://127.0.0.1:9000/") == "http://127.0.0.1:9000"
    assert redact("nonsense") == "<invalid url>"


# -- validation of the job's notification fields ---------------------------------------------------

from nbjobs.spec.validate import validate_job_settings  # noqa: E402

COND = {"task_key": "c", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}


def problems(job_fields, task_fields=None, destinations=None):
    data = {"name": "j", **job_fields, "tasks": [{**COND, **(task_fields or {})}]}
    return [str(p) for p in validate_job_settings(data, destinations=destinations)]


def test_an_unknown_destination_id_lists_the_known_ids():
    hooks = {"webhook_notifications": {"on_failure": [{"id": "ops"}, {"id": "nope"}]}}
    assert problems(hooks, destinations=["ops", "pager"]) == [
        "webhook_notifications.on_failure[1].id: 'nope' is not a notification destination of this workspace; "
        "known ids: ops, pager. Fix: use a known id, or add it under notifications.destinations in "
        "<NBJOBS_HOME>/config.yml."]
    assert problems(hooks) == []  # no workspace: ids are not checked
    assert "known ids: none" in problems({}, {"webhook_notifications": {"on_start": [{"id": "x"}]}}, destinations=[])[0]


@pytest.mark.parametrize("job_fields, task_fields, words", [
    ({"email_notifications": {"on_failure": "a@x.io"}}, None, "email_notifications.on_failure: must be a list"),
    ({"email_notifications": {"on_failure": ["nobody"]}}, None, "'nobody' is not an email address"),
    ({"email_notifications": {"on_fail": ["a@x.io"]}}, None, "'on_fail' is not a notification event"),
    ({"webhook_notifications": {"on_start": [{"id": f"h{i}"} for i in range(4)]}}, None, "at most 3 per event"),
    ({"webhook_notifications": {"on_start": ["h"]}}, None, "must be {id: <destination id>}"),
    ({"notification_settings": {"alert_on_last_attempt": True}}, None, "is not a job notification setting"),
    ({}, {"notification_settings": {"no_alert_for_canceled_runs": 1}}, "must be true or false"),
])
def test_bad_notification_fields_name_the_field(job_fields, task_fields, words):
    found = problems(job_fields, task_fields)
    assert len(found) == 1 and words in found[0], found


def test_events_without_local_meaning_are_notes_not_silence():
    from nbjobs.spec.notifications import notification_notes
    data = {"name": "j", "webhook_notifications": {"on_streaming_backlog_exceeded": [{"id": "h"}]},
            "tasks": [{"task_key": "f", "for_each_task": {"inputs": "[1]", "task": {
                **COND, "email_notifications": {"on_failure": ["a@x.io"]}}}}]}
    assert validate_job_settings(data, destinations=["h"]) == []
    notes = [str(n) for n in notification_notes(data)]
    assert notes[0].startswith("webhook_notifications.on_streaming_backlog_exceeded: is never sent")
    assert "iterations send no notifications" in notes[1]
