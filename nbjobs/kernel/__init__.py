"""What runs inside a task's kernel or subprocess: the `dbutils` shim and the `TaskContext`.

Light to import (stdlib only); ipywidgets, IPython and papermill load only when used.
"""
from __future__ import annotations

from .context import TaskContext
from .dbutils import NotebookRunError, activate, current_context, dbutils, deactivate
from .widgets import InputWidgetNotDefined

__all__ = ["InputWidgetNotDefined", "NotebookRunError", "TaskContext", "activate", "current_context",
           "dbutils", "deactivate"]
