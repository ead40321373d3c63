"""The Jupyter panel: build a job, run it and watch it live on its DAG (ipywidgets + ipycytoscape).

Needs `ipycytoscape` (the `ui` extra: `pip install nbjobs[ui]`); the names load lazily.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DagGraph": "nbjobs.ui.graph",
    "GraphTask": "nbjobs.ui.graph",
    "JobPanel": "nbjobs.ui.panel",
    "STATE_NAMES": "nbjobs.ui.states",
    "default_client": "nbjobs.ui.client",
    "read_job_file": "nbjobs.ui.jobfile",
    "ui_state": "nbjobs.ui.states",
    "use": "nbjobs.ui.client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nbjobs.ui' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
