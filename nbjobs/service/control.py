"""runs/cancel, runs/cancel-all and runs/delete (Jobs API 2.2), also of runs executing in another process."""
from __future__ import annotations

import os
import shutil

from .._proc import pid_alive
from ..errors import InvalidParameterValue, InvalidState, ResourceDoesNotExist
from ..runner import RunDriver
from ..store import ACTIVE_STATES, Store


class ControlMixin:
    """The verbs of `Workspace` that stop and delete runs."""

    store: Store
    _drivers: dict[int, RunDriver | None]

    def cancel_run(self, run_id: int) -> None:
        """runs/cancel of a job run or a task run, also one executing in another process (the driver
        polls a cancel request in the store). Asynchronous: the run may still be active on return.
        Running tasks are stopped (kernels and subprocesses killed) and end CANCELED; tasks after
        them end UPSTREAM_CANCELED unless their run_if lets them run (e.g. ALL_DONE cleanup)."""
        run = self.store.get_run(int(run_id))
        if run is None:
            task_row = self.store.get_task_run(int(run_id))
            if task_row is None:
                raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
            if task_row["life_cycle_state"] not in ACTIVE_STATES:
                return
            self.store.request_task_cancel(task_row["task_run_id"])
            run = self._run_row(task_row["run_id"])
            if run["life_cycle_state"] in ACTIVE_STATES and not self._driven(run):
                self.store.end_run(run["run_id"], life_cycle_state="TERMINATED", result_state="CANCELED",
                                   message="Canceled by request (no process was executing the run).")
            self._poke(run["run_id"])
            return
        if run["life_cycle_state"] not in ACTIVE_STATES:
            return
        self.store.request_cancel(run["run_id"])
        if not self._driven(run):
            self.store.end_run(run["run_id"], life_cycle_state="TERMINATED", result_state="CANCELED",
                               message="Canceled by request (no process was executing the run).")
        self._poke(run["run_id"])

    def cancel_all_runs(self, job_id: int | None = None, all_queued_runs: bool = False) -> None:
        """runs/cancel-all: every active run of `job_id`; or, with all_queued_runs and no job_id,
        every QUEUED run of the workspace. Asynchronous, like cancel_run."""
        if job_id is None and not all_queued_runs:
            raise InvalidParameterValue("cancel_all_runs: give job_id (cancel that job's active runs), or "
                                        "all_queued_runs=true (cancel every queued run).")
        if job_id is not None:
            self._job_row(job_id)
            rows = self.store.list_runs(job_id=int(job_id), active_only=True)
            if all_queued_runs:
                rows = [r for r in rows if r["life_cycle_state"] == "QUEUED"] or rows
        else:
            rows = [r for r in self.store.list_runs(active_only=True) if r["life_cycle_state"] == "QUEUED"]
        for row in rows:
            self.cancel_run(row["run_id"])

    def delete_run(self, run_id: int) -> None:
        """runs/delete of a finished run (its outputs folder too). An active run is refused."""
        run = self.store.get_run(int(run_id))
        if run is None:
            if self.store.get_task_run(int(run_id)) is not None:
                raise InvalidParameterValue(f"Run {run_id} is a task run; delete its job run instead.")
            raise ResourceDoesNotExist(f"Run {run_id} does not exist.")
        if run["life_cycle_state"] in ACTIVE_STATES:
            raise InvalidState(f"Run {run_id} is {run['life_cycle_state']}; cancel it (nbjobs runs cancel "
                               f"{run_id}) and wait for it to end before deleting it.")
        self.store.delete_run(run["run_id"], keep_token=True)
        shutil.rmtree(self.store.runs_dir / str(run["run_id"]), ignore_errors=True)

    def _driven(self, run: dict) -> bool:
        """Some live process executes (or is about to execute) this run."""
        if run["run_id"] in self._drivers:
            return True
        pid = run.get("pid")
        if pid is None or pid == os.getpid():
            return False
        return pid_alive(pid)

    def _poke(self, run_id: int) -> None:
        driver = self._drivers.get(run_id)
        if driver is not None:
            driver.poke()
