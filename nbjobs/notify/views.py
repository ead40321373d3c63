"""How a run's notification deliveries are shown: JSON (REST, `runs notifications --json`) and lines
(the CLI, the panel's run details)."""
from __future__ import annotations

from datetime import datetime, timezone

_FIELDS = ("delivery_id", "event", "task_key", "destination", "destination_type", "created_time", "sent_time",
           "attempts", "result", "error")


def deliveries_json(rows: list[dict]) -> list[dict]:
    """Store rows as JSON (times in epoch milliseconds, as the Jobs API gives times)."""
    return [{k: row.get(k) for k in _FIELDS} for row in rows]


def _clock(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone().strftime("%H:%M:%S")


def delivery_lines(deliveries: list[dict]) -> list[str]:
    """One line per delivery: time, event (and task), destination, result, attempts, error."""
    out = []
    for d in deliveries:
        what = d["event"] + (f" (task {d['task_key']})" if d.get("task_key") else "")
        attempts = f"{d['attempts']} attempt{'s' if d['attempts'] != 1 else ''}"
        line = f"{_clock(d.get('sent_time') or d.get('created_time'))}  {what:<36} {d['destination']} " \
               f"[{d['destination_type']}]  {d['result']}, {attempts}"
        if d.get("error"):
            line += f": {d['error']}"
        out.append(line)
    return out
