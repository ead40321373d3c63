"""nbjobs: Databricks Lakeflow Jobs for Jupyter.

Names load lazily, so `from nbjobs import dbutils` inside a task stays cheap.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConditionTask": "nbjobs.spec",
    "ForEachTask": "nbjobs.spec",
    "InvalidParameterValue": "nbjobs.errors",
    "InvalidState": "nbjobs.errors",
    "JobDefinitionError": "nbjobs.errors",
    "JobParameterDefinition": "nbjobs.spec",
    "JobSettings": "nbjobs.spec",
    "LifeCycleState": "nbjobs.states",
    "JobsClient": "nbjobs.contract",
    "NbjobsError": "nbjobs.errors",
    "NotebookTask": "nbjobs.spec",
    "Problem": "nbjobs.errors",
    "ResourceDoesNotExist": "nbjobs.errors",
    "ResultState": "nbjobs.states",
    "RunEvent": "nbjobs.events",
    "RunIf": "nbjobs.states",
    "RunJobTask": "nbjobs.spec",
    "SparkPythonTask": "nbjobs.spec",
    "Task": "nbjobs.spec",
    "TaskDependency": "nbjobs.spec",
    "Workspace": "nbjobs.service",
    "connect": "nbjobs.client",
    "dbutils": "nbjobs.kernel",
    "load_job": "nbjobs.spec",
    "validate_job_settings": "nbjobs.spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nbjobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


def load_ipython_extension(ip: Any) -> None:
    """`%load_ext nbjobs`: the %%job / %job magics and `dbutils` in the notebook."""
    from .magics import load_ipython_extension as f
    f(ip)


if TYPE_CHECKING:  # pragma: no cover
    from .client import connect
    from .contract import JobsClient
    from .errors import (InvalidParameterValue, InvalidState, JobDefinitionError, NbjobsError, Problem,
                         ResourceDoesNotExist)
    from .events import RunEvent
    from .kernel import dbutils
    from .service import Workspace
    from .spec import (ConditionTask, ForEachTask, JobParameterDefinition, JobSettings, NotebookTask, RunJobTask,
                       SparkPythonTask, Task, TaskDependency, load_job, validate_job_settings)
    from .states import LifeCycleState, ResultState, RunIf
