"""Which service the panel and the magics talk to (a Workspace, or an `nbjobs.connect` client),
and links from a kernel to files in the JupyterLab that runs it."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from urllib.parse import quote

from ..contract import JobsClient

_lock = threading.Lock()
_default: JobsClient | None = None
_workspaces: dict[str, JobsClient] = {}


def use(client: JobsClient | None) -> JobsClient | None:
    """Make `client` (a `Workspace` or an `nbjobs.connect(...)` client) the one panels and magics
    use when none is given; `use(None)` goes back to the local workspace of `$NBJOBS_HOME`."""
    global _default
    with _lock:
        _default = client
    return client


def default_client() -> JobsClient:
    """The client set with `use`, else the Workspace of `$NBJOBS_HOME` (default `./.nbjobs`),
    one per folder for the whole kernel (so every panel shares its background run loop)."""
    with _lock:
        if _default is not None:
            return _default
        from ..service import Workspace, default_home
        home = str(default_home().resolve())
        ws = _workspaces.get(home)
        if ws is None:
            ws = _workspaces[home] = Workspace(home)
        return ws


# -- links into JupyterLab -------------------------------------------------------------------------
_servers: tuple[float, list[dict]] = (0.0, [])


def _running_servers() -> list[dict]:
    global _servers
    stamp, servers = _servers
    if time.monotonic() - stamp < 10:
        return servers
    try:
        from jupyter_server.serverapp import list_running_servers
        servers = list(list_running_servers())
    except Exception:  # no jupyter_server, or an unreadable runtime dir
        servers = []
    parent = os.getppid()
    servers.sort(key=lambda s: s.get("pid") != parent)  # the server that started this kernel first
    _servers = (time.monotonic(), servers)
    return servers


def lab_path(path: str | os.PathLike) -> tuple[str, str] | None:
    """(URL, server-relative path) that opens `path` in the JupyterLab serving it, or None when no
    running Jupyter server has the file under its root."""
    target = Path(path).resolve()
    for server in _running_servers():
        root = server.get("root_dir") or server.get("notebook_dir")
        if not root:
            continue
        try:
            rel = target.relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            continue
        base = server.get("base_url") or "/"
        return f"{base}lab/tree/{quote(rel)}", rel
    return None
