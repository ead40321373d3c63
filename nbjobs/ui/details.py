"""HTML fragments of the panel: a task run's details, the problem list, status lines. Pure."""
from __future__ import annotations

import datetime
import html
import json
import re
from typing import Any, Iterable, Mapping

from ..tasks.registry import iteration_stats, outcome_of
from .states import STATES, ui_state

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_COLORS = {name: (fill, border, text) for name, _l, fill, border, text in STATES}


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text or "")


def badge(state: str, text: str | None = None) -> str:
    fill, border, color = _COLORS.get(state, ("#ffffff", "#90a4ae", "#263238"))
    return (f'<span class="nbjobs-badge" data-state="{esc(state)}" style="background:{fill};border:1px solid '
            f'{border};color:{color};border-radius:8px;padding:0 7px;font-size:11px;white-space:nowrap">'
            f'{esc(text or state.replace("_", " "))}</span>')


def clock(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def seconds(ms: int | None) -> str:
    return "-" if not ms else f"{ms / 1000:.1f}s"


def problems_html(problems: Iterable[Any]) -> str:
    """The problems of a job definition as a readable list (path, message, fix)."""
    problems = list(problems)
    if not problems:
        return ('<div class="nbjobs-problems nbjobs-valid" style="color:#2e7d32;font-size:12px">'
                '✔ The job definition is valid.</div>')
    items = []
    for p in problems:
        path = f'<code style="color:#b71c1c">{esc(p.path)}</code>: ' if getattr(p, "path", "") else ""
        fix = f'<br><span style="color:#546e7a">Fix: {esc(p.fix)}</span>' if getattr(p, "fix", "") else ""
        items.append(f'<li style="margin-bottom:3px">{path}{esc(getattr(p, "message", p))}{fix}</li>')
    n = len(problems)
    return (f'<div class="nbjobs-problems" style="font-size:12px;border-left:3px solid #d32f2f;'
            f'padding:2px 8px;background:#fff5f5"><b style="color:#c62828">{n} problem{"s" if n != 1 else ""}'
            f'</b><ul style="margin:2px 0 0 0;padding-left:18px">{"".join(items)}</ul></div>')


def problems_text(problems: Iterable[Any]) -> str:
    problems = list(problems)
    n = len(problems)
    return "\n".join([f"Invalid job definition: {n} problem{'s' if n != 1 else ''}"]
                     + [f"  - {p}" for p in problems])


def message_html(text: str, kind: str = "info") -> str:
    color = {"info": "#37474f", "ok": "#2e7d32", "error": "#c62828", "warn": "#e65100"}[kind]
    return f'<span class="nbjobs-msg nbjobs-msg-{kind}" style="color:{color}">{esc(text)}</span>'


def run_summary(run: Mapping[str, Any]) -> str:
    """`Run 12 · RUNNING · 3 of 9 tasks done` with a state badge."""
    state = ui_state(run)
    st = run.get("state") or {}
    label = st.get("result_state") or st.get("life_cycle_state") or "?"
    tasks = run.get("tasks") or []
    done = sum(1 for t in tasks if (t.get("state") or {}).get("result_state"))
    parts = [f"<b>Run {esc(run.get('run_id'))}</b>", badge(state, label),
             f'<span class="nbjobs-done">{done} of {len(tasks)} tasks done</span>']
    if run.get("run_duration"):
        parts.append(seconds(run["run_duration"]))
    repairs = [r for r in run.get("repair_history") or [] if r.get("type") == "REPAIR"]
    if repairs:
        parts.append(f"{len(repairs)} repair{'s' if len(repairs) != 1 else ''}")
    message = st.get("state_message")
    if message:
        parts.append(f'<span style="color:#607d8b">{esc(message)}</span>')
    return f'<span class="nbjobs-run-summary" data-run-id="{esc(run.get("run_id"))}" ' \
           f'data-state="{esc(state)}">' + " · ".join(parts) + "</span>"


def history_label(run: Mapping[str, Any]) -> str:
    st = run.get("state") or {}
    label = st.get("result_state") or st.get("life_cycle_state") or "?"
    start = clock(run.get("start_time"))[11:] if run.get("start_time") else ""
    return f"Run {run['run_id']} · {label} · {start}".rstrip(" ·")


def _row(name: str, value: str) -> str:
    return (f'<tr><th style="text-align:left;vertical-align:top;padding:1px 8px 1px 0;color:#546e7a;'
            f'font-weight:normal;white-space:nowrap">{esc(name)}</th><td style="padding:1px 0">{value}</td></tr>')


def _pre(text: str, color: str = "#263238", cls: str = "") -> str:
    return (f'<pre class="{cls}" style="white-space:pre-wrap;word-break:break-word;margin:2px 0;'
            f'padding:4px 6px;background:#f7f7f7;border-radius:3px;max-height:260px;overflow:auto;'
            f'font-size:11px;color:{color}">{esc(text)}</pre>')


def task_details_html(task: Mapping[str, Any], *, output: Mapping[str, Any] | None = None,
                      values: Mapping[str, Any] | None = None, link: tuple[str, str] | None = None,
                      file_path: str | None = None) -> str:
    """Everything about one task run: state, attempts, durations, resolved parameters, task values,
    exit value, error and traceback, and where its executed notebook (or log) is."""
    state = ui_state(task)
    st = task.get("state") or {}
    label = st.get("result_state") or st.get("life_cycle_state") or "?"
    rows = [_row("state", badge(state, label) + (f' <span style="color:#607d8b">{esc(st.get("state_message"))}'
                                                 f'</span>' if st.get("state_message") else ""))]
    attempt = task.get("attempt_number") or 0
    rows.append(_row("attempt", f"{attempt + 1}" + (" (a retry)" if attempt else "")))
    rows.append(_row("task run id", esc(task.get("run_id"))))
    if task.get("start_time"):
        rows.append(_row("started", esc(clock(task.get("start_time")))))
        rows.append(_row("ended", esc(clock(task.get("end_time")))))
        durations = f"{seconds(task.get('run_duration'))} (execution {seconds(task.get('execution_duration'))}"
        if task.get("queue_duration"):
            durations += f", queued {seconds(task.get('queue_duration'))}"
        rows.append(_row("duration", esc(durations + ")")))
    outcome = outcome_of(task)
    if outcome is not None:
        rows.append(_row("outcome", f"<b>{esc(outcome)}</b>"))
    stats = iteration_stats(task)
    if stats:
        rows.append(_row("iterations", esc(", ".join(f"{k.replace('_iterations', '')} {v}"
                                                     for k, v in stats.items()))))
    resolved = task.get("resolved_values")
    if resolved:
        rows.append(_row("parameters", _pre(json.dumps(resolved, indent=1, ensure_ascii=False),
                                            cls="nbjobs-resolved")))
    if values:
        cells = "".join(f"<tr><td><code>{esc(k)}</code></td><td><code>{esc(json.dumps(v, ensure_ascii=False))}"
                        f"</code></td></tr>" for k, v in values.items())
        rows.append(_row("task values", f'<table class="nbjobs-values" style="font-size:11px">{cells}</table>'))
    output = output or {}
    exit_value = (output.get("notebook_output") or {}).get("result")
    if exit_value is not None:
        rows.append(_row("exit value", _pre(exit_value, cls="nbjobs-exit")))
    if output.get("error"):
        rows.append(_row("error", _pre(strip_ansi(output["error"]), "#b71c1c", "nbjobs-error")))
    if output.get("error_trace"):
        rows.append(_row("traceback", "<details><summary>show</summary>"
                         + _pre(strip_ansi(output["error_trace"]), "#b71c1c", "nbjobs-trace") + "</details>"))
    if link is not None:
        href, rel = link
        hidden = ""
        if any(part.startswith(".") for part in rel.split("/")[:-1]):
            hidden = ('<br><span style="font-size:10px;color:#78909c">(a hidden folder: JupyterLab opens it when '
                      'started with --ContentsManager.allow_hidden=True, or set NBJOBS_HOME to a visible '
                      'folder)</span>')
        name = "executed notebook" if rel.endswith(".ipynb") else "log"
        rows.append(_row("output", f'<a class="nbjobs-open" href="{esc(href)}" target="_blank" '
                         f'data-commandlinker-command="docmanager:open" '
                         f'data-commandlinker-args="{esc(json.dumps({"path": rel}))}" '
                         f'style="color:#1565c0;text-decoration:underline">open the {name} in JupyterLab</a> '
                         f'<code style="font-size:10px;color:#78909c">{esc(rel)}</code>' + hidden))
    elif file_path:
        rows.append(_row("output", f"<code>{esc(file_path)}</code>"))
    return (f'<div class="nbjobs-task-details" data-task="{esc(task.get("task_key"))}" data-state="{esc(state)}">'
            f'<div style="font-weight:bold;margin-bottom:3px">{esc(task.get("task_key"))}</div>'
            f'<table style="font-size:12px;border-collapse:collapse">{"".join(rows)}</table></div>')
