"""The Jobs API 2.1/2.2 over HTTP: `nbjobs serve` (`app.py`) and a Jupyter server extension (`extension.py`),
both serving the handlers of `handlers.py`."""
from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "nbjobs.server.extension"}]


def __getattr__(name: str) -> Any:
    if name in ("ServerThread", "make_app", "serve", "load_or_create_token", "read_token"):
        from . import app
        return getattr(app, name)
    raise AttributeError(f"module 'nbjobs.server' has no attribute {name!r}")


__all__ = ["ServerThread", "load_or_create_token", "make_app", "read_token", "serve"]
