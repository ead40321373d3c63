"""The messages each destination type receives, built from one `MessageContext` (pure).

- webhook: Databricks' notification JSON (`event_type` "jobs.on_failure", `run.run_id`, `job.job_id`,
  `job.name`; see the Databricks "notification destinations" page) plus `result_state` and `run_page_url`;
- slack: an incoming-webhook body `{"text": ...}` (Slack "Sending messages using incoming webhooks");
- teams: a MessageCard `{"@type": "MessageCard", "summary", "title", "text"}` (Microsoft "Create and send
  messages" with incoming webhooks);
- pagerduty: a PagerDuty Events API v2 `trigger` event (`routing_key`, `event_action`, `dedup_key`,
  `payload.summary/source/severity`);
- email: a subject and a short plain-text body.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage

_EVENT_WORDS = {
    "on_start": "started",
    "on_success": "succeeded",
    "on_failure": "failed",
    "on_duration_warning_threshold_exceeded": "is running longer than its health rule allows",
    "test": "test message",
}


@dataclass
class MessageContext:
    event: str                      # on_start, on_success, on_failure, on_duration_warning_threshold_exceeded, test
    run_id: int
    job_id: int | None = None
    job_name: str = ""
    task_key: str | None = None
    life_cycle_state: str | None = None
    result_state: str | None = None
    message: str = ""
    run_page_url: str = ""
    failed_tasks: list[tuple[str, str]] = field(default_factory=list)  # (task_key, first error line)
    parent_run_id: int | None = None
    attempt_number: int = 0

    @property
    def what(self) -> str:
        name = self.job_name or (f"job {self.job_id}" if self.job_id else "one-time run")
        return f"{name} · task {self.task_key}" if self.task_key else name

    @property
    def headline(self) -> str:
        if self.event == "test":
            return "nbjobs: test notification"
        state = f" ({self.result_state})" if self.result_state and self.event in ("on_success", "on_failure") else ""
        return f"{self.what}: run {self.run_id} {_EVENT_WORDS.get(self.event, self.event)}{state}"

    def body_lines(self) -> list[str]:
        if self.event == "test":
            return ["This is a test message from nbjobs (`nbjobs destinations test`)."]
        lines = [f"Job: {self.job_name or '-'}" + (f" (job_id {self.job_id})" if self.job_id else ""),
                 f"Run: {self.run_id}"]
        if self.task_key:
            attempt = f" (attempt {self.attempt_number})" if self.attempt_number else ""
            lines.append(f"Task: {self.task_key}{attempt}")
        lines.append(f"Event: {self.event}")
        state = self.result_state or self.life_cycle_state
        if state:
            lines.append(f"Result: {state}")
        if self.message:
            lines.append(f"Message: {self.message}")
        if self.failed_tasks:
            lines.append("Failed tasks:")
            lines += [f"  {key}: {error}" if error else f"  {key}" for key, error in self.failed_tasks]
        if self.run_page_url:
            lines.append(f"Run page: {self.run_page_url}")
        return lines


def webhook_body(ctx: MessageContext) -> dict:
    """The generic webhook's JSON, in Databricks' shape."""
    body = {
        "event_type": "jobs.test" if ctx.event == "test" else f"jobs.{ctx.event}",
        "run": {"run_id": ctx.run_id, "parent_run_id": ctx.parent_run_id,
                "result_state": ctx.result_state, "life_cycle_state": ctx.life_cycle_state,
                "run_page_url": ctx.run_page_url},
        "job": {"job_id": ctx.job_id, "name": ctx.job_name},
        "result_state": ctx.result_state,
        "run_page_url": ctx.run_page_url,
        "message": ctx.message,
    }
    if ctx.task_key:
        body["task"] = {"task_key": ctx.task_key, "attempt_number": ctx.attempt_number}
    if ctx.failed_tasks:
        body["failed_tasks"] = [{"task_key": k, "error": e} for k, e in ctx.failed_tasks]
    return body


def slack_body(ctx: MessageContext) -> dict:
    link = f"\n<{ctx.run_page_url}|Run page>" if ctx.run_page_url else ""
    return {"text": f"*{ctx.headline}*\n" + "\n".join(ctx.body_lines()[2:]) + link}


def teams_body(ctx: MessageContext) -> dict:
    color = {"on_failure": "D70000", "on_success": "2EB886", "on_duration_warning_threshold_exceeded": "FFA500"}
    return {"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": ctx.headline,
            "themeColor": color.get(ctx.event, "0076D7"), "title": ctx.headline,
            "text": "<br>".join(ctx.body_lines())}


def pagerduty_body(ctx: MessageContext, routing_key: str) -> dict:
    severity = {"on_failure": "error", "on_duration_warning_threshold_exceeded": "warning"}.get(ctx.event, "info")
    body = {"routing_key": routing_key, "event_action": "trigger",
            "dedup_key": f"nbjobs-run-{ctx.run_id}-{ctx.task_key or 'run'}-{ctx.event}",
            "payload": {"summary": ctx.headline[:1024], "source": "nbjobs", "severity": severity,
                        "custom_details": {"run_id": ctx.run_id, "job_id": ctx.job_id, "job_name": ctx.job_name,
                                           "task_key": ctx.task_key, "result_state": ctx.result_state,
                                           "failed_tasks": dict(ctx.failed_tasks)}}}
    if ctx.run_page_url:
        body["links"] = [{"href": ctx.run_page_url, "text": "Run page"}]
    return body


def email_message(ctx: MessageContext, sender: str, recipients: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = ctx.headline
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content("\n".join(ctx.body_lines()) + "\n")
    return msg


def first_line(text: str | None) -> str:
    """The first non-empty line of an error (a message's detail stays in the run)."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""
