"""What a run shows: runs/get, runs/list, runs/get-output and runs/export (Jobs API 2.2)."""
from __future__ import annotations

from pathlib import Path

from .. import api_json
from .._gc import gc_paused
from ..errors import InvalidParameterValue, ResourceDoesNotExist
from ..store import Store
from ..tasks.registry import kind_of


class RunViewsMixin:
    """The read verbs of `Workspace` over runs."""

    store: Store

    def _run_row(self, run_id: int) -> dict:
        row = self.store.get_run(int(run_id))
        if row is None:
            raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
        return row

    def _iterations(self, task_rows: list[dict]) -> dict[int, list[dict]]:
        """{task run id: its iterations} of the task runs whose kind runs nested tasks (for-each)."""
        return {t["task_run_id"]: self.store.child_task_runs(t["task_run_id"])
                for t in task_rows if _runs_nested_tasks(t["task"])}

    def run_notifications(self, run_id: int) -> list[dict]:
        """The run's notification deliveries (`nbjobs.notify`), oldest first; secrets never appear."""
        if self.store.get_run(int(run_id), settings=False) is None:
            raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
        from ..notify.views import deliveries_json
        return deliveries_json(self.store.list_deliveries(int(run_id)))

    @gc_paused
    def get_run(self, run_id: int, *, include_history: bool = True) -> dict:
        """runs/get. A task run id gives that task run (a for-each task run lists its iterations)."""
        row = self.store.get_run(int(run_id), settings=False)  # runs/get does not echo the settings
        if row is None:
            task_row = self.store.get_task_run(int(run_id))
            if task_row is None:
                raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
            parent = self._run_row(task_row["run_id"])
            iterations = self.store.child_task_runs(task_row["task_run_id"])
            out = api_json.run_json({**parent, "run_id": task_row["task_run_id"],
                                     "life_cycle_state": task_row["life_cycle_state"],
                                     "result_state": task_row["result_state"],
                                     "state_message": task_row["state_message"],
                                     "start_time": task_row["start_time"], "end_time": task_row["end_time"],
                                     "parent_task_run_id": None, "queue_duration": 0},
                                    [task_row], iterations=iterations,
                                    for_each_iterations={task_row["task_run_id"]: iterations})
            out["job_run_id"] = parent["run_id"]
            out["attempt_number"] = task_row.get("attempt_number") or 0
            out["original_attempt_run_id"] = task_row.get("original_attempt_run_id") or task_row["task_run_id"]
            return out
        every = self.store.task_runs(row["run_id"], latest_only=False)  # one read: latest rows and history
        first: dict[str, int] = {}  # a task's first task run: made in the order of the run's settings
        for t in every:
            first.setdefault(t["task_key"], t["task_run_id"])
        task_rows = sorted((t for t in every if t["is_latest"]), key=lambda t: first[t["task_key"]])
        loops = self._iterations(task_rows)
        repairs = self.store.repairs(row["run_id"]) if include_history else None
        history = None
        if include_history:
            history = {}
            for t in every:
                history.setdefault(t["repair_id"], []).append(t["task_run_id"])
        return api_json.run_json(row, task_rows, repairs=repairs, history_task_runs=history,
                                 for_each_iterations=loops)

    def get_run_output(self, run_id: int) -> dict:
        """runs/get-output of a task run (a multi-task job run id is refused, as the Jobs API does)."""
        task_row = self.store.get_task_run(int(run_id))
        if task_row is None:
            if self.store.get_run(int(run_id)) is not None:
                raise InvalidParameterValue(
                    "Retrieving the output of runs with multiple tasks is not supported. "
                    "Please retrieve the output of each individual task run instead.")
            raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
        run = self._run_row(task_row["run_id"])
        logs = None
        if task_row.get("logs_path") and Path(task_row["logs_path"]).exists():
            logs = Path(task_row["logs_path"]).read_text(errors="replace")
        return api_json.run_output_json(task_row, run, logs=logs)

    def list_runs(self, *, job_id: int | None = None, active_only: bool = False, completed_only: bool = False,
                  limit: int | None = None, offset: int = 0, expand_tasks: bool = False,
                  run_type: str | None = None, start_time_from: int | None = None,
                  start_time_to: int | None = None) -> list[dict]:
        """runs/list, newest first."""
        return self.list_runs_before(None, job_id=job_id, active_only=active_only, completed_only=completed_only,
                                     limit=limit, offset=offset, expand_tasks=expand_tasks, run_type=run_type,
                                     start_time_from=start_time_from, start_time_to=start_time_to)

    def list_runs_before(self, before: tuple[int, int] | None, *, job_id: int | None = None,
                         active_only: bool = False, completed_only: bool = False, limit: int | None = None,
                         offset: int = 0, expand_tasks: bool = False, run_type: str | None = None,
                         start_time_from: int | None = None, start_time_to: int | None = None) -> list[dict]:
        """runs/list of the runs listed after `before=(start_time, run_id)` (the server's page token)."""
        if active_only and completed_only:
            raise InvalidParameterValue("active_only and completed_only cannot both be true.")
        rows = self.store.list_runs(job_id=job_id, active_only=active_only, completed_only=completed_only,
                                    limit=limit, offset=offset, run_type=run_type, start_time_from=start_time_from,
                                    start_time_to=start_time_to, before=before)
        out = []
        for row in rows:
            tasks = self.store.task_runs(row["run_id"]) if expand_tasks else []
            loops = self._iterations(tasks)
            run = api_json.run_json(row, tasks, for_each_iterations=loops)
            if not expand_tasks:
                run.pop("tasks")
            out.append(run)
        return out

    def task_runs(self, run_id: int) -> list[dict]:
        """Store rows of a run's latest task runs (for clients that show tables)."""
        self._run_row(run_id)
        return self.store.task_runs(int(run_id))

    def export_run(self, run_id: int, views_to_export: str | None = "CODE") -> dict:
        """runs/export: `{"views": [{content (HTML), name, type: "NOTEBOOK"}]}` of the executed notebook
        of a notebook task run (a job run id exports each of its notebook tasks)."""
        views = (views_to_export or "CODE").upper()
        if views not in ("CODE", "DASHBOARDS", "ALL"):
            raise InvalidParameterValue(f"views_to_export: expected CODE, DASHBOARDS or ALL, got {views_to_export!r}")
        task_row = self.store.get_task_run(int(run_id))
        if task_row is not None:
            if "notebook_task" not in task_row["task"]:
                kind = next((k for k in task_row["task"] if k.endswith("_task")), "non-notebook")
                raise InvalidParameterValue(f"Run {run_id} is a {kind} run of task '{task_row['task_key']}'; "
                                            "only notebook task runs can be exported.")
            rows = [task_row]
        else:
            self._run_row(run_id)
            rows = [r for r in self.store.task_runs(int(run_id)) if "notebook_task" in r["task"]]
            if not rows:
                raise InvalidParameterValue(f"Run {run_id} has no notebook task to export.")
        out: list[dict] = []
        if views == "DASHBOARDS":
            return {"views": out}
        for row in rows:
            path = row.get("output_path")
            if not path or not Path(path).is_file():
                if task_row is not None:
                    raise InvalidParameterValue(
                        f"Run {run_id} has no executed notebook to export (its state is "
                        f"{row['result_state'] or row['life_cycle_state']}).")
                continue
            name = Path(row["task"]["notebook_task"].get("notebook_path") or row["task_key"]).stem
            out.append({"content": notebook_html(Path(path)), "name": name, "type": "NOTEBOOK"})
        return {"views": out}


def _runs_nested_tasks(task: dict) -> bool:
    kind = kind_of(task)
    return kind is not None and bool(kind.nested_tasks)


def notebook_html(path: Path) -> str:
    """An executed notebook rendered as a standalone HTML page (nbconvert; the nbjobs cell left out)."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(str(path), as_version=4)
    exporter = HTMLExporter(template_name="lab")
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"injected-nbjobs"}), enabled=True)
    html, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    return html


