"""runs/repair (Jobs API 2.2): rerun the failed or named tasks of a finished run, inside that run."""
from __future__ import annotations

from typing import Iterable, Mapping

from ..contract import REPAIR_RERUN_DEPENDENT_TASKS
from ..errors import InvalidParameterValue, InvalidState, ResourceDoesNotExist
from ..events import EventHandler
from ..refs import ReferenceResolutionError, RefContext, resolve
from ..spec import JobSettings
from ..states import ResultState
from ..store import ACTIVE_STATES, Store, utc_from_ms
from .recovery import recover_orphans
from .runs import _subset


class RepairMixin:
    """runs/repair of `Workspace`."""

    store: Store

    def repair_run(self, run_id: int, *, rerun_tasks: Iterable[str] | str | None = None,
                   rerun_all_failed_tasks: bool = False,
                   rerun_dependent_tasks: bool = REPAIR_RERUN_DEPENDENT_TASKS,
                   latest_repair_id: int | None = None, job_parameters: Mapping[str, str] | None = None,
                   wait: bool = True, on_event: EventHandler | None = None,
                   concurrency: int | None = None) -> dict:
        """runs/repair: rerun the failed (or the named) tasks of a finished run, and the tasks after
        them that did not succeed (every task after them with `rerun_dependent_tasks`), inside the
        same run with new task run ids; the other tasks keep their results and task values. Uses
        the job's current settings. wait=False returns `{"repair_id"}` with the run already PENDING;
        wait=True returns the repaired run's runs/get JSON."""
        from ..plan import JobGraph, repair_selection
        from ..runner import plan_task
        recover_orphans(self.store)
        run = self.store.get_run(int(run_id))
        if run is None:
            if self.store.get_task_run(int(run_id)) is not None:
                raise InvalidParameterValue(f"Run {run_id} is a task run; repair its job run (the run_id of the "
                                            "whole run) and name the task with rerun_tasks.")
            raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
        run_id = run["run_id"]
        if run["life_cycle_state"] in ACTIVE_STATES:
            raise InvalidState(f"Run {run_id} is still {run['life_cycle_state']}; wait for it to finish or "
                               f"cancel it before repairing.")
        repairs = self.store.repairs(run_id)
        if repairs and latest_repair_id is None:
            latest = repairs[-1]["repair_id"]
            raise InvalidParameterValue(
                "The latest repair ID needs to be provided in order to create a new repair: "
                f"run {run_id} was repaired before; pass latest_repair_id={latest} (--latest-repair-id {latest}).")
        if latest_repair_id is not None:
            latest = repairs[-1]["repair_id"] if repairs else None
            if int(latest_repair_id) != latest:
                which = f"its latest repair is {latest}" if latest else "it has not been repaired yet"
                raise InvalidParameterValue(
                    f"latest_repair_id {latest_repair_id} is not the latest repair of run {run_id} ({which}); "
                    + (f"pass latest_repair_id={latest}." if latest else "leave latest_repair_id out."))
        if isinstance(rerun_tasks, str):
            rerun_tasks = [k.strip() for k in rerun_tasks.split(",") if k.strip()]
        if rerun_tasks is not None and not rerun_tasks:
            rerun_tasks = None
        if (rerun_tasks is None) == (not rerun_all_failed_tasks):
            raise InvalidParameterValue(
                "Give exactly one of rerun_tasks (the task keys to rerun) and rerun_all_failed_tasks=true "
                "(--rerun-tasks a,b or --rerun-all-failed-tasks).")
        job = self.store.get_job(run["job_id"]) if run["job_id"] is not None else None
        current = job["settings"] if job else run["settings"]  # stored as a validated model's to_dict()
        settings = _subset(current, set(run["only"]) if run.get("only") is not None else None)
        model = JobSettings.model_validate(settings)
        graph = JobGraph(plan_task(t) for t in model.tasks)
        rows = {r["task_key"]: r for r in self.store.task_runs(run_id)}
        results = {k: ResultState(r["result_state"]) for k, r in rows.items() if r["result_state"] and k in graph}
        outcomes = {k: r["condition_outcome"] for k, r in rows.items()}
        try:
            selection = repair_selection(graph, results, rerun_tasks=rerun_tasks,
                                         rerun_all_failed=bool(rerun_all_failed_tasks),
                                         rerun_dependent_tasks=rerun_dependent_tasks)
        except ValueError as exc:
            raise InvalidParameterValue(f"rerun_tasks: {exc}" if rerun_tasks is not None else str(exc)) from None
        if not selection:
            raise InvalidParameterValue(
                f"Run {run_id} has no failed task to repair (every task succeeded); name the tasks to rerun "
                "with rerun_tasks (--rerun-tasks a,b).")
        parameters = self._repair_parameters(run, model, job_parameters)
        request = {"rerun_tasks": list(rerun_tasks) if rerun_tasks is not None else None,
                   "rerun_all_failed_tasks": bool(rerun_all_failed_tasks),
                   "rerun_dependent_tasks": bool(rerun_dependent_tasks),
                   "job_parameters": dict(job_parameters or {}), "selected": sorted(selection),
                   "previous_result_state": run["result_state"]}
        order = [t.task_key for t in model.tasks if t.task_key in selection]
        repair_id, _ = self.store.create_repair(
            run_id, request, tasks=[(k, model.task(k).model_dump(exclude_none=True)) for k in order],
            settings=settings, job_parameters=parameters)
        done = {k: (results[k], outcomes.get(k)) for k in graph.tasks if k not in selection and k in results}
        result = self.execute(run_id, wait=wait, on_event=on_event, concurrency=concurrency, repair_id=repair_id,
                              done=done)
        return result if wait else {"repair_id": repair_id}

    def _repair_parameters(self, run: dict, settings: JobSettings,
                           overrides: Mapping[str, str] | None) -> list[dict] | None:
        """The run's job parameter values with the repair's overrides (and any parameter added since)."""
        if not overrides and {p["name"] for p in run["job_parameters"]} == {p.name for p in settings.parameters}:
            return None
        definitions = {p.name: p.default for p in settings.parameters or []}
        overrides = {str(k): str(v) for k, v in (overrides or {}).items()}
        unknown = sorted(set(overrides) - set(definitions))
        if unknown:
            raise InvalidParameterValue(
                f"job_parameters: the job has no parameter named {', '.join(repr(u) for u in unknown)}. "
                f"Defined parameters: {', '.join(sorted(definitions)) or 'none'}.")
        previous = {p["name"]: p["value"] for p in run["job_parameters"]}
        ctx = RefContext(job_id=run["job_id"], job_name=run["run_name"], run_id=run["run_id"],
                         repair_count=run["repair_count"] + 1, start_time=utc_from_ms(run["start_time"]),
                         trigger_type=(run["trigger"] or "ONE_TIME").lower(),
                         trigger_time=utc_from_ms(run["trigger_time"]),
                         file_arrival_location=(run.get("trigger_info") or {}).get("file_arrival_location"))
        out = []
        try:
            for name, default in definitions.items():
                if name in overrides:
                    value = resolve(overrides[name], ctx)
                elif name in previous:
                    value = previous[name]
                else:
                    value = resolve(default or "", ctx)
                out.append({"name": name, "default": default, "value": value})
        except ReferenceResolutionError as exc:
            raise InvalidParameterValue(f"job_parameters: {exc}") from None
        return out
