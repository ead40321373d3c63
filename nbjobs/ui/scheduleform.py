"""The Job tab's *when* section: a schedule, a periodic or file-arrival trigger, or continuous; the
schedule in words and its next fire times."""
from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from typing import Any, Callable, Mapping

import ipywidgets as widgets

from ..schedule.describe import describe
from ..schedule.quartz import CronError, next_fire_times, zone
from ..schedule.settings import PERIODIC_UNITS

_STYLE = {"description_width": "88px"}
KINDS = (("only when started", "none"), ("schedule (Quartz cron)", "schedule"),
         ("every N (periodic)", "periodic"), ("when files arrive", "file_arrival"), ("continuous", "continuous"))


def schedule_info(expression: str, timezone_id: str, now: datetime | None = None, count: int = 3) -> str:
    """HTML: the schedule in words and its next fire times, or what is wrong with it."""
    try:
        zone(timezone_id)
        words = describe(expression, timezone_id)
        times = next_fire_times(expression, timezone_id, now or datetime.now(timezone.utc), count)
    except CronError as exc:
        return f"<span class='nbjobs-schedule-problem' style='color:#b00'>{escape(str(exc))}</span>"
    nxt = "<br>".join(escape(t.isoformat()) for t in times) or "no more fire times"
    return f"<b>{escape(words)}</b><br><small>next: {nxt}</small>"


class ScheduleForm(widgets.VBox):
    """`on_change(fields)` after an edit: {"schedule", "trigger", "continuous"}, None for the unset ones."""

    def __init__(self, on_change: Callable[[dict], None]):
        W = widgets
        self._on_change, self._loading = on_change, False
        self._original: dict[str, Any] = {}
        text = lambda d, ph="": W.Text(description=d, placeholder=ph, continuous_update=False,  # noqa: E731
                                       layout=W.Layout(width="98%"), style=_STYLE)
        self.kind = W.Dropdown(description="runs", options=KINDS, value="none", style=_STYLE)
        self.cron = text("cron", "0 0 6 * * ?  (seconds minutes hours day month day-of-week)")
        self.timezone = text("time zone", "UTC, Europe/Paris, ...")
        self.interval = W.BoundedIntText(description="every", min=1, max=10_000, value=1, style=_STYLE)
        self.unit = W.Dropdown(options=list(PERIODIC_UNITS), value="HOURS", layout=W.Layout(width="120px"))
        self.url = text("folder", "/Volumes/main/raw/landing/ or an absolute folder")
        self.paused = W.Checkbox(description="paused", indent=False)
        self.info = W.HTML("")
        for w in (self.kind, self.cron, self.timezone, self.interval, self.unit, self.url, self.paused):
            w.observe(self._changed, "value")
        self.add_class("nbjobs-schedule-form")
        self.cron.add_class("nbjobs-schedule-cron")
        self.every = W.HBox([self.interval, self.unit])
        super().__init__([self.kind, self.cron, self.timezone, self.every, self.url, self.paused, self.info])
        self._show()

    def load(self, settings: Mapping[str, Any]) -> None:
        self._loading = True
        try:
            schedule, trigger, continuous = (settings.get(k) for k in ("schedule", "trigger", "continuous"))
            self._original = {k: dict(v) for k, v in (("schedule", schedule), ("trigger", trigger),
                                                       ("continuous", continuous)) if isinstance(v, Mapping)}
            kind, paused = "none", None
            if isinstance(schedule, Mapping):
                kind, paused = "schedule", schedule.get("pause_status")
                self.cron.value = str(schedule.get("quartz_cron_expression") or "")
                self.timezone.value = str(schedule.get("timezone_id") or "")
            elif isinstance(trigger, Mapping):
                paused = trigger.get("pause_status")
                if isinstance(trigger.get("periodic"), Mapping):
                    kind = "periodic"
                    self.interval.value = int(trigger["periodic"].get("interval") or 1)
                    self.unit.value = str(trigger["periodic"].get("unit") or "HOURS")
                elif isinstance(trigger.get("file_arrival"), Mapping):
                    kind = "file_arrival"
                    self.url.value = str(trigger["file_arrival"].get("url") or "")
            elif isinstance(continuous, Mapping):
                kind, paused = "continuous", continuous.get("pause_status")
            self.kind.value = kind
            self.paused.value = paused == "PAUSED"
        finally:
            self._loading = False
        self._show()

    def fields(self) -> dict[str, Any]:
        kind, status = self.kind.value, "PAUSED" if self.paused.value else "UNPAUSED"
        out: dict[str, Any] = {"schedule": None, "trigger": None, "continuous": None}
        if kind == "schedule":
            out["schedule"] = {**self._original.get("schedule", {}), "quartz_cron_expression": self.cron.value.strip(),
                               "timezone_id": self.timezone.value.strip() or "UTC", "pause_status": status}
        elif kind in ("periodic", "file_arrival"):
            previous = self._original.get("trigger", {}).get(kind)
            body = dict(previous) if isinstance(previous, Mapping) else {}
            if kind == "periodic":
                body.update(interval=int(self.interval.value), unit=self.unit.value)
            else:
                body["url"] = self.url.value.strip()
            out["trigger"] = {kind: body, "pause_status": status}
        elif kind == "continuous":
            out["continuous"] = {**self._original.get("continuous", {}), "pause_status": status}
        return out

    def _show(self) -> None:
        kind = self.kind.value
        for widget, kinds in ((self.cron, ("schedule",)), (self.timezone, ("schedule",)),
                              (self.every, ("periodic",)), (self.url, ("file_arrival",))):
            widget.layout.display = "" if kind in kinds else "none"
        self.paused.layout.display = "none" if kind == "none" else ""
        if kind == "schedule" and self.cron.value.strip():
            self.info.value = schedule_info(self.cron.value.strip(), self.timezone.value.strip() or "UTC")
        else:
            self.info.value = ""

    def _changed(self, change: dict) -> None:
        if self._loading:
            return
        self._show()
        self._on_change(self.fields())
