"""The job model, its loaders (JSON, YAML, bundles) and validation."""
from .load import LoadedJob, load_job, parse_job_settings
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
from .validate import JobDefinitionError, Problem, find_cycle, validate_job_settings

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
    "find_cycle",
    "load_job",
    "parse_job_settings",
    "validate_job_settings",
]
