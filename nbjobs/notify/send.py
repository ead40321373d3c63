"""Sending one message to one destination: timeouts, retries with backoff for transient failures, and
errors that never carry a secret (URLs are redacted, passwords and keys replaced)."""
from __future__ import annotations

import json
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Callable

from .config import PAGERDUTY_EVENTS_URL, Destination, NotificationsConfig, SmtpConfig, redact
from .messages import MessageContext, email_message, pagerduty_body, slack_body, teams_body, webhook_body

__all__ = ["DeliveryError", "Outcome", "deliver", "send_once"]

USER_AGENT = "nbjobs-notifier"


class DeliveryError(Exception):
    """A failed attempt; `transient` ones are retried (connection errors, timeouts, HTTP 408/429/5xx)."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


@dataclass
class Outcome:
    result: str        # DELIVERED or FAILED
    attempts: int
    error: str = ""
    detail: str = ""   # the receiver's answer of the last attempt (e.g. "HTTP 200")


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, redact(secret) if "://" in secret else "***")
    return text


def _post(url: str, body: dict, timeout: float) -> str:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
    shown = redact(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only (config)
            return f"HTTP {response.status} from {shown}"
    except urllib.error.HTTPError as exc:
        transient = exc.code in (408, 429) or exc.code >= 500
        raise DeliveryError(f"HTTP {exc.code} {exc.reason} from {shown}", transient=transient) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"cannot reach {shown}: {reason}", transient=True) from None


def _smtp_send(smtp: SmtpConfig, msg: EmailMessage, timeout: float) -> str:
    where = f"SMTP server {smtp.host}:{smtp.port}"
    try:
        if smtp.tls == "ssl":
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        with client:
            if smtp.tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if smtp.user:
                password = smtp.password()
                if password is None:
                    raise DeliveryError(f"{where}: the password variable ${smtp.password_env} is not set",
                                        transient=False)
                client.login(smtp.user, password)
            refused = client.send_message(msg)
    except DeliveryError:
        raise
    except smtplib.SMTPResponseException as exc:
        transient = 400 <= exc.smtp_code < 500
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"{where} answered {exc.smtp_code} {text}", transient=transient) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"{where} refused every recipient: {', '.join(exc.recipients)}", transient=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"cannot send through {where}: {exc}", transient=True) from None
    if refused:
        return f"sent through {where}; refused: {', '.join(refused)}"
    return f"sent through {where}"


def send_once(destination: Destination, ctx: MessageContext, config: NotificationsConfig) -> str:
    """One attempt; the receiver's answer, or DeliveryError."""
    timeout = config.timeout_seconds
    kind = destination.type
    if kind == "email":
        if config.smtp is None:
            raise DeliveryError("no SMTP server: add notifications.smtp to the workspace config", transient=False)
        return _smtp_send(config.smtp, email_message(ctx, config.smtp.sender, list(destination.addresses)), timeout)
    if kind == "pagerduty":
        import os
        key = os.environ.get(destination.routing_key_env or "")
        if not key:
            raise DeliveryError(f"the routing key variable ${destination.routing_key_env} is not set", transient=False)
        return _post(destination.url or PAGERDUTY_EVENTS_URL, pagerduty_body(ctx, key), timeout)
    body = {"webhook": webhook_body, "slack": slack_body, "teams": teams_body}[kind](ctx)
    return _post(destination.url or "", body, timeout)


def _secrets(destination: Destination, config: NotificationsConfig) -> list[str]:
    import os
    out = [destination.url or ""]
    if destination.routing_key_env:
        out.append(os.environ.get(destination.routing_key_env, ""))
    if config.smtp is not None:
        out.append(config.smtp.password() or "")
    return [s for s in out if s]


def deliver(destination: Destination, ctx: MessageContext, config: NotificationsConfig, *,
            stop: threading.Event | None = None, on_attempt: Callable[[int, str], None] | None = None) -> Outcome:
    """Send with retries: up to `config.max_attempts` attempts for transient failures, waiting
    `backoff_seconds`, doubled each time (at most 60 s); a `stop` set meanwhile ends the waiting."""
    stop = stop or threading.Event()
    wait = config.backoff_seconds
    error = ""
    for attempt in range(1, config.max_attempts + 1):
        try:
            detail = send_once(destination, ctx, config)
            return Outcome("DELIVERED", attempt, "", _scrub(detail, _secrets(destination, config)))
        except DeliveryError as exc:
            error = _scrub(str(exc), _secrets(destination, config))
            if on_attempt is not None:
                on_attempt(attempt, error)
            if not exc.transient or attempt == config.max_attempts:
                return Outcome("FAILED", attempt, error)
        except Exception as exc:  # a bug or an unexpected library error: recorded, never raised into the bus
            error = _scrub(f"{type(exc).__name__}: {exc}", _secrets(destination, config))
            return Outcome("FAILED", attempt, error)
        if stop.wait(wait):
            return Outcome("FAILED", attempt, error + " (not retried: nbjobs was stopping)")
        wait = min(wait * 2, 60.0)
    return Outcome("FAILED", config.max_attempts, error)  # pragma: no cover - the loop returns
