"""Shared fixtures: a fresh workspace per test and a tiny notebook writer."""
from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from pathlib import Path

import nbformat
import pytest

from nbjobs.service import Workspace

ROOT = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, *cells: str | tuple[str, list[str]]) -> Path:
    """A python3 notebook; a cell is source text, or (source, tags)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in cells:
        source, tags = (cell, []) if isinstance(cell, str) else cell
        code = nbformat.v4.new_code_cell(textwrap.dedent(source).strip())
        if tags:
            code.metadata["tags"] = tags
        nb.cells.append(code)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def write_script(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def write_job(path: Path, settings: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(settings, indent=2))
    else:
        import yaml
        path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path / "home")
    yield ws
    ws.close()


def by_key(run: dict) -> dict[str, dict]:
    """A runs/get answer's tasks by task_key."""
    return {t["task_key"]: t for t in run["tasks"]}


def stop_process(proc, sig: int = signal.SIGTERM, timeout: float = 20):
    """Stop a process a test started: `sig`, then SIGKILL if it has not ended within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()
        return proc.wait(10)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned), or fail naming `what`."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def task_states(run: dict) -> dict[str, str]:
    """{task_key: result_state (or life_cycle_state)} of a runs/get JSON."""
    return {t["task_key"]: t["state"].get("result_state") or t["state"]["life_cycle_state"]
            for t in run["tasks"]}


TIERS = ("pure", "kernels", "dask", "server", "browser")


def pytest_collection_modifyitems(config, items):
    """Every test carries exactly one tier marker (see pyproject.toml), so `-m <tier>` selects it alone."""
    bad = []
    for item in items:
        found = {m.name for m in item.iter_markers() if m.name in TIERS}
        if len(found) != 1:
            bad.append(f"{item.nodeid}: {', '.join(sorted(found)) or 'no tier'}")
    if bad:
        raise pytest.UsageError("each test needs exactly one tier marker (" + ", ".join(TIERS) + "):\n  "
                                + "\n  ".join(bad))
