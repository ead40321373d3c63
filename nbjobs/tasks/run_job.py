"""Run-job tasks (`run_job_task`, databricks-sdk `jobs.RunJobTask`): start another job's run and wait
for it; runs/get-output names the child run (`run_job_output.run_id`)."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from ..refs import resolve_all
from .api_model import ApiModel, Text
from .registry import Outcome, TaskKind, TaskRun


def _job_id(value: Any) -> Any:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


class RunJobTask(ApiModel):
    job_id: Annotated[int | str, BeforeValidator(_job_id)]
    job_parameters: dict[str, Text] = Field(default_factory=dict)


class RunJobKind(TaskKind):
    field = "run_job_task"
    name = "run_job"
    label = "Run job"
    needs_compute = False
    model = RunJobTask

    def validate(self, payload, path, check, *, upstream, nested):
        refs = dict(upstream=upstream, in_for_each=nested)
        for field in ("job_parameters", "notebook_params", "python_named_params"):
            check.refs_map(payload.get(field), f"{path}.{field}", **refs)
        check.refs_list(payload.get("python_params"), f"{path}.python_params", **refs)

    async def run(self, run: TaskRun) -> Outcome:
        spec = run.task.run_job_task
        params = {k: str(v) for k, v in resolve_all(dict(spec.job_parameters or {}), run.refs).items()}
        resolved = {"run_job_task": {"job_parameters": params}}
        if run.child_runs is None:
            return Outcome.failed("run_job_task needs a workspace to start the other job's run",
                                  resolved_values=resolved)
        try:
            child_id = run.child_runs.start(int(spec.job_id), params, run.task_run_id)
        except Exception as exc:  # unknown job, bad parameters, a cycle: the task fails with the reason
            return Outcome.failed(f"run_job_task could not start job {spec.job_id}: {exc}", resolved_values=resolved)
        run.store.update_task_run(run.task_run_id, child_run_id=child_id)
        child = await run.child_runs.execute(child_id)
        state = child.get("state", {})
        result = state.get("result_state") or state.get("life_cycle_state")
        if result in ("SUCCESS", "SUCCESS_WITH_FAILURES"):
            return Outcome.succeeded(resolved_values=resolved,
                                     state_message=f"Run {child_id} of job {spec.job_id}: {result}")
        detail = state.get("state_message") or ""
        message = (f"Run {child_id} of job {spec.job_id} ('{child.get('run_name', '')}') ended {result}"
                   + (f": {detail}" if detail else ""))
        return Outcome.failed(message, resolved_values=resolved)

    def output_json(self, out: dict, row: dict) -> None:
        if row.get("child_run_id"):
            out["run_job_output"] = {"run_id": row["child_run_id"]}


def called_job_ids(settings: Any) -> list[int]:
    """Job ids the run_job_tasks of job settings JSON call (also inside nested tasks, e.g. for-each)."""
    from .paths import nested_task_fields
    nested = nested_task_fields()
    out: list[int] = []
    todo = [t for t in (settings.get("tasks") or []) if isinstance(t, dict)]
    while todo:
        task = todo.pop(0)
        spec = task.get(RunJobKind.field)
        if isinstance(spec, dict):
            try:
                out.append(int(spec.get("job_id")))
            except (TypeError, ValueError):
                pass
        for field, keys in nested.items():
            payload = task.get(field)
            if isinstance(payload, dict):
                todo.extend(payload[k] for k in keys if isinstance(payload.get(k), dict))
    return out
