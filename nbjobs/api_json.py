"""Jobs API JSON shapes (jobs/get, runs/get, runs/get-output: databricks-sdk `jobs.Job`, `jobs.Run`,
`jobs.RunTask`, `jobs.RunOutput`) built from store rows; each task kind adds its own fields
(`TaskKind.run_json`, `TaskKind.output_json`). Pure: no I/O."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .states import LifeCycleState, ResultState, state_json, status_json
from .tasks.registry import kind_of

OUTPUT_LIMIT = 5 * 1024 * 1024  # notebook_output.result: first 5 MB; logs: last 5 MB


def _states(row: dict) -> tuple[LifeCycleState, ResultState | None]:
    result = row.get("result_state")
    return LifeCycleState(row["life_cycle_state"]), (ResultState(result) if result else None)


def _duration(row: dict) -> int:
    if not row.get("start_time"):
        return 0
    return max(0, (row.get("end_time") or 0) - row["start_time"]) if row.get("end_time") else 0


def job_json(row: dict, *, expand_tasks: bool = True) -> dict:
    """A `Job` (jobs/get) or `BaseJob` (jobs/list) object."""
    settings = dict(row["settings"])
    if not expand_tasks:
        settings.pop("tasks", None)
        settings.pop("job_clusters", None)
    out = {"job_id": row["job_id"], "creator_user_name": row.get("creator_user_name") or "",
           "created_time": row["created_time"], "settings": settings}
    if expand_tasks:
        out["run_as_user_name"] = row.get("creator_user_name") or ""
    return out


def task_run_json(row: dict, *, iterations: list[dict] | None = None) -> dict:
    """A `RunTask`: the task's settings plus its run fields (`iterations`: a for-each task run's
    iterations, for `for_each_task.stats`)."""
    life, result = _states(row)
    out: dict[str, Any] = dict(row["task"])
    message = row.get("state_message") or ""
    duration = _duration(row)
    out.update({
        "task_key": row["task_key"],
        "run_id": row["task_run_id"],
        "attempt_number": row.get("attempt_number") or 0,
        "state": state_json(life, result, message),
        "status": status_json(life, result, message),
        "start_time": row.get("start_time") or 0,
        "end_time": row.get("end_time") or 0,
        "setup_duration": 0,
        "execution_duration": duration,
        "cleanup_duration": 0,
        "run_duration": duration,
        "queue_duration": 0,
    })
    if row.get("resolved_values"):
        out["resolved_values"] = row["resolved_values"]
    kind = kind_of(row["task"])
    if kind is not None:
        kind.run_json(out, row, iterations)
        if kind.needs_compute and row.get("execution_count") and row.get("compute"):
            out["cluster_instance"] = {"cluster_id": row["compute"]}  # the compute that ran it (nbjobs.compute)
    page = row.get("output_path") or row.get("logs_path")
    if page:
        out["run_page_url"] = Path(page).as_uri()
    return out


def run_json(run: dict, task_rows: list[dict], *, repairs: list[dict] | None = None,
             history_task_runs: dict[int | None, list[int]] | None = None,
             iterations: list[dict] | None = None,
             for_each_iterations: dict[int, list[dict]] | None = None) -> dict:
    """A `Run` (runs/get): state, status, tasks[] (latest attempt per task), job_parameters, repair_history.

    `iterations`: the run is a for-each task run, listing these; `for_each_iterations`:
    {for-each task run id: its iterations} for `for_each_task.stats`."""
    life, result = _states(run)
    message = run.get("state_message") or ""
    out: dict[str, Any] = {
        "job_id": run.get("job_id"),
        "run_id": run["run_id"],
        "number_in_job": run["run_id"],
        "original_attempt_run_id": run["run_id"],
        "run_name": run.get("run_name") or "Untitled",
        "run_type": run.get("run_type") or "JOB_RUN",
        "trigger": run.get("trigger") or "ONE_TIME",
        "creator_user_name": run.get("creator_user_name") or "",
        "state": state_json(life, result, message),
        "status": status_json(life, result, message),
        "start_time": run["start_time"],
        "end_time": run.get("end_time") or 0,
        "setup_duration": 0,
        "execution_duration": 0,
        "cleanup_duration": 0,
        "run_duration": _duration(run),
        "queue_duration": run.get("queue_duration") or 0,
        "attempt_number": 0,
        "format": "MULTI_TASK",
        "tasks": [task_run_json(r, iterations=(for_each_iterations or {}).get(r["task_run_id"]))
                  for r in task_rows],
        "job_parameters": run.get("job_parameters") or [],
    }
    if run.get("job_id") is None:
        out.pop("job_id")
    if life is LifeCycleState.QUEUED:
        out["state"]["queue_reason"] = message
    if run.get("parent_task_run_id"):
        out["trigger_info"] = {"run_id": run["parent_task_run_id"]}
    elif run.get("trigger_info"):  # nbjobs: a file arrival's location and new files
        out["trigger_info"] = dict(run["trigger_info"])
    if iterations is not None:
        out["iterations"] = [task_run_json(r) for r in iterations]
    if repairs is not None:
        out["repair_history"] = repair_history_json(run, repairs, history_task_runs or {})
    return out


def repair_history_json(run: dict, repairs: list[dict], task_run_ids: dict[int | None, list[int]]) -> list[dict]:
    """`repair_history`: the ORIGINAL item first, then one REPAIR item per repair."""
    first_end = repairs[0]["start_time"] if repairs else (run.get("end_time") or 0)
    original_life = LifeCycleState.TERMINATED if repairs else LifeCycleState(run["life_cycle_state"])
    original_result = None
    if not repairs and run.get("result_state"):
        original_result = ResultState(run["result_state"])
    elif repairs and (repairs[0].get("request") or {}).get("previous_result_state"):
        original_result = ResultState(repairs[0]["request"]["previous_result_state"])
    items = [{
        "type": "ORIGINAL", "start_time": run["start_time"], "end_time": first_end,
        "state": state_json(original_life, original_result), "status": status_json(original_life, original_result),
        "task_run_ids": task_run_ids.get(None, []),
    }]
    for repair in repairs:
        life, result = _states(repair)
        items.append({
            "type": "REPAIR", "id": repair["repair_id"], "start_time": repair["start_time"],
            "end_time": repair.get("end_time") or 0, "state": state_json(life, result),
            "status": status_json(life, result), "task_run_ids": task_run_ids.get(repair["repair_id"], []),
        })
    return items


def run_output_json(task_row: dict, run: dict, *, logs: str | None = None) -> dict:
    """A `RunOutput` (runs/get-output) of one task run."""
    out: dict[str, Any] = {"metadata": {**task_run_json(task_row), "job_id": run.get("job_id"),
                                        "job_run_id": run["run_id"]}}
    kind = kind_of(task_row["task"])
    if kind is not None:
        kind.output_json(out, task_row)
    if logs is not None:
        out["logs"] = logs[-OUTPUT_LIMIT:]
        out["logs_truncated"] = len(logs) > OUTPUT_LIMIT
    if task_row.get("error"):
        out["error"] = task_row["error"]
    if task_row.get("error_trace"):
        out["error_trace"] = task_row["error_trace"]
    return out
