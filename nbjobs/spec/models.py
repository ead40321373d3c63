"""The job model: pydantic v2 models named as the Jobs API (and databricks-sdk `service.jobs`) names them.

Every model keeps fields it does not declare (``extra="allow"``), so Databricks-only settings
(clusters, permissions, anything new) survive a load and are echoed back by ``model_dump``.
Scalars written in YAML without quotes (``limit: 10``, ``flag: true``) become the text Databricks
would see (``"10"``, ``"true"``) wherever the API wants a string. The payload model of each task
type nbjobs runs lives with its kind (`nbjobs.tasks.<kind>`); a task type a plug-in registers is kept
as JSON here and read through its kind's model (`TaskKind.payload`).
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from ..tasks.api_model import ApiModel, Text, as_text
from ..tasks.condition import ConditionTask
from ..tasks.for_each import ForEachTask
from ..tasks.notebook import NotebookTask
from ..tasks.python_script import SparkPythonTask
from ..tasks.run_job import RunJobTask

__all__ = ["ApiModel", "ConditionTask", "CronSchedule", "ForEachTask", "JobCluster", "JobEnvironment",
           "JobParameterDefinition", "JobSettings", "NotebookTask", "QueueSettings", "RunJobTask",
           "SparkPythonTask", "SqlTask", "TASK_TYPES", "Task", "TaskDependency", "Text", "as_text"]

# Every task type of the Jobs API `Task` object (a task has exactly one); dbt_cloud_task is
# dbt_platform_task's old name. Which of them nbjobs runs: `nbjobs.tasks.registry`.
TASK_TYPES: tuple[str, ...] = (
    "notebook_task", "spark_python_task", "python_wheel_task", "sql_task", "condition_task",
    "for_each_task", "run_job_task", "pipeline_task", "spark_jar_task", "spark_submit_task", "dbt_task",
    "dbt_platform_task", "dbt_cloud_task", "dashboard_task", "alert_task", "power_bi_task",
    "clean_rooms_notebook_task", "gen_ai_compute_task", "ai_runtime_task", "python_operator_task",
)


class TaskDependency(ApiModel):
    task_key: Text
    outcome: Text | None = None  # "true" / "false", only after a condition task


class SqlTask(ApiModel):
    warehouse_id: Text | None = None
    query: dict[str, Any] | None = None
    file: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None
    dashboard: dict[str, Any] | None = None
    parameters: dict[str, Text] | None = None


_Opaque = dict[str, Any] | None


class Task(ApiModel):
    task_key: Text
    description: Text | None = None
    depends_on: list[TaskDependency] = Field(default_factory=list)
    run_if: Text | None = None  # checked by validation (the six RunIf values)
    disabled: bool = False
    timeout_seconds: int | None = None
    max_retries: int | None = None
    min_retry_interval_millis: int | None = None
    retry_on_timeout: bool | None = None
    job_cluster_key: Text | None = None
    existing_cluster_id: Text | None = None
    new_cluster: _Opaque = None
    environment_key: Text | None = None
    libraries: list[Any] | None = None
    email_notifications: _Opaque = None
    webhook_notifications: _Opaque = None
    notification_settings: _Opaque = None
    health: _Opaque = None
    # task types (exactly one is set)
    notebook_task: NotebookTask | None = None
    spark_python_task: SparkPythonTask | None = None
    condition_task: ConditionTask | None = None
    for_each_task: ForEachTask | None = None
    run_job_task: RunJobTask | None = None
    sql_task: SqlTask | None = None
    python_wheel_task: _Opaque = None
    pipeline_task: _Opaque = None
    spark_jar_task: _Opaque = None
    spark_submit_task: _Opaque = None
    dbt_task: _Opaque = None
    dbt_platform_task: _Opaque = None
    dbt_cloud_task: _Opaque = None
    dashboard_task: _Opaque = None
    alert_task: _Opaque = None
    power_bi_task: _Opaque = None
    clean_rooms_notebook_task: _Opaque = None
    gen_ai_compute_task: _Opaque = None
    ai_runtime_task: _Opaque = None
    python_operator_task: _Opaque = None

    @property
    def task_type(self) -> str | None:
        """The name of the task's payload field, e.g. ``"notebook_task"`` (None when it has none);
        also a field a plug-in kind registered."""
        for name in TASK_TYPES:
            if getattr(self, name) is not None:
                return name
        from ..tasks.registry import kind_of
        kind = kind_of(self)
        return kind.field if kind is not None else None

    @property
    def payload(self) -> Any:
        """The task-type payload (a model, or a dict for types nbjobs does not run)."""
        kind = self.task_type
        if kind is None:
            return None
        value = getattr(self, kind, None)
        return value if value is not None else (self.model_extra or {}).get(kind)


class JobParameterDefinition(ApiModel):
    name: Text
    default: Text


class QueueSettings(ApiModel):
    enabled: bool


class CronSchedule(ApiModel):
    quartz_cron_expression: Text | None = None
    timezone_id: Text | None = None
    pause_status: Text | None = None


class JobCluster(ApiModel):
    job_cluster_key: Text | None = None
    new_cluster: _Opaque = None


class JobEnvironment(ApiModel):
    environment_key: Text | None = None
    spec: _Opaque = None


class JobSettings(ApiModel):
    name: Text = "Untitled"
    description: Text | None = None
    tags: dict[str, Text] = Field(default_factory=dict)
    tasks: list[Task] = Field(default_factory=list)
    job_clusters: list[JobCluster] | None = None
    environments: list[JobEnvironment] | None = None
    parameters: list[JobParameterDefinition] = Field(default_factory=list)
    max_concurrent_runs: int | None = None
    timeout_seconds: int | None = None
    queue: QueueSettings | None = None
    schedule: CronSchedule | None = None
    trigger: _Opaque = None
    continuous: _Opaque = None
    email_notifications: _Opaque = None
    webhook_notifications: _Opaque = None
    notification_settings: _Opaque = None
    health: _Opaque = None
    run_as: _Opaque = None
    git_source: _Opaque = None
    edit_mode: Text | None = None
    format: Text | None = None
    deployment: _Opaque = None

    def to_dict(self) -> dict[str, Any]:
        """The settings as Jobs API JSON, to store and echo: what was given (defaults and nulls left out)."""
        out = self.model_dump(mode="json", exclude_none=True, exclude_unset=True)
        return {"name": self.name, **out}

    def task(self, task_key: str) -> Task:
        """The task with this key (KeyError if there is none)."""
        for task in self.tasks:
            if task.task_key == task_key:
                return task
        raise KeyError(task_key)


ForEachTask.model_rebuild(_types_namespace={"Task": Task})
