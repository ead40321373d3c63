"""`JobPanel`: build a job interactively, watch its runs live on the DAG, repair and cancel them.

A thin client of the `nbjobs.contract.JobsClient` verbs (a `Workspace`, or an `nbjobs.connect`
client; see `nbjobs.ui.use`); validation is `nbjobs.spec.validate_job_settings`. It composes the
widgets of this package: `RunControls` (run, repair, cancel, history), the editor (task list,
`TaskForm`, `JobForm`, `FileBar`, YAML), `DagGraph`, `TaskDetails`, and a `RunMonitor` that redraws
the graph when the run's events arrive (and on a light poll of runs/get).
"""
from __future__ import annotations

import concurrent.futures
import copy
import functools
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import ipywidgets as widgets

from ..contract import REPAIR_RERUN_DEPENDENT_TASKS, JobsClient
from .client import default_client
from .controls import RunControls
from .details import esc, message_html, problems_html, run_summary
from .draft import open_job
from .editor import graph_tasks
from .graph import DagGraph
from .jobeditor import JobEditor
from .jobfile import slug, task_settings
from .monitor import RunMonitor
from .states import is_active, progress, ui_state
from .notifications import RunNotifications
from .taskdetails import TaskDetails

__all__ = ["JobPanel"]


def _guard(fn: Callable) -> Callable:
    """A button handler: errors become a red status line (never a traceback in the log)."""
    @functools.wraps(fn)
    def wrapper(self: JobPanel, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:  # shown to the user, who can act on it
            self._report(exc)
    return wrapper


def _background(fn: Callable) -> Callable:
    """A button handler that calls the service: it runs on the panel's worker thread, so the kernel
    is free at once (saving, starting and the first imports can take a moment)."""
    @functools.wraps(fn)
    def wrapper(self: JobPanel, *args: Any, **kwargs: Any) -> None:
        self.status("Working…")
        self._submit(fn, self, *args, **kwargs)
    return wrapper


class JobPanel(widgets.VBox):
    """Build, run, watch and repair a job.

    `job`: None (a new job), a job file (JSON/YAML/bundle), a JobSettings dict or model, or the id of
    a registered job. `client`: a `JobsClient` — a `Workspace` or an `nbjobs.connect` client (default:
    `nbjobs.ui.use`'s, else the workspace of `$NBJOBS_HOME`). `run_id`: a run to show.
    """

    def __init__(self, job: Any = None, *, client: JobsClient | None = None,
                 base_dir: str | os.PathLike | None = None, run_id: int | None = None, name: str | None = None,
                 poll_interval: float = 0.5):
        self.client: JobsClient = client if client is not None else default_client()
        self.draft, self.job_id = open_job(job, self.client, base_dir)
        if name:
            self.settings["name"] = name
        self._lock = threading.RLock()
        self._graph_source: list = []
        self._run: dict | None = None
        self._run_structure = False
        self._saved: dict | None = None
        self.monitor = RunMonitor(self.client.get_run, self._on_run_update, interval=poll_interval)
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._build()
        self.editor.changed(structural=True)
        self._refresh_history()
        if run_id is not None:
            self.show_run(run_id)

    @classmethod
    def for_run(cls, run_id: int, *, client: JobsClient | None = None, **kwargs: Any) -> JobPanel:
        """A panel on the job of `run_id`, showing that run."""
        client = client if client is not None else default_client()
        run = client.get_run(int(run_id))
        job: Any = run.get("job_id")
        if job is not None:
            try:
                client.get_job(job)
            except Exception:  # the job was deleted: rebuild it from the run
                job = None
        if job is None:
            job = {"name": run.get("run_name") or "Untitled", "tasks": [task_settings(t) for t in run["tasks"]]}
        return cls(job, client=client, run_id=run["run_id"], **kwargs)

    # -- widgets --------------------------------------------------------------------------------
    def _build(self) -> None:
        W = widgets
        self.title = W.HTML("")
        self.title.add_class("nbjobs-title")
        self.controls = RunControls(
            parameters=lambda: self.settings.get("parameters") or [], on_run=self._click_run,
            on_run_with=self._click_run_with, on_repair_failed=self._click_repair_failed,
            on_repair_chosen=self._click_repair_chosen, on_cancel=self._click_cancel, on_history=self._guarded_show)
        c = self.controls
        (self.run_button, self.run_params_button, self.repair_button, self.repair_tasks_button, self.cancel_button,
         self.history, self.status_html, self.params_box, self.repair_box, self.repair_select,
         self.repair_dependents, self.repair_params) = (
            c.run_button, c.run_params_button, c.repair_button, c.repair_tasks_button, c.cancel_button, c.history,
            c.status_html, c.params_box, c.repair_box, c.repair_select, c.repair_dependents, c.repair_params)
        self.editor = JobEditor(self.draft, on_change=self._edited, on_renamed=self._renamed,
                                on_export=self._click_export, on_load=self._click_load, on_error=self._report,
                                lock=self._lock)
        e = self.editor
        (self.task_list, self.form, self.tabs, self.yaml_view) = (e.task_list, e.form, e.tabs, e.yaml_view)
        (self.job_name, self.job_description, self.job_params, self.job_tags) = (
            e.job_form.name, e.job_form.description, e.job_form.params, e.job_form.tags)
        self.file_path, self.file_message = e.file_bar.path, e.file_bar.message
        self.graph = DagGraph(on_node_click=self._node_clicked)
        self.details = TaskDetails(self.client.get_run_output)
        self.notifications = RunNotifications(getattr(self.client, "run_notifications", None))
        right = W.VBox([self.graph, self.details, self.notifications],
                       layout=W.Layout(width="58%", padding="0 0 0 8px"))
        self.problems_html = W.HTML("")
        self.problems_html.add_class("nbjobs-problems-box")
        super().__init__([self.title, self.controls, W.HBox([self.editor, right], layout=W.Layout(width="100%")),
                          self.problems_html])
        self.add_class("nbjobs-panel")
        self.file_path.value = (self.draft.display_path(self.source_path) if self.source_path is not None
                                else f"{slug(self.settings.get('name'))}.yml")

    # -- the model ------------------------------------------------------------------------------
    settings = property(lambda self: self.draft.settings, lambda self, value: self.draft.replace(value),
                        doc="The JobSettings dict being edited.")
    base_dir = property(lambda self: self.draft.base_dir, doc="The folder task paths are relative to.")
    source_path = property(lambda self: self.draft.source_path, doc="The job file loaded, if any.")
    name = property(lambda self: self.draft.name)
    tasks = property(lambda self: self.draft.tasks)
    task_keys = property(lambda self: self.draft.task_keys)

    @property
    def problems(self) -> list:
        """The problems of the current definition (`Problem(path, message, fix)`), as shown."""
        return list(self.editor.problems)

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
        return self.draft.to_yaml()

    def to_json(self) -> str:
        return self.draft.to_json()

    def task(self, key: str) -> dict:
        return self.draft.task(key)

    def add_task(self, kind: str = "notebook", key: str | None = None, **fields: Any) -> str:
        """Add a task of a registered kind (notebook, python, condition, for_each, run_job …) and select it."""
        return self.editor.add_task(kind, key, **fields)

    def remove_task(self, key: str) -> None:
        """Remove a task and the dependencies on it."""
        self.editor.remove_task(key)

    def move_task(self, key: str, offset: int) -> None:
        """Move a task up (negative) or down the list."""
        self.editor.move_task(key, offset)

    def update_task(self, key: str, **fields: Any) -> None:
        """Set fields of a task (None removes one), e.g. `update_task("t", run_if="ALL_DONE")`."""
        self.editor.edit(True, self.draft.update_task, key, **fields)

    def depend(self, key: str, upstream: str, outcome: str | bool | None = None) -> None:
        """Make `key` depend on `upstream` (with `outcome` "true"/"false" after a condition task)."""
        self.editor.edit(True, self.draft.depend, key, upstream, outcome)

    def undepend(self, key: str, upstream: str) -> None:
        self.editor.edit(True, self.draft.undepend, key, upstream)

    def set_parameters(self, parameters: Mapping[str, str]) -> None:
        """The job parameters as {name: default}."""
        self.editor.edit(False, self.draft.set_parameters, parameters)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.editor.edit(False, self.draft.set_tags, tags)

    def rename(self, name: str) -> None:
        self.editor.edit(False, self.settings.__setitem__, "name", name)
        self._renamed()

    def select_task(self, key: str) -> None:
        """Show a task in the form (and mark it in the graph)."""
        self.editor.select_task(key)
        self._render_graph()

    def export(self, path: str | os.PathLike, fmt: str | None = None) -> Path:
        """Write the job to a YAML or JSON file (by extension, or `fmt`); relative task paths are
        rewritten relative to the file's folder. Returns the absolute path."""
        return self.draft.export(path, fmt)

    def load(self, path: str | os.PathLike) -> None:
        """Replace the definition with a job file's (its folder becomes the base folder)."""
        self.draft.load(path)
        self.job_id = None
        self._saved = None
        self.editor.reset()
        self._refresh_history()

    # -- service calls --------------------------------------------------------------------------
    def _check(self) -> None:
        if self.editor.problems:
            from ..errors import JobDefinitionError
            raise JobDefinitionError(self.editor.problems)

    def save(self) -> int:
        """Register the job (create it, or update the one with the same name); returns its id.
        Raises JobDefinitionError when the definition has problems."""
        self._check()
        if self.job_id is not None and self._saved == self.settings:
            return self.job_id
        snapshot = copy.deepcopy(self.settings)
        job_id, created = self.client.save_job(copy.deepcopy(snapshot), base_dir=self.base_dir,
                                               source_path=str(self.source_path) if self.source_path else None)
        self.job_id = int(job_id)
        self._saved = snapshot
        self._render_title()
        self.status(f"{'Registered' if created else 'Updated'} job {self.job_id} '{self.name}'.", "ok")
        return self.job_id

    def run(self, params: Mapping[str, str] | None = None) -> int:
        """Save and start a run in the background; returns its run_id at once."""
        job_id = self.save()
        started = self.client.run_now(job_id, {str(k): str(v) for k, v in (params or {}).items()} or None,
                                      wait=False, on_event=self.monitor.wake)
        run_id = int(started["run_id"])
        self.status(f"Run {run_id} started.", "ok")
        self.show_run(run_id)
        self._refresh_history()
        return run_id

    def repair(self, run_id: int | None = None, *, tasks: Iterable[str] | None = None,
               rerun_dependents: bool = REPAIR_RERUN_DEPENDENT_TASKS, params: Mapping[str, str] | None = None) -> int:
        """Repair a finished run in the background: the failed tasks (default) or `tasks`, then the
        tasks after them that did not succeed (every task after them with `rerun_dependents`; the
        default is `nbjobs.contract.REPAIR_RERUN_DEPENDENT_TASKS`, as in every client).
        Saves the definition first: a repair runs the job's current settings. Returns the repair id."""
        run_id = int(run_id if run_id is not None else self._require_run())
        self._check()
        run = self.client.get_run(run_id)
        if run.get("job_id") is not None and self.job_id in (None, run.get("job_id")):
            self.save()
        latest = [r.get("id") for r in run.get("repair_history") or [] if r.get("type") == "REPAIR"]
        tasks = list(tasks or [])
        answer = self.client.repair_run(
            run_id, rerun_tasks=tasks or None, rerun_all_failed_tasks=not tasks,
            rerun_dependent_tasks=bool(rerun_dependents), latest_repair_id=latest[-1] if latest else None,
            job_parameters={str(k): str(v) for k, v in params.items()} if params else None,
            wait=False, on_event=self.monitor.wake)
        repair_id = answer.get("repair_id")
        what = ", ".join(tasks) if tasks else "the failed tasks"
        self.status(f"Repair {repair_id} of run {run_id} started ({what}).", "ok")
        self.show_run(run_id)
        self._refresh_history()
        return repair_id

    def cancel(self, run_id: int | None = None) -> None:
        """Cancel a run (default: the one shown); it ends CANCELED shortly after."""
        run_id = int(run_id if run_id is not None else self._require_run())
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
        run = self.client.wait(run_id, timeout)
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
        self.controls.status(text, kind)

    # -- rendering ------------------------------------------------------------------------------
    def _edited(self, structural: bool) -> None:
        """The editor changed the definition (validated): redraw the rest."""
        with self._lock:
            self._graph_source = graph_tasks(self.tasks)
            if structural:
                self._run_structure = False
            self.problems_html.value = problems_html(self.editor.problems)
            self._render_title()
            self._render_graph()
            self._render_buttons()

    def _renamed(self) -> None:
        self.job_id = None  # another name is another job (jobs are saved by name)
        self._render_title()
        self._refresh_history()

    def _render_title(self) -> None:
        n = len(self.tasks)
        job = f"job {self.job_id}" if self.job_id is not None else "not registered yet"
        self.title.value = (f'<div style="font-size:14px"><b>{esc(self.name)}</b> '
                            f'<span style="color:#78909c">· {job} · {n} task{"s" if n != 1 else ""}</span></div>')

    def _render_graph(self) -> None:
        with self._lock:
            run = self._run
            tasks = graph_tasks(run.get("tasks") or []) if run and self._run_structure else self._graph_source
            states = {t["task_key"]: ui_state(t) for t in (run or {}).get("tasks") or []}
            prog = {t["task_key"]: progress(t) for t in (run or {}).get("tasks") or []}
            if run:
                caption = run_summary(run)
                if self._run_structure:
                    caption += (' <span style="color:#ef6c00;font-size:11px">(the tasks of this run; the job '
                                'has changed since)</span>')
            else:
                caption = '<span style="color:#78909c;font-size:12px">Design view: run the job to see states.</span>'
            self.graph.show(tasks, states=states, progress=prog, problems=self.editor.problem_keys(),
                            selected=self.editor.selected_key, caption=f'<div style="font-size:12px">{caption}</div>')

    def _render_buttons(self) -> None:
        self.controls.render(self._run, runnable=not self.editor.problems and bool(self.tasks),
                             problems=bool(self.editor.problems))

    def _render_run(self) -> None:
        self._render_graph()
        self._render_buttons()
        self.details.show(self.details.key, self._run)
        self.notifications.show(self._run)

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
            self.controls.set_history(runs, self._run)

    def _select_history(self, run_id: int) -> None:
        with self._lock:
            listed = self.controls.select_history(run_id)
        if not listed:
            self._refresh_history()

    # -- widget handlers --------------------------------------------------------------------------
    def _report(self, exc: Exception) -> None:
        """An error of a click, in the status line (a definition's problems listed below the panel)."""
        from ..errors import JobDefinitionError
        if isinstance(exc, JobDefinitionError):
            self.editor.problems = list(exc.problems)
            self.problems_html.value = problems_html(self.editor.problems)
            self.status(f"The job definition has {len(exc.problems)} problem(s); see the list below.", "error")
        else:
            self.status(f"{exc}" if str(exc) else type(exc).__name__, "error")

    @_guard
    def _guarded_show(self, run_id: int) -> None:
        self.show_run(run_id)

    def _node_clicked(self, key: str) -> None:
        with self._lock:
            try:
                self.editor.select_task(key)
            except KeyError:
                pass
            self._render_graph()
            self.details.show(key, self._run)

    @_background
    @_guard
    def _click_run(self) -> None:
        self.params_box.layout.display = "none"
        self.run()

    @_background
    @_guard
    def _click_run_with(self, params: dict) -> None:
        self.run(params)

    @_background
    @_guard
    def _click_repair_failed(self) -> None:
        self.repair()

    @_background
    @_guard
    def _click_repair_chosen(self, tasks: list, rerun_dependents: bool, params: dict | None) -> None:
        if not tasks:
            self.status("Choose the tasks to rerun.", "warn")
            return
        self.repair(tasks=tasks, rerun_dependents=rerun_dependents, params=params)
        self.repair_box.layout.display = "none"

    @_background
    @_guard
    def _click_cancel(self) -> None:
        self.cancel()

    @_guard
    def _click_export(self, fmt: str) -> None:
        raw = self.file_path.value.strip() or f"{slug(self.name)}.{'json' if fmt == 'json' else 'yml'}"
        path = Path(raw)
        wanted = ".json" if fmt == "json" else (".yml", ".yaml")
        if not raw.lower().endswith(wanted):
            path = path.with_suffix(".json" if fmt == "json" else ".yml")
        written = self.export(path, fmt)
        self.file_path.value = self.draft.display_path(written)
        self.file_message.value = message_html(f"Wrote {written}", "ok")

    @_guard
    def _click_load(self) -> None:
        raw = self.file_path.value.strip()
        if not raw:
            self.file_message.value = message_html("Give the path of a job file first.", "warn")
            return
        self.load(raw)
        self.file_message.value = message_html(f"Loaded {self.source_path}", "ok")

    def _submit(self, fn: Callable, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Run `fn` on the panel's worker thread (one at a time, in order)."""
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbjobs-panel")
        return self._worker.submit(fn, *args, **kwargs)

    def _require_run(self) -> int:
        if self._run is None:
            raise ValueError("no run is shown: run the job first, or pass run_id")
        return self._run["run_id"]
