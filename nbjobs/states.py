"""Run and task states, named as the Jobs API names them (databricks-sdk `jobs.RunLifeCycleState`, `jobs.RunResultState`, `jobs.RunStatus`)."""
from __future__ import annotations

from enum import Enum


class _StrEnum(str, Enum):
    def __str__(self) -> str:  # "SUCCESS", not "ResultState.SUCCESS"
        return self.value


class LifeCycleState(_StrEnum):
    QUEUED = "QUEUED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    SKIPPED = "SKIPPED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    BLOCKED = "BLOCKED"
    WAITING_FOR_RETRY = "WAITING_FOR_RETRY"

    @property
    def is_terminal(self) -> bool:
        return self in (LifeCycleState.TERMINATED, LifeCycleState.SKIPPED, LifeCycleState.INTERNAL_ERROR)


class ResultState(_StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    TIMEDOUT = "TIMEDOUT"
    CANCELED = "CANCELED"
    MAXIMUM_CONCURRENT_RUNS_REACHED = "MAXIMUM_CONCURRENT_RUNS_REACHED"
    EXCLUDED = "EXCLUDED"
    SUCCESS_WITH_FAILURES = "SUCCESS_WITH_FAILURES"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    UPSTREAM_CANCELED = "UPSTREAM_CANCELED"
    DISABLED = "DISABLED"

    @property
    def is_success(self) -> bool:
        """Counts as success for downstream run_if (EXCLUDED and DISABLED do, as in the Jobs API docs on run_if)."""
        return self in _SUCCESS_KIND

    @property
    def is_failure(self) -> bool:
        """Counts as a failed dependency for run_if (AT_LEAST_ONE_FAILED, ALL_FAILED...)."""
        return self in _FAILURE_KIND

    @property
    def is_canceled(self) -> bool:
        return self in (ResultState.CANCELED, ResultState.UPSTREAM_CANCELED)

    @property
    def is_excluded(self) -> bool:
        """Not run because a branch or condition excluded it; exclusion flows downstream."""
        return self in (ResultState.EXCLUDED, ResultState.DISABLED)

    @property
    def executed(self) -> bool:
        """The task actually ran (as opposed to being skipped by the planner)."""
        return self in (ResultState.SUCCESS, ResultState.FAILED, ResultState.TIMEDOUT, ResultState.CANCELED)


_SUCCESS_KIND = frozenset({ResultState.SUCCESS, ResultState.EXCLUDED, ResultState.DISABLED,
                           ResultState.SUCCESS_WITH_FAILURES})
_FAILURE_KIND = frozenset({ResultState.FAILED, ResultState.TIMEDOUT, ResultState.UPSTREAM_FAILED,
                           ResultState.MAXIMUM_CONCURRENT_RUNS_REACHED})


class RunIf(_StrEnum):
    ALL_SUCCESS = "ALL_SUCCESS"
    AT_LEAST_ONE_SUCCESS = "AT_LEAST_ONE_SUCCESS"
    NONE_FAILED = "NONE_FAILED"
    ALL_DONE = "ALL_DONE"
    AT_LEAST_ONE_FAILED = "AT_LEAST_ONE_FAILED"
    ALL_FAILED = "ALL_FAILED"


class ConditionOp(_StrEnum):
    EQUAL_TO = "EQUAL_TO"
    NOT_EQUAL = "NOT_EQUAL"
    GREATER_THAN = "GREATER_THAN"
    GREATER_THAN_OR_EQUAL = "GREATER_THAN_OR_EQUAL"
    LESS_THAN = "LESS_THAN"
    LESS_THAN_OR_EQUAL = "LESS_THAN_OR_EQUAL"


# status (databricks-sdk `jobs.RunStatus`: state and termination_details), derived from (life_cycle_state, result_state).
_STATUS_STATE = {
    LifeCycleState.QUEUED: "QUEUED", LifeCycleState.PENDING: "PENDING", LifeCycleState.RUNNING: "RUNNING",
    LifeCycleState.TERMINATING: "TERMINATING", LifeCycleState.TERMINATED: "TERMINATED",
    LifeCycleState.SKIPPED: "TERMINATED", LifeCycleState.INTERNAL_ERROR: "TERMINATED",
    LifeCycleState.BLOCKED: "BLOCKED", LifeCycleState.WAITING_FOR_RETRY: "WAITING",
}

_TERMINATION = {
    ResultState.SUCCESS: ("SUCCESS", "SUCCESS"),
    ResultState.SUCCESS_WITH_FAILURES: ("SUCCESS_WITH_FAILURES", "SUCCESS"),
    ResultState.FAILED: ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    ResultState.TIMEDOUT: ("CANCELED", "SUCCESS"),
    ResultState.CANCELED: ("USER_CANCELED", "SUCCESS"),
    ResultState.EXCLUDED: ("SKIPPED", "SUCCESS"),
    ResultState.DISABLED: ("DISABLED", "SUCCESS"),
    ResultState.UPSTREAM_FAILED: ("SKIPPED", "CLIENT_ERROR"),
    ResultState.UPSTREAM_CANCELED: ("SKIPPED", "SUCCESS"),
    ResultState.MAXIMUM_CONCURRENT_RUNS_REACHED: ("MAX_CONCURRENT_RUNS_EXCEEDED", "CLIENT_ERROR"),
}


def life_cycle_for(result: ResultState) -> LifeCycleState:
    """The terminal life_cycle_state paired with a result (tasks that never ran are SKIPPED)."""
    if result.executed or result in (ResultState.SUCCESS_WITH_FAILURES,):
        return LifeCycleState.TERMINATED
    return LifeCycleState.SKIPPED


def status_json(life: LifeCycleState, result: ResultState | None, message: str = "",
                internal_error: bool = False) -> dict:
    """The V2 `status` object for a run or task run."""
    out: dict = {"state": _STATUS_STATE[life]}
    if life == LifeCycleState.INTERNAL_ERROR or internal_error:
        out["termination_details"] = {"code": "INTERNAL_ERROR", "type": "INTERNAL_ERROR", "message": message}
    elif result is not None and life.is_terminal:
        code, kind = _TERMINATION[result]
        out["termination_details"] = {"code": code, "type": kind, "message": message}
    if life == LifeCycleState.QUEUED:
        out["queue_details"] = {"code": "MAX_CONCURRENT_RUNS_REACHED", "message": message}
    return out


def state_json(life: LifeCycleState, result: ResultState | None, message: str = "") -> dict:
    """The (deprecated, but read by the SDK waiter) `state` object."""
    out: dict = {"life_cycle_state": str(life), "state_message": message,
                 "user_cancelled_or_timedout": result in (ResultState.CANCELED, ResultState.TIMEDOUT)}
    if result is not None and life.is_terminal:
        out["result_state"] = str(result)
    return out
