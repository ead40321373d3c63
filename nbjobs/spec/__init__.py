"""The job model, its loaders (JSON, YAML, bundles) and validation."""
from .job_file import load_job
from .load import LoadedJob, parse_job_settings
from .models import (
    ConditionTask,
    ForEachTask,
    JobParameterDefinition,
    JobSettings,
    NotebookTask,
    RunJobTask,
    SparkPythonTask,
    Task,
    TaskDependency,
)
from ..errors import JobDefinitionError, Problem
from .validate import validate_job_settings

__all__ = [
    "ConditionTask",
    "ForEachTask",
    "JobDefinitionError",
    "JobParameterDefinition",
    "JobSettings",
    "LoadedJob",
    "NotebookTask",
    "Problem",
    "RunJobTask",
    "SparkPythonTask",
    "Task",
    "TaskDependency",
    "load_job",
    "parse_job_settings",
    "validate_job_settings",
]
