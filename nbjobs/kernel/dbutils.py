"""The `dbutils` shim: widgets, jobs.taskValues, notebook.exit/run.

One module-level object, `dbutils`. It works in a job when a task context is active (a notebook's
injected first cell calls `activate`; a script finds `NBJOBS_TASK_CONTEXT` in its environment), and
interactively otherwise. Stdlib only at import time.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import sdk_runtime
from .context import (CHILDREN_DIR, ENV_VAR, EXIT_FILE, VALUES_FILE, TaskContext,
                      read_exit_value, read_values, write_json_atomic)
from .widgets import InputWidgetNotDefined, WidgetsUtils

__all__ = ["InputWidgetNotDefined", "NotebookRunError", "activate", "deactivate", "dbutils"]

MAX_VALUE_BYTES = 48 * 1024
SKIPPED_CELL_SOURCE = "# nbjobs: not run, dbutils.notebook.exit() was called in an earlier cell\n"


class NotebookExit(BaseException):
    """Raised by `dbutils.notebook.exit` to stop the notebook; never an error (internal)."""

    def __init__(self, value: str):
        super().__init__(value)
        self.value = value


class NotebookRunError(RuntimeError):
    """A notebook run by `dbutils.notebook.run` failed or timed out."""


class _Session:
    """Process-wide state: the active task context and the values this task set."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, *, env_checked: bool = False) -> None:
        self._context: TaskContext | None = None
        self._env_checked = env_checked
        self.values: dict[str, Any] = {}
        self.exited = False
        self.children = 0
        self.scratch: Path | None = None

    def activate(self, context: TaskContext) -> None:
        self.reset(env_checked=True)
        self._context = context
        if context.run_dir:
            self.values = read_values(context.run_dir)

    def context(self) -> TaskContext | None:
        if self._context is None and not self._env_checked:
            self._env_checked = True
            path = os.environ.get(ENV_VAR)
            if path:
                try:
                    context = TaskContext.load(path)
                except (OSError, ValueError) as exc:
                    raise RuntimeError(f"{ENV_VAR}={path} does not name a readable task context: {exc}") from exc
                self.activate(context)
        return self._context


_session = _Session()


class TaskValuesUtils:
    """Databricks `dbutils.jobs.taskValues`."""

    def set(self, key: str, value: Any) -> None:
        """Set a task value (JSON, ≤ 48 KiB) that downstream tasks of this run can read."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"Task value key must be a non-empty string, got {key!r}")
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Task value '{key}' must be JSON-serialisable: {exc}") from None
        size = len(text.encode("utf-8"))
        if size > MAX_VALUE_BYTES:
            raise ValueError(f"Task value '{key}' is too large: its JSON form is {size:,} bytes; "
                             f"the limit is 48 KiB ({MAX_VALUE_BYTES:,} bytes)")
        ctx = _session.context()
        _session.values[key] = json.loads(text)  # stored as its JSON type (a tuple becomes a list)
        if ctx is not None and ctx.run_dir:
            write_json_atomic(Path(ctx.run_dir) / VALUES_FILE, _session.values)

    def get(self, taskKey: str, key: str, default: Any = None, debugValue: Any = None) -> Any:  # noqa: N803
        """A value set by `taskKey` in this run (an upstream task, or this task itself)."""
        ctx = _session.context()
        if ctx is None:
            if debugValue is None:
                raise TypeError("Must pass debugValue when calling get outside of a job context. "
                                "debugValue cannot be None.")
            return debugValue
        if taskKey == ctx.task_key:
            values = _session.values
        elif taskKey in ctx.upstream_tasks:
            values = ctx.upstream_values.get(taskKey) or {}
        elif taskKey in ctx.task_keys:
            raise ValueError(f"Cannot read task values of '{taskKey}': task '{taskKey}' is not upstream of "
                             f"'{ctx.task_key}'; add it to depends_on")
        else:
            known = ", ".join(repr(k) for k in ctx.task_keys) or "none"
            raise ValueError(f"Cannot read task values of '{taskKey}': job '{ctx.job_name}' has no task "
                             f"'{taskKey}' (tasks: {known})")
        if key in values:
            return values[key]
        if default is not None:
            return default
        raise ValueError(f"Task '{taskKey}' did not set a task value with key '{key}' "
                         f"(pass default= to get a fallback)")

    def __repr__(self) -> str:
        return "<dbutils.jobs.taskValues: get, set>"


class JobsUtils:
    """Databricks `dbutils.jobs`."""

    def __init__(self) -> None:
        self.taskValues = TaskValuesUtils()  # noqa: N815

    def __repr__(self) -> str:
        return "<dbutils.jobs: taskValues>"


class NotebookUtils:
    """Databricks `dbutils.notebook`: exit and run."""

    def exit(self, value: Any) -> None:
        """End the notebook successfully with `value` (as a string) as its result."""
        text = str(value)
        ctx = _session.context()
        shell = _ipython()
        if ctx is not None:
            if ctx.run_dir:
                write_json_atomic(Path(ctx.run_dir) / EXIT_FILE, {"value": text})
            _session.exited = True
            if shell is None:  # a script task
                raise SystemExit(0)
        elif shell is None:
            print(f"Notebook exited: {text}")
            raise SystemExit(0)
        _install_exit_handler(shell)
        raise NotebookExit(text)

    def run(self, path: str, timeout_seconds: int, arguments: dict[str, Any] | None = None) -> str | None:
        """Run another notebook in a fresh kernel and return its exit value (None if it did not exit)."""
        from . import execute  # papermill, lazily

        ctx = _session.context()
        base = Path(ctx.notebook_path).parent if ctx is not None and ctx.notebook_path else Path.cwd()
        source = _find_notebook(base, path)
        params = {str(k): ("" if v is None else str(v)) for k, v in (arguments or {}).items()}
        if ctx is not None and ctx.run_dir:
            children = Path(ctx.run_dir) / CHILDREN_DIR
        else:
            if _session.scratch is None:
                _session.scratch = Path(tempfile.mkdtemp(prefix="nbjobs-notebook-run-"))
            children = _session.scratch
        children.mkdir(parents=True, exist_ok=True)
        while True:
            _session.children += 1
            name = f"{_session.children}-{source.stem}"
            if not (children / name).exists():
                break
        child_dir = children / name
        child_ctx = TaskContext(
            job_id=ctx.job_id if ctx else None, job_name=ctx.job_name if ctx else "",
            run_id=ctx.run_id if ctx else None, task_key=ctx.task_key if ctx else source.stem,
            task_run_id=ctx.task_run_id if ctx else None, attempt_number=ctx.attempt_number if ctx else 0,
            parameters=params, upstream_values=dict(ctx.upstream_values) if ctx else {},
            task_keys=list(ctx.task_keys) if ctx else [source.stem],
            upstream_tasks=list(ctx.upstream_tasks) if ctx else [], run_dir=str(child_dir),
            notebook_path=str(source))
        output = children / f"{name}.ipynb"
        result = execute.run_notebook(source, output, child_ctx, workdir=source.parent, parameters=params,
                                      timeout=timeout_seconds or None)
        if result.timed_out:
            raise NotebookRunError(f"Notebook '{path}' timed out after {timeout_seconds} seconds "
                                   f"(executed notebook: {output})")
        if result.error is not None:
            raise NotebookRunError(f"Notebook '{path}' failed: {result.error} (executed notebook: {output})")
        return read_exit_value(child_dir)

    def __repr__(self) -> str:
        return "<dbutils.notebook: exit, run>"


class DBUtils:
    """A local stand-in for Databricks `dbutils` (widgets, jobs.taskValues, notebook)."""

    def __init__(self) -> None:
        self.widgets = WidgetsUtils(_session.context)
        self.jobs = JobsUtils()
        self.notebook = NotebookUtils()

    def __repr__(self) -> str:
        ctx = _session.context()
        where = f"task '{ctx.task_key}' of job '{ctx.job_name}'" if ctx else "no job (interactive)"
        return f"<nbjobs dbutils: widgets, jobs.taskValues, notebook; {where}>"


dbutils = DBUtils()


def activate(context: TaskContext | str | os.PathLike, *, cwd: str | os.PathLike | None = None) -> DBUtils:
    """Enter job mode with `context` (or the path of a context.json) and, in IPython, wire the shell."""
    if not isinstance(context, TaskContext):
        context = TaskContext.load(context)
    _session.activate(context)
    install_runtime()
    if cwd is not None:
        os.chdir(cwd)
    shell = _ipython()
    if shell is not None:
        shell.user_ns["dbutils"] = dbutils
        shell.user_ns_hidden["dbutils"] = dbutils  # not listed by %who
        _install_exit_handler(shell)
        if _skip_after_exit not in shell.input_transformers_post:
            shell.input_transformers_post.append(_skip_after_exit)
    return dbutils


def deactivate() -> None:
    """Back to interactive mode (the environment variable is not read again)."""
    _session.reset(env_checked=True)
    sdk_runtime.uninstall()
    shell = _ipython()
    if shell is not None and _skip_after_exit in shell.input_transformers_post:
        shell.input_transformers_post.remove(_skip_after_exit)


def install_runtime() -> None:
    """`from databricks.sdk.runtime import dbutils` gives this dbutils (in this task process only)."""
    sdk_runtime.install(dbutils)


def current_context() -> TaskContext | None:
    """The active task context, or None outside a job."""
    return _session.context()


# -- IPython wiring -------------------------------------------------------------------------------

def _ipython() -> Any:
    ipython = sys.modules.get("IPython")  # never import IPython in a plain script
    return ipython.get_ipython() if ipython is not None else None


def _skip_after_exit(lines: list[str]) -> list[str]:
    """input_transformers_post hook: once the notebook exited, every later cell is a no-op."""
    return [SKIPPED_CELL_SOURCE] if _session.exited else lines


def _on_exit(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
    """Custom exception handler for NotebookExit: show the value and make the cell succeed."""
    result = shell.displayhook.exec_result
    if result is not None and result.error_in_exec is value:
        result.error_in_exec = None  # the execute reply is then 'ok': no error, execution goes on
    from IPython.display import publish_display_data
    publish_display_data({"text/plain": f"Notebook exited: {getattr(value, 'value', value)}"},
                         metadata={"nbjobs": {"exit": True}})
    return []


def _install_exit_handler(shell: Any) -> None:
    if NotebookExit not in getattr(shell, "custom_exceptions", ()):
        shell.set_custom_exc((NotebookExit,), _on_exit)


def _find_notebook(base: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    tried = [candidate] if candidate.suffix in (".ipynb", ".py") else \
        [candidate, candidate.with_name(candidate.name + ".ipynb"), candidate.with_name(candidate.name + ".py")]
    for option in tried:
        if option.is_file():
            return option.resolve()
    raise FileNotFoundError(f"Notebook '{path}' not found (looked for {' and '.join(str(t) for t in tried)})")
