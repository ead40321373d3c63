"""The `notifications` section of the workspace config (`<NBJOBS_HOME>/config.yml`, beside `compute:`).

    notifications:
      smtp: {host: 127.0.0.1, port: 1025, tls: none, sender: nbjobs@example.com, user: null,
             password_env: SMTP_PASSWORD}
      destinations:
        ops-hook:  {type: webhook, url: "http://127.0.0.1:9000/hook"}
        team-slack: {type: slack, url: "https://hooks.slack.com/services/..."}
        team-teams: {type: teams, url: "https://example.webhook.office.com/..."}
        pager:     {type: pagerduty, routing_key_env: PD_KEY}     # url: defaults to PagerDuty Events API v2
        oncall:    {type: email, addresses: [oncall@example.com]}
      timeout_seconds: 10        # per attempt
      max_attempts: 4            # transient failures (connection errors, HTTP 429 and 5xx) are retried
      backoff_seconds: 1         # doubled after each attempt

Passwords and routing keys are read from environment variables when a message is sent; nbjobs never
stores them. URLs are http or https only; `redact(url)` is how a URL is ever shown.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..compute.config import ConfigError, read_workspace_config

__all__ = ["DESTINATION_TYPES", "Destination", "NotificationsConfig", "SmtpConfig", "load_notifications_config",
           "redact"]

DESTINATION_TYPES = ("webhook", "slack", "teams", "pagerduty", "email")
TLS_MODES = ("none", "starttls", "ssl")
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"  # PagerDuty Events API v2


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    tls: str = "none"
    sender: str = "nbjobs@localhost"
    user: str | None = None
    password_env: str | None = None

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


@dataclass(frozen=True)
class Destination:
    id: str
    type: str
    url: str | None = None
    addresses: tuple[str, ...] = ()
    routing_key_env: str | None = None

    def describe(self) -> str:
        """What `destinations list` shows: the type and the redacted URL or the addresses."""
        if self.type == "email":
            return ", ".join(self.addresses)
        if self.type == "pagerduty":
            return f"routing key from ${self.routing_key_env} -> {redact(self.url or PAGERDUTY_EVENTS_URL)}"
        return redact(self.url or "")


@dataclass
class NotificationsConfig:
    smtp: SmtpConfig | None = None
    destinations: dict[str, Destination] = field(default_factory=dict)
    timeout_seconds: float = 10.0
    max_attempts: int = 4
    backoff_seconds: float = 1.0
    path: Path | None = None


def redact(url: str) -> str:
    """A URL as it may be shown: scheme, host and port only (webhook paths and queries carry tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    tail = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def _url(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
        shown = redact(value) if isinstance(value, str) else repr(value)
        raise ConfigError(f"{path}: {where} must be an http:// or https:// URL, got {shown}")
    return value


def _env_name(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str) or not value or not value.replace("_", "").isalnum():
        raise ConfigError(f"{path}: {where} must name an environment variable (such as SMTP_PASSWORD), got "
                          f"{value!r}; the secret itself is never written in the config")
    return value


def _smtp(path: Path, raw: Any) -> SmtpConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: notifications.smtp must be a mapping {{host, port, tls, sender, ...}}")
    unknown = set(raw) - {"host", "port", "tls", "sender", "user", "password_env"}
    if unknown:
        raise ConfigError(f"{path}: notifications.smtp: unknown key(s) {sorted(unknown)}; known: host, port, tls, "
                          "sender, user, password_env (passwords come from the variable password_env names)")
    tls = raw.get("tls", "none")
    if tls not in TLS_MODES:
        raise ConfigError(f"{path}: notifications.smtp.tls must be one of {', '.join(TLS_MODES)}, got {tls!r}")
    port = raw.get("port", 465 if tls == "ssl" else 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{path}: notifications.smtp.port must be a port number, got {port!r}")
    host, sender, user = raw.get("host", "127.0.0.1"), raw.get("sender"), raw.get("user")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{path}: notifications.smtp.host must be a host name, got {host!r}")
    if not isinstance(sender, str) or "@" not in sender:
        raise ConfigError(f"{path}: notifications.smtp.sender must be an email address, got {sender!r}")
    if user is not None and not isinstance(user, str):
        raise ConfigError(f"{path}: notifications.smtp.user must be a user name or null, got {user!r}")
    env = raw.get("password_env")
    return SmtpConfig(host=host, port=port, tls=tls, sender=sender, user=user or None,
                      password_env=_env_name(path, "notifications.smtp.password_env", env) if env else None)


def _destination(path: Path, name: str, raw: Any) -> Destination:
    where = f"notifications.destinations.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {where} must be a mapping such as {{type: webhook, url: https://...}}")
    kind = raw.get("type")
    if kind not in DESTINATION_TYPES:
        raise ConfigError(f"{path}: {where}.type must be one of {', '.join(DESTINATION_TYPES)}, got {kind!r}")
    allowed = {"type", "url"} | ({"addresses"} if kind == "email" else set()) | (
        {"routing_key_env"} if kind == "pagerduty" else set())
    if kind == "email":
        allowed.discard("url")
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"{path}: {where}: unknown key(s) {sorted(unknown)} for a {kind} destination; "
                          f"known: {', '.join(sorted(allowed))}")
    if kind == "email":
        addresses = raw.get("addresses")
        if isinstance(addresses, str):
            addresses = [addresses]
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and "@" in a for a in addresses):
            raise ConfigError(f"{path}: {where}.addresses must be a list of email addresses, got {addresses!r}")
        return Destination(name, kind, addresses=tuple(addresses))
    if kind == "pagerduty":
        url = _url(path, f"{where}.url", raw["url"]) if raw.get("url") is not None else None
        return Destination(name, kind, url=url,
                           routing_key_env=_env_name(path, f"{where}.routing_key_env", raw.get("routing_key_env")))
    if raw.get("url") is None:
        raise ConfigError(f"{path}: {where}.url is required for a {kind} destination (an http:// or https:// URL)")
    return Destination(name, kind, url=_url(path, f"{where}.url", raw["url"]))


def _number(path: Path, section: dict, key: str, default: float, *, whole: bool = False) -> Any:
    value = section.get(key, default)
    ok = isinstance(value, int) if whole else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or value <= 0:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{path}: notifications.{key} must be {kind} greater than 0, got {value!r}")
    return value


def load_notifications_config(home: str | os.PathLike | None) -> NotificationsConfig:
    """Read the `notifications` section (an absent file or section: no destinations, no SMTP server)."""
    if home is None:
        return NotificationsConfig()
    data, path = read_workspace_config(home)
    section = data.get("notifications")
    if path is None or section is None:
        return NotificationsConfig(path=path)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: `notifications` must be a mapping (smtp:, destinations:)")
    known = {"smtp", "destinations", "timeout_seconds", "max_attempts", "backoff_seconds"}
    unknown = set(section) - known
    if unknown:
        raise ConfigError(f"{path}: notifications: unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
    config = NotificationsConfig(path=path)
    if section.get("smtp") is not None:
        config.smtp = _smtp(path, section["smtp"])
    destinations = section.get("destinations") or {}
    if not isinstance(destinations, dict):
        raise ConfigError(f"{path}: notifications.destinations must map a destination id to {{type: ..., ...}}")
    config.destinations = {str(k): _destination(path, str(k), v) for k, v in destinations.items()}
    config.timeout_seconds = float(_number(path, section, "timeout_seconds", 10.0))
    config.max_attempts = int(_number(path, section, "max_attempts", 4, whole=True))
    config.backoff_seconds = float(_number(path, section, "backoff_seconds", 1.0))
    return config
