"""The panel's run controls: Run, Run with parameters…, Repair failed, Repair tasks…, Cancel, the
run history selector and the status line. The widget only shows; the panel acts (callbacks)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import ipywidgets as widgets

from ..contract import REPAIR_RERUN_DEPENDENT_TASKS
from .details import history_label, message_html
from .editor import parse_pairs
from .states import is_active, ui_state

FAILED = ("failed", "timed_out", "canceled", "upstream_failed", "upstream_canceled")
_RUN_TIP = "save the job and run it (in the background)"
_BOX = dict(display="none", border="1px solid #e0e0e0", padding="4px", margin="2px 0")


def _button(text: str, cls: str, handler: Callable[[], Any], *, icon: str = "", style: str = "",
            tooltip: str = "") -> widgets.Button:
    b = widgets.Button(description=text, icon=icon, button_style=style, tooltip=tooltip,
                       layout=widgets.Layout(width="auto"))
    b.add_class(cls)
    b.on_click(lambda _b: handler())
    return b


class RunControls(widgets.VBox):
    """Toolbar, status line, the run-with-parameters box and the repair box.

    `parameters()`: the job's parameters ([{name, default}]). Callbacks: `on_run()`, `on_run_with(params)`,
    `on_repair_failed()`, `on_repair_chosen(tasks, rerun_dependents, params)`, `on_cancel()`,
    `on_history(run_id)`."""

    def __init__(self, *, parameters: Callable[[], list], on_run: Callable[[], Any], on_run_with: Callable[[dict], Any],
                 on_repair_failed: Callable[[], Any], on_repair_chosen: Callable[[list, bool, dict | None], Any],
                 on_cancel: Callable[[], Any], on_history: Callable[[int], Any]):
        W = widgets
        self._job_parameters = parameters
        self._on_run_with = on_run_with
        self._on_repair_chosen = on_repair_chosen
        self._on_history = on_history
        self._history_guard = False
        self.run_button = _button("Run", "nbjobs-run", on_run, icon="play", style="success", tooltip=_RUN_TIP)
        self.run_params_button = _button("Run with parameters…", "nbjobs-run-params", self.toggle_params)
        self.repair_button = _button("Repair failed", "nbjobs-repair", on_repair_failed, icon="wrench",
                                     style="warning", tooltip="rerun the failed tasks, then the tasks after them "
                                                              "that did not succeed")
        self.repair_tasks_button = _button("Repair tasks…", "nbjobs-repair-tasks", self.toggle_repair)
        self.cancel_button = _button("Cancel", "nbjobs-cancel", on_cancel, icon="stop", style="danger")
        self.history = W.Dropdown(options=[], description="run", layout=W.Layout(width="300px"),
                                  style={"description_width": "28px"})
        self.history.add_class("nbjobs-history")
        self.history.observe(self._history_changed, "value")
        self.status_html = W.HTML("")
        self.status_html.add_class("nbjobs-status")
        toolbar = W.HBox([self.run_button, self.run_params_button, self.repair_button, self.repair_tasks_button,
                          self.cancel_button, self.history], layout=W.Layout(flex_flow="row wrap"))

        self.params_box = W.VBox([], layout=W.Layout(**_BOX))
        self.params_box.add_class("nbjobs-params-box")
        self.repair_select = W.SelectMultiple(options=[], rows=6, description="rerun",
                                              layout=W.Layout(width="300px"), style={"description_width": "40px"})
        self.repair_select.add_class("nbjobs-repair-select")
        self.repair_dependents = W.Checkbox(value=REPAIR_RERUN_DEPENDENT_TASKS, indent=False,
                                            description="also rerun the tasks after them that succeeded")
        self.repair_params = W.Textarea(placeholder="job parameters for the repair: name=value per line "
                                                    "(optional)", layout=W.Layout(width="300px", height="52px"))
        self.repair_params.add_class("nbjobs-repair-params")
        start_repair = _button("Start repair", "nbjobs-start-repair", self._start_repair, icon="wrench",
                               style="warning")
        self.repair_box = W.HBox([self.repair_select, W.VBox([self.repair_dependents, self.repair_params,
                                                              start_repair])], layout=W.Layout(**_BOX))
        self.repair_box.add_class("nbjobs-repair-box")
        self._run: Mapping[str, Any] | None = None
        super().__init__([toolbar, self.status_html, self.params_box, self.repair_box])
        self.add_class("nbjobs-run-controls")

    def status(self, text: str, kind: str = "info") -> None:
        self.status_html.value = message_html(text, kind)

    # -- buttons --------------------------------------------------------------------------------
    def render(self, run: Mapping[str, Any] | None, *, runnable: bool, problems: bool) -> None:
        """Enable what can be clicked now (a coloured button is one that can), for the run shown."""
        self._run = run
        active = bool(run) and is_active(run)
        failed = bool(run) and not active and any(ui_state(t) in FAILED for t in run.get("tasks") or [])
        self.run_button.disabled = not runnable
        self.run_button.tooltip = "fix the problems listed below first" if problems else _RUN_TIP
        self.run_params_button.disabled = self.run_button.disabled
        self.repair_button.disabled = not failed
        self.repair_tasks_button.disabled = not (run and not active)
        self.cancel_button.disabled = not active
        self.run_button.button_style = "" if self.run_button.disabled else "success"
        self.repair_button.button_style = "" if self.repair_button.disabled else "warning"
        self.cancel_button.button_style = "" if self.cancel_button.disabled else "danger"
        if self.repair_box.layout.display != "none":
            self.fill_repair_box()

    # -- run with parameters ---------------------------------------------------------------------
    def toggle_params(self) -> None:
        """Show (or hide) a field per job parameter (its default filled in) and Start run."""
        box = self.params_box
        if box.layout.display != "none":
            box.layout.display = "none"
            return
        parameters = [p for p in self._job_parameters() or [] if isinstance(p, dict)]
        fields = []
        for p in parameters:
            if isinstance(p, dict) and p.get("name"):
                t = widgets.Text(value=str(p.get("default") or ""), description=str(p["name"]),
                                 layout=widgets.Layout(width="420px"), style={"description_width": "120px"})
                t.add_class("nbjobs-param")
                t.add_class(f"nbjobs-param-{p['name']}")
                fields.append(t)
        defaults = {p.get("name"): str(p.get("default") or "") for p in parameters}

        def start() -> None:
            box.layout.display = "none"
            self._on_run_with({t.description: t.value for t in fields if t.value != defaults.get(t.description)})

        shown: list = fields or [widgets.HTML('<i style="font-size:12px">This job has no parameters (add them in '
                                              'the Job tab).</i>')]
        box.children = shown + [_button("Start run", "nbjobs-start-run", start, icon="play", style="success")]
        box.layout.display = "flex"

    # -- repair chosen tasks ---------------------------------------------------------------------
    def toggle_repair(self) -> None:
        if self.repair_box.layout.display != "none":
            self.repair_box.layout.display = "none"
            return
        self.fill_repair_box()
        self.repair_box.layout.display = "flex"

    def fill_repair_box(self) -> None:
        """The tasks of the run shown; its failed ones chosen."""
        tasks = (self._run or {}).get("tasks") or []
        keys = [t["task_key"] for t in tasks]
        if list(self.repair_select.options) != keys:
            self.repair_select.options = keys
            self.repair_select.value = tuple(t["task_key"] for t in tasks if ui_state(t) in FAILED)

    def _start_repair(self) -> None:
        self._on_repair_chosen(list(self.repair_select.value), bool(self.repair_dependents.value),
                               parse_pairs(self.repair_params.value) or None)

    # -- history ---------------------------------------------------------------------------------
    def set_history(self, runs: Iterable[Mapping[str, Any]], shown: Mapping[str, Any] | None) -> None:
        """The run selector: `runs` (newest first), and the run shown (listed first if not among them)."""
        options = [(history_label(r), r["run_id"]) for r in runs]
        shown_id = shown["run_id"] if shown else None
        if shown_id is not None and shown_id not in [v for _, v in options]:
            options.insert(0, (history_label(shown), shown_id))
        if list(self.history.options) == options and self.history.value == shown_id:
            return
        self._history_guard = True
        try:
            self.history.options = options
            self.history.value = shown_id if shown_id in [v for _, v in options] else None
        finally:
            self._history_guard = False

    def select_history(self, run_id: int) -> bool:
        """Select `run_id` in the run selector; False when it is not listed."""
        if run_id not in [v for _, v in self.history.options]:
            return False
        self._history_guard = True
        try:
            self.history.value = run_id
        finally:
            self._history_guard = False
        return True

    def _history_changed(self, change: dict) -> None:
        if self._history_guard or change["new"] is None:
            return
        self._on_history(change["new"])
