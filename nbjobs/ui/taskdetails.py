"""The details of a clicked graph node: the task run's state, output, task values and a link that
opens its executed notebook (or log) in JupyterLab."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlparse

import ipywidgets as widgets

from .client import lab_path
from .details import esc, task_details_html
from .states import is_active

_HINT = '<i style="color:#90a4ae;font-size:12px">Click a task in the graph for its details.</i>'


class TaskDetails(widgets.HTML):
    """Shows one task of a run. `get_output(task_run_id)` is runs/get-output (read once per ended task run)."""

    def __init__(self, get_output: Callable[[int], dict]):
        super().__init__(_HINT)
        self.add_class("nbjobs-details")
        self._get_output = get_output
        self._outputs: dict[int, dict] = {}
        self._lock = threading.Lock()
        self.key: str | None = None

    def show(self, key: str | None, run: Mapping[str, Any] | None) -> None:
        """Show task `key` of `run` (None: the run shown has no such task)."""
        self.key = key
        if key is None:
            return
        task = next((t for t in (run or {}).get("tasks") or [] if t.get("task_key") == key), None)
        if task is None:
            where = f"run {run['run_id']}" if run else "no run is shown"
            self.value = (f'<div class="nbjobs-task-details" data-task="{esc(key)}" data-state="none" '
                          f'style="font-size:12px"><b>{esc(key)}</b>: not part of {where}. '
                          f'Run the job to see its state here.</div>')
            return
        output = values = link = file_path = None
        if not is_active(task):
            output = self._output(task["run_id"])
        page = task.get("run_page_url") or ""
        if page.startswith("file://"):  # the run's files are on this machine (a local workspace or server)
            file_path = unquote(urlparse(page).path)
            link = lab_path(file_path)
            from ..kernel.context import read_values
            try:
                values = read_values(Path(file_path).parent)
            except (OSError, ValueError):
                values = None
        self.value = task_details_html(task, output=output, values=values, link=link, file_path=file_path)

    def _output(self, task_run_id: int) -> dict:
        with self._lock:
            output = self._outputs.get(task_run_id)
        if output is None:
            try:
                output = self._get_output(task_run_id)
            except Exception:  # no output (yet): the details show the rest
                output = {}
            with self._lock:
                self._outputs[task_run_id] = output
        return output
