"""The panel's list of a run's notification deliveries (event, destination, result), below the task details."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import ipywidgets as widgets

from .details import esc


class RunNotifications(widgets.HTML):
    """`fetch(run_id)` is the client's `run_notifications` (None: the client has none; nothing shown)."""

    def __init__(self, fetch: Callable[[int], list[dict]] | None):
        super().__init__("")
        self.add_class("nbjobs-notifications")
        self._fetch = fetch

    def show(self, run: Mapping[str, Any] | None) -> None:
        if run is None or self._fetch is None:
            self.value = ""
            return
        try:
            deliveries = self._fetch(int(run["run_id"]))
        except Exception:  # an older server without the endpoint, a deleted run: show nothing
            deliveries = []
        if not deliveries:
            self.value = ""
            return
        from ..notify.views import delivery_lines
        rows = "".join(f'<div data-result="{esc(d["result"])}">{esc(line)}</div>'
                       for d, line in zip(deliveries, delivery_lines(deliveries)))
        self.value = (f'<div class="nbjobs-run-notifications" style="font-size:11px;color:#546e7a">'
                      f'<b>Notifications</b>{rows}</div>')
