"""The form of one task: its key, kind (the registered task kinds), the kind's payload, dependencies,
run-if, retries, timeout and compute. Edits go straight into the task dict."""
from __future__ import annotations

import html
import json
from typing import Any, Callable, Iterable

import ipywidgets as widgets

from ..tasks.registry import kinds
from .editor import (kind_menu, lines_text, new_task, pairs_text, parse_lines, parse_pairs, rename_task, task_field,
                     task_kind)

RUN_IFS = ["ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE", "AT_LEAST_ONE_FAILED", "ALL_FAILED"]
OPS = [("==", "EQUAL_TO"), ("!=", "NOT_EQUAL"), (">", "GREATER_THAN"), (">=", "GREATER_THAN_OR_EQUAL"),
       ("<", "LESS_THAN"), ("<=", "LESS_THAN_OR_EQUAL")]
COMPUTE = [("local kernel pool (serverless)", ""), ("environment_key", "environment_key"),
           ("job_cluster_key", "job_cluster_key"), ("existing_cluster_id", "existing_cluster_id")]


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _esc(text: Any) -> str:
    return html.escape(str(text))


class TaskForm(widgets.VBox):
    """The form of one task. Edits go straight into the task dict, then `on_change(structural)`."""

    def __init__(self, on_change: Callable[[bool], None], files: Callable[[], list[str]]):
        self._on_change = on_change
        self._files = files
        self.task: dict | None = None
        self.others: list[dict] = []
        self._loading = False
        W = widgets
        full = W.Layout(width="98%")
        style = {"description_width": "88px"}

        def text(desc, cls, placeholder=""):
            w = W.Text(description=desc, placeholder=placeholder, continuous_update=False, layout=full, style=style)
            w.add_class(cls)
            return w

        def area(desc, cls, placeholder=""):
            w = W.Textarea(description=desc, placeholder=placeholder, continuous_update=False,
                           layout=W.Layout(width="98%", height="64px"), style=style)
            w.add_class(cls)
            return w

        self.key = text("task key", "nbjobs-task-key", "e.g. ingest")
        self.kind = W.Dropdown(description="kind", options=kind_menu(), layout=full,
                               style=style)
        self.kind.add_class("nbjobs-task-kind")
        self.description = text("description", "nbjobs-task-description")
        self.path = W.Combobox(description="notebook", placeholder="pick or type a path", ensure_option=False,
                               continuous_update=False, layout=W.Layout(flex="1 1 auto", width="auto"),
                               style=style)
        self.path.add_class("nbjobs-task-path")
        self.rescan = W.Button(icon="refresh", tooltip="look for notebooks and scripts again",
                               layout=W.Layout(width="44px", min_width="44px"))
        self.params = area("parameters", "nbjobs-task-params", "name=value, one per line")
        self.left = text("left", "nbjobs-cond-left", "{{tasks.t.values.v}}")
        self.op = W.Dropdown(description="operator", options=OPS, layout=full, style=style)
        self.op.add_class("nbjobs-cond-op")
        self.right = text("right", "nbjobs-cond-right")
        self.inputs = text("inputs", "nbjobs-foreach-inputs", '["a", "b"] or {{job.parameters.list}}')
        self.concurrency = W.BoundedIntText(description="concurrency", min=1, max=100, value=1, layout=full,
                                            style=style)
        self.inner_kind = W.Dropdown(description="each runs", options=[("Notebook", "notebook"),
                                                                       ("Python script", "python")],
                                     layout=full, style=style)
        self.job_id = text("job id", "nbjobs-runjob-id")
        self.payload = W.Textarea(placeholder="the task's payload as JSON", continuous_update=False,
                                  layout=W.Layout(width="98%", height="90px"), style=style)
        self.payload.add_class("nbjobs-task-payload")
        self.payload_message = W.HTML("")
        self.deps_box = W.HBox([], layout=W.Layout(flex_flow="row wrap", margin="0 0 0 92px"))
        self.deps_box.add_class("nbjobs-deps")
        self.run_if = W.Dropdown(description="run if", options=RUN_IFS, layout=full, style=style)
        self.run_if.add_class("nbjobs-task-run-if")
        half = W.Layout(width="49%")
        self.max_retries = W.IntText(description="retries", value=0, layout=half, style=style)
        self.max_retries.add_class("nbjobs-task-retries")
        self.retry_interval = W.IntText(description="retry after ms", value=0, layout=half,
                                        style={"description_width": "96px"})
        self.retry_on_timeout = W.Checkbox(description="retry on timeout", indent=False, layout=half)
        self.timeout = W.IntText(description="timeout s", value=0, layout=half, style=style)
        self.timeout.add_class("nbjobs-task-timeout")
        self.compute_kind = W.Dropdown(description="compute", options=COMPUTE, layout=half, style=style)
        self.compute_value = W.Text(placeholder="key or cluster id", continuous_update=False, layout=half)
        self.disabled = W.Checkbox(description="disabled", indent=False)
        self.problems = W.HTML("")
        self.problems.add_class("nbjobs-task-problems")
        self.path_row = W.HBox([self.path, self.rescan], layout=W.Layout(width="98%"))
        self.kind_box = W.VBox([])
        super().__init__()
        self.add_class("nbjobs-task-form")

        bind = self._bind
        bind(self.key, self._set_key)
        bind(self.kind, self._set_kind)
        bind(self.description, lambda v: self._set_field("description", v or None), structural=False)
        bind(self.path, self._set_path)
        bind(self.params, self._set_params, structural=False)
        for w, name in ((self.left, "left"), (self.op, "op"), (self.right, "right")):
            bind(w, lambda v, n=name: self._set_payload("condition_task", n, v), structural=False)
        bind(self.inputs, lambda v: self._set_payload("for_each_task", "inputs", v), structural=False)
        bind(self.concurrency, lambda v: self._set_payload("for_each_task", "concurrency", v), structural=False)
        bind(self.inner_kind, self._set_inner_kind, structural=False)
        bind(self.job_id, lambda v: self._set_payload("run_job_task", "job_id", v), structural=False)
        bind(self.payload, self._set_json_payload, structural=False)
        bind(self.run_if, lambda v: self._set_field("run_if", None if v == "ALL_SUCCESS" else v), structural=False)
        bind(self.max_retries, lambda v: self._set_field("max_retries", v or None), structural=False)
        bind(self.retry_interval, lambda v: self._set_field("min_retry_interval_millis", v or None),
             structural=False)
        bind(self.retry_on_timeout, lambda v: self._set_field("retry_on_timeout", v or None), structural=False)
        bind(self.timeout, lambda v: self._set_field("timeout_seconds", v or None), structural=False)
        bind(self.compute_kind, lambda v: self._set_compute(), structural=False)
        bind(self.compute_value, lambda v: self._set_compute(), structural=False)
        bind(self.disabled, lambda v: self._set_field("disabled", bool(v) or None))
        self.rescan.on_click(lambda _b: self.refresh_files())

    # -- loading a task ---------------------------------------------------------------------------
    def load(self, task: dict | None, others: list[dict], problems: list = ()) -> None:
        """Show `task` (None: an empty form); `others` are the tasks it may depend on."""
        self.task = task
        self.others = [t for t in others if t is not task]
        self._loading = True
        try:
            if task is None:
                self.children = [widgets.HTML('<i style="color:#78909c">No task selected: add one with '
                                              '<b>+ Add task</b>.</i>')]
                return
            kind = task_kind(task)
            options = kind_menu()
            if kind.startswith("other:"):
                options.append((kind.split(":", 1)[1] + " (not run by nbjobs)", kind))
            self.kind.options = options
            self.key.value = str(task.get("task_key") or "")
            self.kind.value = kind
            self.description.value = str(task.get("description") or "")
            run_if = task.get("run_if") or "ALL_SUCCESS"
            self.run_if.value = run_if if run_if in RUN_IFS else "ALL_SUCCESS"
            self.max_retries.value = _int_or_none(task.get("max_retries")) or 0
            self.retry_interval.value = _int_or_none(task.get("min_retry_interval_millis")) or 0
            self.retry_on_timeout.value = bool(task.get("retry_on_timeout"))
            self.timeout.value = _int_or_none(task.get("timeout_seconds")) or 0
            self.disabled.value = bool(task.get("disabled"))
            compute = next((c for _, c in COMPUTE[1:] if task.get(c)), "")
            self.compute_kind.value = compute
            self.compute_value.value = str(task.get(compute) or "") if compute else ""
            self._load_kind(task, kind)
            self._load_deps()
            self.show_problems(problems)
            W = widgets
            retry_row = W.HBox([self.max_retries, self.retry_interval])
            more_row = W.HBox([self.retry_on_timeout, self.timeout])
            compute_row = W.HBox([self.compute_kind, self.compute_value])
            deps_label = W.HTML('<span style="font-size:12px;color:#546e7a">depends on</span>')
            self.children = [self.key, self.kind, self.kind_box, self.description, deps_label, self.deps_box,
                             self.run_if, retry_row, more_row, compute_row, self.disabled, self.problems]
        finally:
            self._loading = False

    def _load_file_task(self, task: dict, kind: str) -> None:
        """The path and parameters of a notebook or Python script task (or a for-each's inner task)."""
        if kind == "python":
            py = task.get("spark_python_task") or {}
            self.path.description, self.path.value = "script", str(py.get("python_file") or "")
            self.params.description, self.params.placeholder = "arguments", "one argument per line"
            self.params.value = lines_text(py.get("parameters"))
        else:
            nb = task.get("notebook_task") or {}
            self.path.description, self.path.value = "notebook", str(nb.get("notebook_path") or "")
            self.params.description, self.params.placeholder = "parameters", "name=value, one per line"
            self.params.value = pairs_text(nb.get("base_parameters"))

    def _load_kind(self, task: dict, kind: str) -> None:
        if kind in ("notebook", "python"):
            self._load_file_task(task, kind)
            self.kind_box.children = [self.path_row, self.params]
        elif kind == "condition":
            cond = task.get("condition_task") or {}
            self.left.value = str(cond.get("left") or "")
            self.op.value = cond.get("op") if cond.get("op") in dict(OPS).values() else "EQUAL_TO"
            self.right.value = str(cond.get("right") or "")
            self.kind_box.children = [self.left, self.op, self.right]
        elif kind == "for_each":
            each = task.get("for_each_task") or {}
            inner = each.get("task") or {}
            self.inputs.value = str(each.get("inputs") or "")
            self.concurrency.value = _int_or_none(each.get("concurrency")) or 1
            inner_kind = "python" if inner.get("spark_python_task") is not None else "notebook"
            self.inner_kind.value = inner_kind
            self._load_file_task(inner, inner_kind)
            self.params.placeholder = "use {{input}} for the current item"
            self.kind_box.children = [self.inputs, self.concurrency, self.inner_kind, self.path_row, self.params]
        elif kind == "run_job":
            rj = task.get("run_job_task") or {}
            self.job_id.value = str(rj.get("job_id") or "")
            self.params.description = "job params"
            self.params.placeholder = "name=value, one per line"
            self.params.value = pairs_text(rj.get("job_parameters"))
            self.kind_box.children = [self.job_id, self.params]
        elif kind.startswith("other:"):
            self.kind_box.children = [widgets.HTML(
                f'<span style="font-size:12px;color:#e65100">{kind.split(":", 1)[1]}: nbjobs keeps this task as '
                f'written but cannot run it locally (disable it, or change its kind).</span>')]
        else:  # a plug-in kind: its payload as JSON
            self.payload.description = task_field(kind) or "payload"
            self.payload.value = json.dumps(task.get(task_field(kind)) or {}, indent=1, ensure_ascii=False)
            self.payload_message.value = ""
            self.kind_box.children = [self.payload, self.payload_message]
        if self.kind_box.children and self.kind_box.children[0] is self.path_row:
            self.refresh_files()
        elif kind == "for_each":
            self.refresh_files()

    def _load_deps(self) -> None:
        task = self.task
        current = {}
        for dep in task.get("depends_on") or []:
            if isinstance(dep, dict):
                current[str(dep.get("task_key"))] = dep.get("outcome")
        rows = []
        self._outcomes: dict[str, widgets.Dropdown] = {}
        for other in self.others:
            key = str(other.get("task_key") or "")
            if not key:
                continue
            box = widgets.Checkbox(value=key in current, description=key, indent=False,
                                   layout=widgets.Layout(width="auto"))
            box.add_class("nbjobs-dep")
            box.add_class(f"nbjobs-dep-{key}")
            box.observe(lambda ch, k=key: self._toggle_dep(k, ch["new"]), "value")
            row = [box]
            if task_kind(other) == "condition":
                value = "true"
                if key in current:
                    value = "" if current[key] is None else str(current[key]).lower()
                outcome = widgets.Dropdown(options=[("true", "true"), ("false", "false"), ("any", "")],
                                           value=value if value in ("true", "false", "") else "true",
                                           layout=widgets.Layout(width="80px"))
                outcome.add_class("nbjobs-dep-outcome")
                outcome.add_class(f"nbjobs-dep-outcome-{key}")
                self._outcomes[key] = outcome
                outcome.observe(lambda ch, k=key: self._set_outcome(k, ch["new"]), "value")
                row.append(outcome)
            rows.append(widgets.HBox(row, layout=widgets.Layout(margin="0 14px 0 0", width="auto")))
        if not rows:
            rows = [widgets.HTML('<span style="font-size:11px;color:#90a4ae">(no other task)</span>')]
        self.deps_box.children = rows

    def show_problems(self, problems: Iterable) -> None:
        problems = list(problems)
        if not problems:
            self.problems.value = ""
            return
        items = "".join(f"<li>{_esc(p.path.split(')', 1)[-1].lstrip('.') or 'task')}: {_esc(p.message)}</li>"
                        for p in problems)
        self.problems.value = (f'<ul style="color:#c62828;font-size:11px;margin:2px 0;padding-left:18px">'
                               f'{items}</ul>')

    def refresh_files(self) -> None:
        try:
            self.path.options = self._files()
        except OSError:
            pass

    # -- edits ----------------------------------------------------------------------------------
    def _bind(self, widget, setter, structural: bool = True) -> None:
        def handler(change):
            if self._loading or self.task is None:
                return
            setter(change["new"])
            self._on_change(structural)
        widget.observe(handler, "value")

    def _set_field(self, name: str, value: Any) -> None:
        if value is None or value == "":
            self.task.pop(name, None)
        else:
            self.task[name] = value

    def _set_key(self, value: str) -> None:
        old = self.task.get("task_key")
        new = (value or "").strip()
        self.task["task_key"] = new
        if old and new and old != new:
            rename_task(self.others + [self.task], old, new)

    def _payload(self, field: str) -> dict:
        payload = self.task.get(field)
        if not isinstance(payload, dict):
            payload = self.task[field] = {}
        return payload

    def _set_payload(self, field: str, name: str, value: Any) -> None:
        payload = self._payload(field)
        if value is None or value == "":
            payload.pop(name, None)
        else:
            payload[name] = value

    def _set_kind(self, kind: str) -> None:
        old_kind = task_kind(self.task)
        if kind == old_kind:
            return
        path = self.path.value
        for field in [k.field for k in kinds()] + [task_field(old_kind)]:
            self.task.pop(field, None)
        key = self.task.get("task_key") or "task"
        fields = {"notebook": {"notebook_path": path}, "python": {"python_file": path},
                  "for_each": {"notebook_path": path}}.get(kind, {})
        fresh = new_task([], kind, key, **fields)
        field = task_field(kind)
        self.task[field] = fresh[field]
        self._loading = True
        try:
            self._load_kind(self.task, kind)
        finally:
            self._loading = False

    def _set_json_payload(self, text: str) -> None:
        field = task_field(task_kind(self.task))
        try:
            value = json.loads(text or "{}")
        except ValueError as exc:
            self.payload_message.value = f'<span style="font-size:11px;color:#c62828">not JSON: {_esc(exc)}</span>'
            return
        if not isinstance(value, dict):
            self.payload_message.value = '<span style="font-size:11px;color:#c62828">a JSON object {...}</span>'
            return
        self.payload_message.value = ""
        self.task[field] = value

    def _inner(self) -> dict:
        each = self._payload("for_each_task")
        inner = each.get("task")
        if not isinstance(inner, dict):
            inner = each["task"] = {"task_key": f"{self.task.get('task_key') or 'task'}_iteration"}
        return inner

    def _set_inner_kind(self, inner_kind: str) -> None:
        inner = self._inner()
        path = self.path.value
        inner.pop("notebook_task", None)
        inner.pop("spark_python_task", None)
        if inner_kind == "python":
            inner["spark_python_task"] = {"python_file": path, "parameters": parse_lines(self.params.value)}
        else:
            inner["notebook_task"] = {"notebook_path": path, "base_parameters": parse_pairs(self.params.value)}
        self._loading = True
        try:
            self._load_kind(self.task, "for_each")
        finally:
            self._loading = False

    def _set_path(self, value: str) -> None:
        kind = task_kind(self.task)
        target = self._inner() if kind == "for_each" else self.task
        inner_kind = self.inner_kind.value if kind == "for_each" else kind
        if inner_kind == "python":
            target.setdefault("spark_python_task", {})["python_file"] = value.strip()
        elif inner_kind == "notebook":
            target.setdefault("notebook_task", {})["notebook_path"] = value.strip()

    def _set_params(self, text: str) -> None:
        kind = task_kind(self.task)
        if kind == "notebook":
            self._set_payload("notebook_task", "base_parameters", parse_pairs(text) or None)
        elif kind == "python":
            self._set_payload("spark_python_task", "parameters", parse_lines(text) or None)
        elif kind == "run_job":
            self._set_payload("run_job_task", "job_parameters", parse_pairs(text) or None)
        elif kind == "for_each":
            inner = self._inner()
            if self.inner_kind.value == "python":
                inner.setdefault("spark_python_task", {})["parameters"] = parse_lines(text)
            else:
                inner.setdefault("notebook_task", {})["base_parameters"] = parse_pairs(text)

    def _set_compute(self) -> None:
        for _, name in COMPUTE[1:]:
            self.task.pop(name, None)
        if self.compute_kind.value and self.compute_value.value.strip():
            self.task[self.compute_kind.value] = self.compute_value.value.strip()

    def _toggle_dep(self, key: str, on: bool) -> None:
        if self._loading or self.task is None:
            return
        deps = [d for d in self.task.get("depends_on") or [] if not (isinstance(d, dict) and d.get("task_key") == key)]
        if on:
            dep = {"task_key": key}
            outcome = self._outcomes.get(key)
            if outcome is not None and outcome.value:
                dep["outcome"] = outcome.value
            deps.append(dep)
        if deps:
            self.task["depends_on"] = deps
        else:
            self.task.pop("depends_on", None)
        self._on_change(True)

    def _set_outcome(self, key: str, outcome: str) -> None:
        if self._loading or self.task is None:
            return
        for dep in self.task.get("depends_on") or []:
            if isinstance(dep, dict) and dep.get("task_key") == key:
                if outcome:
                    dep["outcome"] = outcome
                else:
                    dep.pop("outcome", None)
        self._on_change(True)
