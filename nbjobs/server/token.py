"""The workspace's server token file (`<home>/server-token`), readable without loading the server:
the HTTP client reads it to talk to a server on this machine. Stdlib only."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

TOKEN_FILE = "server-token"


def token_path(home: str | os.PathLike) -> Path:
    return Path(home) / TOKEN_FILE


def read_token(home: str | os.PathLike) -> str | None:
    """The token `nbjobs serve` generated for this workspace, if any."""
    try:
        return token_path(home).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def load_or_create_token(home: str | os.PathLike) -> tuple[str, bool]:
    """The workspace's server token, generated (and saved, readable by its owner only) on first use."""
    existing = read_token(home)
    if existing:
        return existing, False
    token = "nbj-" + secrets.token_urlsafe(24)
    path = token_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token, True
