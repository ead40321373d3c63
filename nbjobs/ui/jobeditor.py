"""The panel's editor (its left side): the task list and its buttons, and the tabs *Task* (`TaskForm`),
*Job* (`JobForm`), *File* (`FileBar`) and *YAML*. It owns the `JobDraft` edits and their problems;
after each edit it calls `on_change(structural)` so the panel redraws the graph."""
from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

import ipywidgets as widgets

from .details import esc
from .draft import JobDraft
from .editor import problem_task_index, source_files, task_kind
from .jobtabs import FileBar, JobForm
from .taskform import TaskForm


class JobEditor(widgets.VBox):
    """Edit `draft`. Callbacks: `on_change(structural)` after an edit, `on_renamed()` when the job's
    name changed, `on_export(fmt)` / `on_load()` (the File tab), `on_error(exc)` for a failed click."""

    def __init__(self, draft: JobDraft, *, on_change: Callable[[bool], None], on_renamed: Callable[[], None],
                 on_export: Callable[[str], Any], on_load: Callable[[], Any],
                 on_error: Callable[[Exception], None], lock: threading.RLock | None = None):
        W = widgets
        self.draft = draft
        self.problems: list = []
        self.selected: int | None = 0 if draft.tasks else None
        self._on_change = on_change
        self._on_renamed = on_renamed
        self._on_error = on_error
        self._lock = lock or threading.RLock()
        self._list_guard = False

        def button(text: str, cls: str, handler: Callable[[], Any], icon: str = "", tooltip: str = ""):
            b = W.Button(description=text, icon=icon, tooltip=tooltip, layout=W.Layout(width="auto"))
            b.add_class(cls)
            b.on_click(lambda _b: self._act(handler))
            return b

        self.task_list = W.Select(options=[], rows=7, layout=W.Layout(width="98%"))
        self.task_list.add_class("nbjobs-task-list")
        self.task_list.observe(self._list_changed, "value")
        list_buttons = W.HBox([
            button("+ Add task", "nbjobs-add-task", self._click_add),
            button("Remove", "nbjobs-remove-task", self._click_remove, icon="trash"),
            button("", "nbjobs-move-up", lambda: self._click_move(-1), icon="arrow-up", tooltip="move up"),
            button("", "nbjobs-move-down", lambda: self._click_move(1), icon="arrow-down", tooltip="move down"),
        ], layout=W.Layout(width="auto"))
        self.form = TaskForm(lambda structural: self.changed(structural, reload_form=False),
                             lambda: source_files(self.draft.base_dir))
        self.job_form = JobForm(self._job_fields_changed, self._schedule_changed)
        self.file_bar = FileBar(on_export, on_load)
        self.yaml_view = W.HTML("")
        self.yaml_view.add_class("nbjobs-yaml")
        self.tabs = W.Tab(children=[self.form, self.job_form, self.file_bar, self.yaml_view])
        for i, title in enumerate(("Task", "Job", "File", "YAML")):
            self.tabs.set_title(i, title)
        super().__init__([self.task_list, list_buttons, self.tabs], layout=W.Layout(width="42%", min_width="340px"))
        self.job_form.load(draft.settings)

    # -- state ----------------------------------------------------------------------------------
    @property
    def selected_key(self) -> str | None:
        tasks = self.draft.tasks
        if self.selected is not None and self.selected < len(tasks) and isinstance(tasks[self.selected], dict):
            return tasks[self.selected].get("task_key")
        return None

    def task_problems(self) -> dict[int, list]:
        """{task index: its problems}."""
        out: dict[int, list] = {}
        for problem in self.problems:
            index = problem_task_index(problem.path)
            if index is not None:
                out.setdefault(index, []).append(problem)
        return out

    def problem_keys(self) -> set:
        tasks = self.draft.tasks
        return {tasks[i].get("task_key") for i in self.task_problems() if i < len(tasks) and isinstance(tasks[i], dict)}

    # -- edits (each redraws) ----------------------------------------------------------------------
    def add_task(self, kind: str = "notebook", key: str | None = None, **fields: Any) -> str:
        self.selected = self.draft.add_task(kind, key, **fields)
        self.changed(structural=True)
        return self.draft.tasks[self.selected]["task_key"]

    def remove_task(self, key: str) -> None:
        index = self.draft.remove_task(key)
        tasks = self.draft.tasks
        self.selected = min(index, len(tasks) - 1) if tasks else None
        self.changed(structural=True)

    def move_task(self, key: str, offset: int) -> None:
        self.selected = self.draft.move_task(key, offset)
        self.changed(structural=True)

    def edit(self, structural: bool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Apply `fn(*args, **kwargs)` (a JobDraft edit), then redraw; `structural`: it changed the
        tasks (else the job's own fields, shown again in the Job tab)."""
        fn(*args, **kwargs)
        if not structural:
            self.job_form.load(self.draft.settings)
        self.changed(structural=structural)

    def select_task(self, key: str) -> None:
        self.selected = self.draft.index(key)
        self.refresh_task_list()
        self.load_form()

    def reset(self) -> None:
        """After the whole definition was replaced (a file loaded)."""
        self.selected = 0 if self.draft.tasks else None
        self.job_form.load(self.draft.settings)
        self.changed(structural=True)

    def changed(self, structural: bool = True, *, reload_form: bool = True) -> None:
        """After any edit: validate, then redraw what depends on the definition."""
        with self._lock:
            self.problems = self.draft.validate()
            if structural:
                self.refresh_task_list()
            if structural and reload_form:
                self.load_form()
            else:
                self.form.show_problems(self.task_problems().get(self.selected, []) if self.selected is not None
                                        else [])
            self.yaml_view.value = (f'<pre style="font-size:11px;max-height:420px;overflow:auto;margin:0">'
                                    f'{esc(self.draft.to_yaml())}</pre>')
            self._on_change(structural)

    # -- views ----------------------------------------------------------------------------------
    def refresh_task_list(self) -> None:
        options = []
        for i, task in enumerate(self.draft.tasks):
            key = task.get("task_key") if isinstance(task, dict) else None
            kind = task_kind(task) if isinstance(task, dict) else "?"
            options.append((f"{key or '(no key)'}  ·  {kind.replace('other:', '')}", i))
        self._list_guard = True
        try:
            self.task_list.options = options
            self.task_list.value = self.selected if self.selected is not None and options else None
        finally:
            self._list_guard = False

    def load_form(self) -> None:
        tasks = self.draft.tasks
        task = tasks[self.selected] if self.selected is not None and self.selected < len(tasks) else None
        problems = self.task_problems().get(self.selected, []) if task is not None else []
        self.form.load(task, [t for t in tasks if isinstance(t, dict)], problems)

    # -- handlers -------------------------------------------------------------------------------
    def _act(self, handler: Callable[[], Any]) -> None:
        try:
            handler()
        except Exception as exc:  # shown in the panel's status line
            self._on_error(exc)

    def _list_changed(self, change: dict) -> None:
        if self._list_guard or change["new"] is None:
            return
        self.selected = change["new"]
        self.load_form()
        self._on_change(False)

    def _job_fields_changed(self, fields: Mapping[str, Any]) -> None:
        renamed = fields["name"] != self.draft.name
        self.draft.set_fields(**fields)
        self.changed(structural=False)
        if renamed:
            self._on_renamed()

    def _schedule_changed(self, fields: Mapping[str, Any]) -> None:
        self.draft.set_fields(**fields)  # schedule / trigger / continuous; None removes one
        self.changed(structural=False)

    def _click_add(self) -> None:
        self.add_task()
        self.tabs.selected_index = 0

    def _click_remove(self) -> None:
        if self.selected_key is not None:
            self.remove_task(self.selected_key)

    def _click_move(self, offset: int) -> None:
        if self.selected_key is not None:
            self.move_task(self.selected_key, offset)
