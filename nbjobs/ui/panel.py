"""`JobPanel`: build a job interactively, watch its runs live on the DAG, repair and cancel them.

A thin client: validation is `nbjobs.spec.validate_job_settings`, every action a call of the
service (a `Workspace`, or an `nbjobs.connect` client; see `nbjobs.ui.use`). Runs execute in the
background; a monitor thread redraws the graph from RunEvents and a light poll of runs/get.
"""
from __future__ import annotations

import concurrent.futures
import copy
import functools
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import ipywidgets as widgets

from ..spec import validate_job_settings
from .client import accepts, call, default_client, lab_path
from .details import (esc, history_label, message_html, problems_html, run_summary, task_details_html)
from .editor import (TaskForm, graph_tasks, new_task, params_text, pairs_text, parse_pairs, parse_params,
                     problem_task_index, rename_task, source_files, task_kind)
from .graph import DagGraph
from .monitor import RunMonitor
from .states import is_active, progress, ui_state

_FAILED = ("failed", "timed_out", "canceled", "upstream_failed", "upstream_canceled")
_PATH_FIELDS = (("notebook_task", "notebook_path"), ("spark_python_task", "python_file"))


def _guard(fn: Callable) -> Callable:
    """A button handler: errors become a red status line (never a traceback in the log)."""
    @functools.wraps(fn)
    def wrapper(self: JobPanel, *args: Any, **kwargs: Any) -> Any:
        from ..spec import JobDefinitionError
        try:
            return fn(self, *args, **kwargs)
        except JobDefinitionError as exc:
            self._problems = list(exc.problems)
            self.problems_html.value = problems_html(self._problems)
            self.status(f"The job definition has {len(exc.problems)} problem(s); see the list below.", "error")
        except Exception as exc:  # shown to the user, who can act on it
            self.status(f"{exc}" if str(exc) else type(exc).__name__, "error")
    return wrapper


def _background(fn: Callable) -> Callable:
    """A button handler that calls the service: it runs on the panel's worker thread, so the kernel
    is free at once (saving, starting and the first imports can take a moment)."""
    @functools.wraps(fn)
    def wrapper(self: JobPanel, *args: Any, **kwargs: Any) -> None:
        self.status("Working…")
        self._submit(fn, self, *args, **kwargs)
    return wrapper


def _rebase(settings: dict, old: Path, new: Path, *, absolute_inside_only: bool = False) -> dict:
    """A copy of `settings` whose relative task paths are relative to `new` instead of `old`
    (with `absolute_inside_only`: absolute paths under `new` become relative, others stay)."""
    out = copy.deepcopy(settings)

    def fix(task: Any) -> None:
        if not isinstance(task, dict):
            return
        for field, name in _PATH_FIELDS:
            payload = task.get(field)
            if isinstance(payload, dict) and isinstance(payload.get(name), str) and payload[name]:
                value = payload[name]
                if absolute_inside_only:
                    if os.path.isabs(value):
                        try:
                            payload[name] = Path(value).relative_to(new).as_posix()
                        except ValueError:
                            pass
                elif not os.path.isabs(value) and ":" not in value.split("/")[0]:
                    payload[name] = Path(os.path.relpath(old / value, new)).as_posix()
        each = task.get("for_each_task")
        if isinstance(each, dict):
            fix(each.get("task"))

    for task in out.get("tasks") or []:
        fix(task)
    return out


def read_job_file(path: str | os.PathLike) -> dict:
    """The JobSettings dict of a JSON/YAML job file as written (a bundle is loaded and resolved)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml
        data = yaml.safe_load(text)
    if isinstance(data, dict) and ("resources" in data or "bundle" in data):
        from ..spec import load_job
        loaded = load_job(path)
        return _rebase(loaded.settings.to_dict(), path.parent, path.parent.resolve(), absolute_inside_only=True)
    if isinstance(data, dict) and isinstance(data.get("settings"), dict) and "tasks" not in data:
        data = data["settings"]  # a jobs/get answer
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a job file holds a map of JobSettings fields (name:, tasks: ...)")
    return data


class JobPanel(widgets.VBox):
    """Build, run, watch and repair a job.

    `job`: None (a new job), a job file (JSON/YAML/bundle), a JobSettings dict or model, or the id of
    a registered job. `client`: a `Workspace` or an `nbjobs.connect` client (default: `nbjobs.ui.use`'s,
    else the workspace of `$NBJOBS_HOME`). `run_id`: a run to show.
    """

    def __init__(self, job: Any = None, *, client: Any = None, base_dir: str | os.PathLike | None = None,
                 run_id: int | None = None, name: str | None = None, poll_interval: float = 0.5):
        self.client = client if client is not None else default_client()
        self.base_dir = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
        self.source_path: Path | None = None
        self.job_id: int | None = None
        self.settings: dict = {"name": "Untitled", "tasks": []}
        self._set_job(job)
        if name:
            self.settings["name"] = name
        self._lock = threading.RLock()
        self._problems: list = []
        self._graph_source: list = []
        self._selected: int | None = 0 if self.settings.get("tasks") else None
        self._run: dict | None = None
        self._run_structure = False
        self._detail_key: str | None = None
        self._outputs: dict[int, dict] = {}
        self._saved: dict | None = None
        self._history_guard = False
        self._list_guard = False
        self._job_form_loading = False
        self.monitor = RunMonitor(self.client.get_run, self._on_run_update, interval=poll_interval)
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._build()
        self._changed(structural=True)
        self._refresh_history()
        if run_id is not None:
            self.show_run(run_id)

    @classmethod
    def for_run(cls, run_id: int, *, client: Any = None, **kwargs: Any) -> JobPanel:
        """A panel on the job of `run_id`, showing that run."""
        client = client if client is not None else default_client()
        run = client.get_run(int(run_id))
        job: Any = run.get("job_id")
        if job is None:
            job = {"name": run.get("run_name") or "Untitled", "tasks": [_task_settings(t) for t in run["tasks"]]}
        else:
            try:
                client.get_job(job)
            except Exception:  # the job was deleted: rebuild it from the run
                job = {"name": run.get("run_name") or "Untitled",
                       "tasks": [_task_settings(t) for t in run["tasks"]]}
        return cls(job, client=client, run_id=run["run_id"], **kwargs)

    # -- loading --------------------------------------------------------------------------------
    def _set_job(self, job: Any) -> None:
        from ..spec import JobSettings
        if job is None:
            return
        if isinstance(job, bool):
            raise TypeError("job must be a path, a dict, a JobSettings or a job id")
        if isinstance(job, int) or (isinstance(job, str) and job.isdigit()):
            data = self.client.get_job(int(job))
            self.job_id = int(data["job_id"])
            self.settings = _rebase(data["settings"], self.base_dir, self.base_dir, absolute_inside_only=True)
            self.source_path = None
        elif isinstance(job, (str, os.PathLike)):
            path = Path(job)
            if not path.is_absolute():
                path = (self.base_dir / path) if not path.exists() else path.resolve()
            self.settings = read_job_file(path)
            self.base_dir = path.resolve().parent
            self.source_path = path.resolve()
        elif isinstance(job, JobSettings):
            self.settings = job.to_dict()
        elif isinstance(job, Mapping):
            self.settings = copy.deepcopy(dict(job))
        else:
            raise TypeError(f"JobPanel(job=...): expected a job file, a JobSettings dict or a job id, "
                            f"not {type(job).__name__}")
        self.settings.setdefault("name", "Untitled")
        if not isinstance(self.settings.get("tasks"), list):
            self.settings["tasks"] = []

    # -- widgets --------------------------------------------------------------------------------
    def _build(self) -> None:
        W = widgets

        def button(text, cls, handler, *, icon="", style="", tooltip=""):
            b = W.Button(description=text, icon=icon, button_style=style, tooltip=tooltip,
                         layout=W.Layout(width="auto"))
            b.add_class(cls)
            b.on_click(lambda _b: handler())
            return b

        self.title = W.HTML("")
        self.title.add_class("nbjobs-title")
        self.run_button = button("Run", "nbjobs-run", self._click_run, icon="play", style="success",
                                 tooltip="save the job and run it (in the background)")
        self.run_params_button = button("Run with parameters…", "nbjobs-run-params", self._toggle_params)
        self.repair_button = button("Repair failed", "nbjobs-repair", self._click_repair_failed, icon="wrench",
                                    style="warning", tooltip="rerun the failed tasks and the tasks after them")
        self.repair_tasks_button = button("Repair tasks…", "nbjobs-repair-tasks", self._toggle_repair)
        self.cancel_button = button("Cancel", "nbjobs-cancel", self._click_cancel, icon="stop", style="danger")
        self.history = W.Dropdown(options=[], description="run", layout=W.Layout(width="300px"),
                                  style={"description_width": "28px"})
        self.history.add_class("nbjobs-history")
        self.history.observe(self._history_changed, "value")
        self.status_html = W.HTML("")
        self.status_html.add_class("nbjobs-status")
        toolbar = W.HBox([self.run_button, self.run_params_button, self.repair_button, self.repair_tasks_button,
                          self.cancel_button, self.history], layout=W.Layout(flex_flow="row wrap"))

        # run with parameters / repair chosen tasks
        self.params_box = W.VBox([], layout=W.Layout(display="none", border="1px solid #e0e0e0",
                                                     padding="4px", margin="2px 0"))
        self.params_box.add_class("nbjobs-params-box")
        self.repair_select = W.SelectMultiple(options=[], rows=6, description="rerun",
                                              layout=W.Layout(width="300px"), style={"description_width": "40px"})
        self.repair_select.add_class("nbjobs-repair-select")
        self.repair_dependents = W.Checkbox(value=True, description="also rerun the tasks after them", indent=False)
        self.repair_params = W.Textarea(placeholder="job parameters for the repair: name=value per line "
                                                    "(optional)", layout=W.Layout(width="300px", height="52px"))
        self.repair_params.add_class("nbjobs-repair-params")
        self.repair_box = W.HBox([self.repair_select, W.VBox([
            self.repair_dependents, self.repair_params,
            button("Start repair", "nbjobs-start-repair", self._click_repair_chosen, icon="wrench",
                   style="warning")])],
            layout=W.Layout(display="none", border="1px solid #e0e0e0", padding="4px", margin="2px 0"))
        self.repair_box.add_class("nbjobs-repair-box")

        # editor: task list + forms
        self.task_list = W.Select(options=[], rows=7, layout=W.Layout(width="98%"))
        self.task_list.add_class("nbjobs-task-list")
        self.task_list.observe(self._list_changed, "value")
        small = W.Layout(width="auto")
        list_buttons = W.HBox([
            button("+ Add task", "nbjobs-add-task", self._click_add),
            button("Remove", "nbjobs-remove-task", self._click_remove, icon="trash"),
            button("", "nbjobs-move-up", lambda: self._click_move(-1), icon="arrow-up", tooltip="move up"),
            button("", "nbjobs-move-down", lambda: self._click_move(1), icon="arrow-down", tooltip="move down"),
        ], layout=small)
        self.form = TaskForm(self._form_changed, lambda: source_files(self.base_dir))
        full = W.Layout(width="98%")
        st = {"description_width": "88px"}
        self.job_name = W.Text(description="job name", continuous_update=False, layout=full, style=st)
        self.job_name.add_class("nbjobs-job-name")
        self.job_description = W.Textarea(description="description", continuous_update=False,
                                          layout=W.Layout(width="98%", height="48px"), style=st)
        self.job_params = W.Textarea(description="parameters", placeholder="name=default, one per line",
                                     continuous_update=False, layout=W.Layout(width="98%", height="90px"), style=st)
        self.job_params.add_class("nbjobs-job-params")
        self.job_tags = W.Textarea(description="tags", placeholder="key=value (or a key alone), one per line",
                                   continuous_update=False, layout=W.Layout(width="98%", height="64px"), style=st)
        self.job_tags.add_class("nbjobs-job-tags")
        for w in (self.job_name, self.job_description, self.job_params, self.job_tags):
            w.observe(self._job_form_changed, "value")
        job_box = W.VBox([self.job_name, self.job_description, self.job_params, self.job_tags])
        self.file_path = W.Text(description="file", continuous_update=True, layout=full, style=st,
                                placeholder="job.yml or job.json (relative to the base folder)")
        self.file_path.add_class("nbjobs-file-path")
        self.file_message = W.HTML("")
        file_box = W.VBox([
            self.file_path,
            W.HBox([button("Export YAML", "nbjobs-export-yaml", lambda: self._click_export("yaml"), icon="download"),
                    button("Export JSON", "nbjobs-export-json", lambda: self._click_export("json"), icon="download"),
                    button("Load", "nbjobs-load", self._click_load, icon="upload")]),
            self.file_message])
        self.yaml_view = W.HTML("")
        self.yaml_view.add_class("nbjobs-yaml")
        self.tabs = W.Tab(children=[self.form, job_box, file_box, self.yaml_view])
        for i, title in enumerate(("Task", "Job", "File", "YAML")):
            self.tabs.set_title(i, title)
        left = W.VBox([self.task_list, list_buttons, self.tabs], layout=W.Layout(width="42%", min_width="340px"))

        self.graph = DagGraph(on_node_click=self._node_clicked)
        self.details = W.HTML('<i style="color:#90a4ae;font-size:12px">Click a task in the graph for its '
                              'details.</i>')
        self.details.add_class("nbjobs-details")
        right = W.VBox([self.graph, self.details], layout=W.Layout(width="58%", padding="0 0 0 8px"))
        self.problems_html = W.HTML("")
        self.problems_html.add_class("nbjobs-problems-box")
        super().__init__([self.title, toolbar, self.status_html, self.params_box, self.repair_box,
                          W.HBox([left, right], layout=W.Layout(width="100%")), self.problems_html])
        self.add_class("nbjobs-panel")
        self._load_job_form()
        if self.source_path is not None:
            self.file_path.value = self._display_path(self.source_path)
        else:
            self.file_path.value = f"{_slug(self.settings.get('name'))}.yml"

    # -- the model ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.settings.get("name") or "Untitled")

    @property
    def tasks(self) -> list[dict]:
        return self.settings.setdefault("tasks", [])

    @property
    def task_keys(self) -> list[str]:
        return [str(t.get("task_key")) for t in self.tasks if isinstance(t, dict)]

    @property
    def problems(self) -> list:
        """The problems of the current definition (`Problem(path, message, fix)`), as shown."""
        return list(self._problems)

    @property
    def run_id(self) -> int | None:
        """The run the graph shows."""
        return self._run["run_id"] if self._run else None

    @property
    def states(self) -> dict[str, str]:
        """{task_key: node state} as drawn."""
        return self.graph.states

    def to_dict(self) -> dict:
        return copy.deepcopy(self.settings)

    def to_yaml(self) -> str:
        import yaml
        return yaml.safe_dump(self.settings, sort_keys=False, allow_unicode=True, width=100)

    def to_json(self) -> str:
        return json.dumps(self.settings, indent=2, ensure_ascii=False)

    def _task_index(self, key: str) -> int:
        for i, task in enumerate(self.tasks):
            if isinstance(task, dict) and task.get("task_key") == key:
                return i
        raise KeyError(f"job '{self.name}' has no task '{key}' (tasks: {', '.join(self.task_keys) or 'none'})")

    def task(self, key: str) -> dict:
        return self.tasks[self._task_index(key)]

    def add_task(self, kind: str = "notebook", key: str | None = None, **fields: Any) -> str:
        """Add a task (kind: notebook, python, condition, for_each, run_job) and select it."""
        task = new_task(self.task_keys, kind, key, **fields)
        self.tasks.append(task)
        self._selected = len(self.tasks) - 1
        self._changed(structural=True)
        return task["task_key"]

    def remove_task(self, key: str) -> None:
        """Remove a task and the dependencies on it."""
        index = self._task_index(key)
        del self.tasks[index]
        for task in self.tasks:
            deps = [d for d in task.get("depends_on") or [] if not (isinstance(d, dict) and d.get("task_key") == key)]
            if deps:
                task["depends_on"] = deps
            else:
                task.pop("depends_on", None)
        self._selected = min(index, len(self.tasks) - 1) if self.tasks else None
        self._changed(structural=True)

    def move_task(self, key: str, offset: int) -> None:
        """Move a task up (negative) or down the list."""
        index = self._task_index(key)
        new = max(0, min(len(self.tasks) - 1, index + offset))
        self.tasks.insert(new, self.tasks.pop(index))
        self._selected = new
        self._changed(structural=True)

    def update_task(self, key: str, **fields: Any) -> None:
        """Set fields of a task (None removes one), e.g. `update_task("t", run_if="ALL_DONE")`."""
        task = self.task(key)
        new_key = fields.get("task_key")
        for name, value in fields.items():
            if value is None:
                task.pop(name, None)
            else:
                task[name] = copy.deepcopy(value)
        if new_key and new_key != key:
            rename_task(self.tasks, key, new_key)
        self._changed(structural=True)

    def depend(self, key: str, upstream: str, outcome: str | bool | None = None) -> None:
        """Make `key` depend on `upstream` (with `outcome` "true"/"false" after a condition task)."""
        task = self.task(key)
        deps = [d for d in task.get("depends_on") or [] if not (isinstance(d, dict) and d.get("task_key") == upstream)]
        dep: dict[str, Any] = {"task_key": upstream}
        if outcome is not None:
            dep["outcome"] = str(outcome).lower()
        task["depends_on"] = deps + [dep]
        self._changed(structural=True)

    def undepend(self, key: str, upstream: str) -> None:
        task = self.task(key)
        deps = [d for d in task.get("depends_on") or [] if not (isinstance(d, dict) and d.get("task_key") == upstream)]
        if deps:
            task["depends_on"] = deps
        else:
            task.pop("depends_on", None)
        self._changed(structural=True)

    def set_parameters(self, parameters: Mapping[str, str]) -> None:
        """The job parameters as {name: default}."""
        if parameters:
            self.settings["parameters"] = [{"name": k, "default": str(v)} for k, v in parameters.items()]
        else:
            self.settings.pop("parameters", None)
        self._load_job_form()
        self._changed(structural=False)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if tags:
            self.settings["tags"] = {k: "" if v is None else str(v) for k, v in tags.items()}
        else:
            self.settings.pop("tags", None)
        self._load_job_form()
        self._changed(structural=False)

    def rename(self, name: str) -> None:
        self.settings["name"] = name
        self.job_id = None  # another name is another job (jobs are saved by name)
        self._load_job_form()
        self._changed(structural=False)
        self._refresh_history()

    def select_task(self, key: str) -> None:
        """Show a task in the form (and mark it in the graph)."""
        self._selected = self._task_index(key)
        self._refresh_task_list()
        self._load_form()
        self._render_graph()

    def export(self, path: str | os.PathLike, fmt: str | None = None) -> Path:
        """Write the job to a YAML or JSON file (by extension, or `fmt`); relative task paths are
        rewritten relative to the file's folder. Returns the absolute path."""
        target = Path(path)
        if not target.is_absolute():
            target = self.base_dir / target
        fmt = fmt or ("json" if target.suffix.lower() == ".json" else "yaml")
        settings = _rebase(self.settings, self.base_dir, target.resolve().parent)
        if fmt == "json":
            text = json.dumps(settings, indent=2, ensure_ascii=False) + "\n"
        else:
            import yaml
            text = yaml.safe_dump(settings, sort_keys=False, allow_unicode=True, width=100)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target.resolve()

    def load(self, path: str | os.PathLike) -> None:
        """Replace the definition with a job file's (its folder becomes the base folder)."""
        target = Path(path)
        if not target.is_absolute():
            target = self.base_dir / target
        settings = read_job_file(target)
        self.settings = settings
        self.settings.setdefault("name", "Untitled")
        if not isinstance(self.settings.get("tasks"), list):
            self.settings["tasks"] = []
        self.base_dir = target.resolve().parent
        self.source_path = target.resolve()
        self.job_id = None
        self._saved = None
        self._selected = 0 if self.tasks else None
        self._load_job_form()
        self._changed(structural=True)
        self._refresh_history()

    # -- service calls --------------------------------------------------------------------------
    def save(self) -> int:
        """Register the job (create it, or update the one with the same name); returns its id.
        Raises JobDefinitionError when the definition has problems."""
        from ..spec import JobDefinitionError
        if self._problems:
            raise JobDefinitionError(self._problems)
        if self.job_id is not None and self._saved == self.settings:
            return self.job_id
        snapshot = copy.deepcopy(self.settings)
        job_id, created = call(self.client.save_job, copy.deepcopy(snapshot), base_dir=self.base_dir,
                               source_path=str(self.source_path) if self.source_path else None)
        self.job_id = int(job_id)
        self._saved = snapshot
        self._render_title()
        self.status(f"{'Registered' if created else 'Updated'} job {self.job_id} '{self.name}'.", "ok")
        return self.job_id

    def run(self, params: Mapping[str, str] | None = None) -> int:
        """Save and start a run in the background; returns its run_id at once."""
        job_id = self.save()
        _warm_imports(self.client)
        run_now = self.client.run_now
        kwargs: dict[str, Any] = {"wait": False}
        if accepts(run_now, "on_event"):
            kwargs["on_event"] = self.monitor.wake
        started = run_now(job_id, {str(k): str(v) for k, v in (params or {}).items()} or None, **kwargs)
        run_id = int(started["run_id"])
        self.status(f"Run {run_id} started.", "ok")
        self.show_run(run_id)
        self._refresh_history()
        return run_id

    def repair(self, run_id: int | None = None, *, tasks: Iterable[str] | None = None,
               rerun_dependents: bool = True, params: Mapping[str, str] | None = None) -> int:
        """Repair a finished run: the failed tasks (default) or `tasks`, in the background.
        Saves the definition first: a repair runs the job's current settings. Returns the repair id."""
        run_id = int(run_id if run_id is not None else self._require_run())
        if not hasattr(self.client, "repair_run"):
            raise NotImplementedError("this workspace cannot repair runs")
        if self._problems:
            from ..spec import JobDefinitionError
            raise JobDefinitionError(self._problems)
        run = self.client.get_run(run_id)
        if run.get("job_id") is not None and self.job_id in (None, run.get("job_id")):
            self.save()
        latest = [r.get("id") for r in run.get("repair_history") or [] if r.get("type") == "REPAIR"]
        kwargs: dict[str, Any] = {"wait": False, "rerun_dependent_tasks": bool(rerun_dependents)}
        tasks = list(tasks or [])
        if tasks:
            kwargs["rerun_tasks"] = tasks
        else:
            kwargs["rerun_all_failed_tasks"] = True
        if latest:
            kwargs["latest_repair_id"] = latest[-1]
        if params:
            kwargs["job_parameters"] = {str(k): str(v) for k, v in params.items()}
        _warm_imports(self.client)
        if accepts(self.client.repair_run, "on_event"):
            kwargs["on_event"] = self.monitor.wake
        answer = self.client.repair_run(run_id, **kwargs)
        repair_id = answer.get("repair_id") if isinstance(answer, dict) else None
        what = ", ".join(tasks) if tasks else "the failed tasks"
        self.status(f"Repair {repair_id} of run {run_id} started ({what}).", "ok")
        self.show_run(run_id)
        self._refresh_history()
        return repair_id

    def cancel(self, run_id: int | None = None) -> None:
        """Cancel a run (default: the one shown); it ends CANCELED shortly after."""
        run_id = int(run_id if run_id is not None else self._require_run())
        if not hasattr(self.client, "cancel_run"):
            raise NotImplementedError("this workspace cannot cancel runs")
        self.client.cancel_run(run_id)
        self.status(f"Cancel requested for run {run_id}.", "warn")
        self.monitor.watch(run_id)

    def show_run(self, run_id: int) -> dict:
        """Draw a run (past or active) on the graph; an active one keeps updating."""
        run = self.client.get_run(int(run_id))
        with self._lock:
            self._run = run
            run_tasks = graph_tasks(run.get("tasks") or [])
            self._run_structure = bool(run_tasks) and run_tasks != graph_tasks(self.tasks)
            self._render_run()
        if is_active(run):
            self.monitor.watch(run["run_id"])
        self._select_history(run["run_id"])
        return run

    def wait(self, run_id: int | None = None, timeout: float | None = 300) -> dict:
        """Block until the run ends (for scripts and tests; in a notebook, the panel updates by
        itself). Returns its runs/get JSON."""
        run_id = int(run_id if run_id is not None else self._require_run())
        if hasattr(self.client, "wait"):
            run = call(self.client.wait, run_id, timeout=timeout)
        else:  # pragma: no cover - every client has wait
            run = self.client.get_run(run_id)
        self._on_run_update(self.client.get_run(run_id))
        return run

    def close(self) -> None:
        """Stop following runs and close the widgets (runs go on)."""
        monitor = getattr(self, "monitor", None)
        if monitor is not None:
            monitor.stop()
        if getattr(self, "_worker", None) is not None:
            self._worker.shutdown(wait=False)
        super().close()

    def status(self, text: str, kind: str = "info") -> None:
        self.status_html.value = message_html(text, kind)

    # -- rendering ------------------------------------------------------------------------------
    def _changed(self, structural: bool = True, *, reload_form: bool = True) -> None:
        """After any edit: validate, then redraw what depends on the definition."""
        with self._lock:
            self._problems = validate_job_settings(self.settings, base_dir=self.base_dir)
            self._graph_source = graph_tasks(self.tasks)
            if structural:
                self._run_structure = False
                self._refresh_task_list()
            if structural and reload_form:
                self._load_form()
            else:
                self._form_problems()
            self.problems_html.value = problems_html(self._problems)
            self.yaml_view.value = (f'<pre style="font-size:11px;max-height:420px;overflow:auto;margin:0">'
                                    f'{esc(self.to_yaml())}</pre>')
            self._render_title()
            self._render_graph()
            self._render_buttons()

    def _render_title(self) -> None:
        n = len(self.tasks)
        job = f"job {self.job_id}" if self.job_id is not None else "not registered yet"
        self.title.value = (f'<div style="font-size:14px"><b>{esc(self.name)}</b> '
                            f'<span style="color:#78909c">· {job} · {n} task{"s" if n != 1 else ""}</span></div>')

    def _task_problems(self) -> dict[int, list]:
        out: dict[int, list] = {}
        for problem in self._problems:
            index = problem_task_index(problem.path)
            if index is not None:
                out.setdefault(index, []).append(problem)
        return out

    def _render_graph(self) -> None:
        with self._lock:
            run = self._run
            tasks = graph_tasks(run.get("tasks") or []) if run and self._run_structure else self._graph_source
            states, prog = {}, {}
            if run:
                for t in run.get("tasks") or []:
                    states[t["task_key"]] = ui_state(t)
                    prog[t["task_key"]] = progress(t)
            bad = {self.tasks[i].get("task_key") for i in self._task_problems() if i < len(self.tasks)
                   and isinstance(self.tasks[i], dict)}
            selected = None
            if self._selected is not None and self._selected < len(self.tasks):
                selected = self.tasks[self._selected].get("task_key")
            if run:
                caption = run_summary(run)
                if self._run_structure:
                    caption += (' <span style="color:#ef6c00;font-size:11px">(the tasks of this run; the job '
                                'has changed since)</span>')
            else:
                caption = '<span style="color:#78909c;font-size:12px">Design view: run the job to see states.</span>'
            self.graph.show(tasks, states=states, progress=prog, problems=bad, selected=selected,
                            caption=f'<div style="font-size:12px">{caption}</div>')

    def _render_buttons(self) -> None:
        run = self._run
        active = bool(run) and is_active(run)
        failed = bool(run) and not active and any(ui_state(t) in _FAILED for t in run.get("tasks") or [])
        self.run_button.disabled = bool(self._problems) or not self.tasks
        self.run_button.tooltip = ("fix the problems listed below first" if self._problems
                                   else "save the job and run it (in the background)")
        self.run_params_button.disabled = self.run_button.disabled
        can_repair = hasattr(self.client, "repair_run")
        self.repair_button.disabled = not (failed and can_repair)
        self.repair_tasks_button.disabled = not (run and not active and can_repair)
        self.cancel_button.disabled = not (active and hasattr(self.client, "cancel_run"))
        # a coloured button is one that can be clicked now
        self.run_button.button_style = "" if self.run_button.disabled else "success"
        self.repair_button.button_style = "" if self.repair_button.disabled else "warning"
        self.cancel_button.button_style = "" if self.cancel_button.disabled else "danger"

    def _render_run(self) -> None:
        self._render_graph()
        self._render_buttons()
        if self._detail_key is not None:
            self._render_details()
        if self.repair_box.layout.display != "none":
            self._fill_repair_box()

    def _refresh_task_list(self) -> None:
        options = []
        for i, task in enumerate(self.tasks):
            key = task.get("task_key") if isinstance(task, dict) else None
            kind = task_kind(task) if isinstance(task, dict) else "?"
            options.append((f"{key or '(no key)'}  ·  {kind.replace('other:', '')}", i))
        self._list_guard = True
        try:
            self.task_list.options = options
            self.task_list.value = self._selected if self._selected is not None and options else None
        finally:
            self._list_guard = False

    def _load_form(self) -> None:
        task = self.tasks[self._selected] if self._selected is not None and self._selected < len(self.tasks) else None
        problems = self._task_problems().get(self._selected, []) if task is not None else []
        self.form.load(task, [t for t in self.tasks if isinstance(t, dict)], problems)

    def _form_problems(self) -> None:
        self.form.show_problems(self._task_problems().get(self._selected, []) if self._selected is not None else [])

    def _load_job_form(self) -> None:
        self._job_form_loading = True
        try:
            self.job_name.value = self.name
            self.job_description.value = str(self.settings.get("description") or "")
            self.job_params.value = params_text(self.settings.get("parameters"))
            self.job_tags.value = pairs_text(self.settings.get("tags"))
        finally:
            self._job_form_loading = False

    def _render_details(self) -> None:
        key = self._detail_key
        run = self._run
        task = next((t for t in (run or {}).get("tasks") or [] if t.get("task_key") == key), None)
        if task is None:
            where = f"run {run['run_id']}" if run else "no run is shown"
            self.details.value = (f'<div class="nbjobs-task-details" data-task="{esc(key)}" data-state="none" '
                                  f'style="font-size:12px"><b>{esc(key)}</b>: not part of {where}. '
                                  f'Run the job to see its state here.</div>')
            return
        output = values = link = file_path = None
        terminal = not is_active(task)
        if terminal:
            output = self._outputs.get(task["run_id"])
            if output is None:
                try:
                    output = self.client.get_run_output(task["run_id"])
                except Exception:
                    output = {}
                self._outputs[task["run_id"]] = output
        page = task.get("run_page_url") or ""
        if page.startswith("file://"):
            from urllib.parse import unquote, urlparse
            file_path = unquote(urlparse(page).path)
            link = lab_path(file_path)
            from ..kernel.context import read_values
            try:
                values = read_values(Path(file_path).parent)
            except (OSError, ValueError):
                values = None
        self.details.value = task_details_html(task, output=output, values=values, link=link, file_path=file_path)

    # -- run updates (monitor thread) ------------------------------------------------------------
    def _on_run_update(self, run: dict) -> None:
        with self._lock:
            if self._run is not None and self._run["run_id"] == run["run_id"]:
                self._run = run
                self._render_run()
        if not is_active(run):
            self._refresh_history()

    def _refresh_history(self) -> None:
        """The run selector: this job's runs, newest first (and the run shown)."""
        try:
            if self.job_id is None:
                jobs = self.client.list_jobs(name=self.name)
                if jobs:
                    self.job_id = int(jobs[0]["job_id"])
                    self._render_title()
            runs = self.client.list_runs(job_id=self.job_id, limit=30) if self.job_id is not None else []
        except Exception:
            runs = []
        with self._lock:
            options = [(history_label(r), r["run_id"]) for r in runs]
            shown = self._run["run_id"] if self._run else None
            if shown is not None and shown not in [v for _, v in options]:
                options.insert(0, (history_label(self._run), shown))
            if list(self.history.options) == options and self.history.value == shown:
                return
            self._history_guard = True
            try:
                self.history.options = options
                self.history.value = shown if shown in [v for _, v in options] else None
            finally:
                self._history_guard = False

    def _select_history(self, run_id: int) -> None:
        with self._lock:
            if run_id in [v for _, v in self.history.options]:
                self._history_guard = True
                try:
                    self.history.value = run_id
                finally:
                    self._history_guard = False
            else:
                self._refresh_history()

    # -- widget handlers --------------------------------------------------------------------------
    def _form_changed(self, structural: bool) -> None:
        self._changed(structural, reload_form=False)

    def _job_form_changed(self, change: dict) -> None:
        if getattr(self, "_job_form_loading", False):
            return
        renamed = self.job_name.value.strip() != self.name
        self.settings["name"] = self.job_name.value.strip() or "Untitled"
        for field, value in (("description", self.job_description.value.strip()),
                             ("parameters", parse_params(self.job_params.value)),
                             ("tags", parse_pairs(self.job_tags.value))):
            if value:
                self.settings[field] = value
            else:
                self.settings.pop(field, None)
        if renamed:
            self.job_id = None
        self._changed(structural=False)
        if renamed:
            self._refresh_history()

    def _list_changed(self, change: dict) -> None:
        if self._list_guard or change["new"] is None:
            return
        self._selected = change["new"]
        self._load_form()
        self._render_graph()

    def _history_changed(self, change: dict) -> None:
        if self._history_guard or change["new"] is None:
            return
        self._guarded_show(change["new"])

    @_guard
    def _guarded_show(self, run_id: int) -> None:
        self.show_run(run_id)

    def _node_clicked(self, key: str) -> None:
        with self._lock:
            self._detail_key = key
            try:
                self._selected = self._task_index(key)
                self._refresh_task_list()
                self._load_form()
            except KeyError:
                pass
            self._render_graph()
            self._render_details()

    @_guard
    def _click_add(self) -> None:
        self.add_task()
        self.tabs.selected_index = 0

    @_guard
    def _click_remove(self) -> None:
        if self._selected is not None and self._selected < len(self.tasks):
            self.remove_task(self.tasks[self._selected].get("task_key"))

    @_guard
    def _click_move(self, offset: int) -> None:
        if self._selected is not None and self._selected < len(self.tasks):
            self.move_task(self.tasks[self._selected].get("task_key"), offset)

    @_background
    @_guard
    def _click_run(self) -> None:
        self.params_box.layout.display = "none"
        self.run()

    @_background
    @_guard
    def _click_repair_failed(self) -> None:
        self.repair()

    @_background
    @_guard
    def _click_repair_chosen(self) -> None:
        chosen = list(self.repair_select.value)
        if not chosen:
            self.status("Choose the tasks to rerun.", "warn")
            return
        self.repair(tasks=chosen, rerun_dependents=self.repair_dependents.value,
                    params=parse_pairs(self.repair_params.value) or None)
        self.repair_box.layout.display = "none"

    @_background
    @_guard
    def _click_cancel(self) -> None:
        self.cancel()

    @_guard
    def _click_export(self, fmt: str) -> None:
        raw = self.file_path.value.strip() or f"{_slug(self.name)}.{'json' if fmt == 'json' else 'yml'}"
        path = Path(raw)
        wanted = ".json" if fmt == "json" else (".yml", ".yaml")
        if not raw.lower().endswith(wanted):
            path = path.with_suffix(".json" if fmt == "json" else ".yml")
        written = self.export(path, fmt)
        self.file_path.value = self._display_path(written)
        self.file_message.value = message_html(f"Wrote {written}", "ok")

    @_guard
    def _click_load(self) -> None:
        raw = self.file_path.value.strip()
        if not raw:
            self.file_message.value = message_html("Give the path of a job file first.", "warn")
            return
        self.load(raw)
        self.file_message.value = message_html(f"Loaded {self.source_path}", "ok")

    def _toggle_params(self) -> None:
        box = self.params_box
        if box.layout.display != "none":
            box.layout.display = "none"
            return
        fields = []
        for p in self.settings.get("parameters") or []:
            if isinstance(p, dict) and p.get("name"):
                t = widgets.Text(value=str(p.get("default") or ""), description=str(p["name"]),
                                 layout=widgets.Layout(width="420px"), style={"description_width": "120px"})
                t.add_class("nbjobs-param")
                t.add_class(f"nbjobs-param-{p['name']}")
                fields.append(t)
        start = widgets.Button(description="Start run", icon="play", button_style="success")
        start.add_class("nbjobs-start-run")

        @_guard
        def go(panel: JobPanel) -> None:
            defaults = {p["name"]: str(p.get("default") or "") for p in panel.settings.get("parameters") or []
                        if isinstance(p, dict)}
            params = {t.description: t.value for t in fields if t.value != defaults.get(t.description)}
            box.layout.display = "none"
            panel.run(params)

        start.on_click(lambda _b: self._submit(go, self))
        if not fields:
            fields = [widgets.HTML('<i style="font-size:12px">This job has no parameters (add them in the Job '
                                   'tab).</i>')]
        box.children = fields + [start]
        box.layout.display = "flex"

    def _toggle_repair(self) -> None:
        if self.repair_box.layout.display != "none":
            self.repair_box.layout.display = "none"
            return
        self._fill_repair_box()
        self.repair_box.layout.display = "flex"

    def _fill_repair_box(self) -> None:
        run = self._run or {}
        keys = [t["task_key"] for t in run.get("tasks") or []]
        failed = tuple(t["task_key"] for t in run.get("tasks") or [] if ui_state(t) in _FAILED)
        if list(self.repair_select.options) != keys:
            self.repair_select.options = keys
            self.repair_select.value = failed

    def _submit(self, fn: Callable, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Run `fn` on the panel's worker thread (one at a time, in order)."""
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbjobs-panel")
        return self._worker.submit(fn, *args, **kwargs)

    def _require_run(self) -> int:
        if self._run is None:
            raise ValueError("no run is shown: run the job first, or pass run_id")
        return self._run["run_id"]

    def _display_path(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.base_dir).as_posix()
        except ValueError:
            return str(path)


_warmed = False
_warm_lock = threading.Lock()


def _warm_imports(client: Any) -> None:
    """Before the first local run: import the notebook executor's libraries in this thread, so the
    background threads that run tasks never import them at the same time (papermill's modules
    import each other and a concurrent first import can see them half made)."""
    global _warmed
    if _warmed or hasattr(client, "url"):  # a server client: runs execute in the server
        return
    with _warm_lock:
        if _warmed:
            return
        try:
            from ..compute.run import warm_imports
        except ImportError:  # pragma: no cover - an older compute module
            return
        warm_imports()
        _warmed = True


def _slug(name: Any) -> str:
    text = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name or "job")).strip("_")
    return text or "job"


def _task_settings(task: dict) -> dict:
    """The settings part of a runs/get task (run fields dropped)."""
    from ..spec.models import Task
    fields = set(Task.model_fields)
    return {k: v for k, v in task.items() if k in fields}
