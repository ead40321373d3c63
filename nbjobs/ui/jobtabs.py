"""Two tabs of the panel's editor: *Job* (name, description, parameters, tags) and *File* (the job
file bar: export YAML/JSON, load)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import ipywidgets as widgets

from .details import message_html
from .editor import pairs_text, params_text, parse_pairs, parse_params
from .scheduleform import ScheduleForm

_STYLE = {"description_width": "88px"}


def _area(description: str, cls: str | None, height: str, placeholder: str = "") -> widgets.Textarea:
    w = widgets.Textarea(description=description, placeholder=placeholder, continuous_update=False,
                         layout=widgets.Layout(width="98%", height=height), style=_STYLE)
    if cls:
        w.add_class(cls)
    return w


class JobForm(widgets.VBox):
    """The job's own fields. `on_change(fields)` after an edit, with {name, description, parameters,
    tags} as JobSettings values (empty ones are "" / [] / {})."""

    def __init__(self, on_change: Callable[[dict], None], on_schedule: Callable[[dict], None] | None = None):
        self._on_change = on_change
        self._loading = False
        self.name = widgets.Text(description="job name", continuous_update=False,
                                 layout=widgets.Layout(width="98%"), style=_STYLE)
        self.name.add_class("nbjobs-job-name")
        self.description = _area("description", None, "48px")
        self.params = _area("parameters", "nbjobs-job-params", "90px", "name=default, one per line")
        self.tags = _area("tags", "nbjobs-job-tags", "64px", "key=value (or a key alone), one per line")
        for w in (self.name, self.description, self.params, self.tags):
            w.observe(self._changed, "value")
        self.schedule = ScheduleForm(on_schedule or (lambda fields: None))  # when the job runs by itself
        super().__init__([self.name, self.description, self.params, self.tags, self.schedule])

    def load(self, settings: Mapping[str, Any]) -> None:
        """Show the fields of `settings` (without calling `on_change`)."""
        self._loading = True
        try:
            self.name.value = str(settings.get("name") or "Untitled")
            self.description.value = str(settings.get("description") or "")
            self.params.value = params_text(settings.get("parameters"))
            self.tags.value = pairs_text(settings.get("tags"))
            self.schedule.load(settings)
        finally:
            self._loading = False

    def _changed(self, change: dict) -> None:
        if self._loading:
            return
        self._on_change({"name": self.name.value.strip() or "Untitled",
                         "description": self.description.value.strip(),
                         "parameters": parse_params(self.params.value),
                         "tags": parse_pairs(self.tags.value)})


class FileBar(widgets.VBox):
    """A job file's path (relative to the base folder), Export YAML / Export JSON / Load, and a message."""

    def __init__(self, on_export: Callable[[str], Any], on_load: Callable[[], Any]):
        W = widgets

        def button(text: str, cls: str, handler: Callable[[], Any], icon: str) -> widgets.Button:
            b = W.Button(description=text, icon=icon, layout=W.Layout(width="auto"))
            b.add_class(cls)
            b.on_click(lambda _b: handler())
            return b

        self.path = W.Text(description="file", continuous_update=True, layout=W.Layout(width="98%"),
                           style=_STYLE, placeholder="job.yml or job.json (relative to the base folder)")
        self.path.add_class("nbjobs-file-path")
        self.message = W.HTML("")
        super().__init__([self.path,
                          W.HBox([button("Export YAML", "nbjobs-export-yaml", lambda: on_export("yaml"), "download"),
                                  button("Export JSON", "nbjobs-export-json", lambda: on_export("json"), "download"),
                                  button("Load", "nbjobs-load", on_load, "upload")]),
                          self.message])

    def say(self, text: str, kind: str = "info") -> None:
        self.message.value = message_html(text, kind)
