"""Prepare and execute one notebook with papermill in a fresh kernel (blocking; imports papermill).

Shared by the notebook task executor and `dbutils.notebook.run`. The source notebook is never written.
We drive papermill's own engine rather than `papermill.execute_notebook`, because the latter, given a
NotebookNode, embeds the whole input notebook in `metadata.papermill.input_path`, and its `cwd=` does
a process-wide `os.chdir` (unsafe in worker threads); the kernel's cwd is set per kernel instead.
"""
from __future__ import annotations

import keyword
import logging
import os
import re
import signal
import tempfile
import threading
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .context import CONTEXT_FILE, EXIT_FILE, VALUES_FILE, TaskContext

INJECTED_TAG = "injected-nbjobs"
PARAMETERS_TAG = "parameters"
EXIT_ENAME = "NotebookExit"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NBJOBS_ROOT = str(Path(__file__).resolve().parents[2])  # for kernels where nbjobs is not installed


@dataclass
class NotebookResult:
    """How an execution ended. `error` is None on success (including dbutils.notebook.exit)."""

    error: str | None = None
    error_trace: str | None = None
    exited: bool = False
    timed_out: bool = False
    cancelled: bool = False
    written: bool = False  # the executed notebook file exists


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class KernelHandle:
    """Lets another thread kill the kernel of an execution (cancel, timeout)."""

    def __init__(self) -> None:
        self.killed = False
        self._km: Any = None

    def manager_class(self) -> type:
        from jupyter_client.manager import AsyncKernelManager

        handle = self

        class _Manager(AsyncKernelManager):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                handle._km = self

            @property
            def ipykernel(self) -> bool:  # any kernelspec that launches ipykernel, not only "python3"
                try:
                    return any("ipykernel" in arg for arg in self.kernel_spec.argv)
                except Exception:
                    return bool(super().ipykernel)

            async def start_kernel(self, **kwargs: Any) -> None:
                if os.name == "posix" and self.ipykernel:  # ipc: no TCP port races, no TCP warning
                    self.transport = "ipc"
                    self.ip = os.path.join(tempfile.gettempdir(), f"nbjobs-{uuid.uuid4().hex[:12]}")
                await super().start_kernel(**kwargs)
                if handle.killed:
                    handle.kill()

        return _Manager

    def kill(self) -> None:
        """SIGKILL the kernel's process group; execution then fails with DeadKernelError."""
        self.killed = True
        provisioner = getattr(self._km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is None:
            return
        try:
            pgid = getattr(provisioner, "pgid", None)
            if pgid and hasattr(os, "killpg"):
                os.killpg(pgid, signal.SIGKILL)
            else:
                process.kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass


class _QuietWhenKilled(logging.Filter):
    """Drop papermill/nbclient's error logs about a kernel we killed on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        handle = getattr(_current, "handle", None)
        return not (handle is not None and handle.killed)


_current = threading.local()
_quiet = _QuietWhenKilled()


def kernel_name_of(nb: Any, override: str | None = None) -> str:
    return override or nb.metadata.get("kernelspec", {}).get("name") or "python3"


def _injected_source(context_path: Path, workdir: Path | None) -> str:
    cwd = f", cwd={str(workdir)!r}" if workdir is not None else ""
    return (
        "# nbjobs: task context (injected)\n"
        "try:\n"
        "    import nbjobs.kernel as _nbjobs_kernel\n"
        "except ImportError:  # a kernel without nbjobs installed\n"
        f"    __import__('sys').path.append({_NBJOBS_ROOT!r})\n"
        "    import nbjobs.kernel as _nbjobs_kernel\n"
        f"_nbjobs_kernel.activate({str(context_path)!r}{cwd})\n"
        "del _nbjobs_kernel"
    )


def load_notebook_text(text: str) -> Any:
    """papermill's `load_notebook_node`, from the notebook's JSON text (a notebook shipped to a worker)."""
    import nbformat
    from papermill import __version__

    nb = nbformat.reads(text, as_version=4)
    upgraded = nbformat.v4.upgrade(nb)
    if upgraded is not None:
        nb = upgraded
    if not hasattr(nb.metadata, "papermill"):
        nb.metadata["papermill"] = {"default_parameters": {}, "parameters": {}, "environment_variables": {},
                                    "version": __version__}
    for cell in nb.cells:
        if not hasattr(cell.metadata, "tags"):
            cell.metadata["tags"] = []
        if not hasattr(cell.metadata, "papermill"):
            cell.metadata["papermill"] = {}
    return nb


def prepare_notebook(source: Path, context_path: Path, parameters: dict[str, str], *,
                     workdir: Path | None = None, kernel_name: str | None = None, text: str | None = None) -> Any:
    """Load `source` (or its JSON `text`), add the injected nbjobs cell and (after a `parameters` cell)
    the parameters."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    from papermill.utils import find_first_tagged_cell_index

    if Path(source).suffix.lower() == ".py":  # a Databricks source-format (or plain) .py notebook
        nb = _py_notebook(Path(source), text)
    else:
        nb = load_notebook_node(str(source)) if text is None else load_notebook_text(text)
    if find_first_tagged_cell_index(nb, PARAMETERS_TAG) >= 0:
        names = {k: v for k, v in parameters.items() if k.isidentifier() and not keyword.iskeyword(k)}
        if names:
            language = nb.metadata.get("kernelspec", {}).get("language") or \
                nb.metadata.get("language_info", {}).get("name") or "python"
            nb = parameterize_notebook(nb, names, kernel_name=kernel_name_of(nb, kernel_name), language=language)
    cell = nbformat.v4.new_code_cell(_injected_source(context_path, workdir))
    cell.metadata["tags"] = [INJECTED_TAG]
    cell.metadata["jupyter"] = {"source_hidden": True}
    cell.metadata["papermill"] = {}
    nb.cells.insert(0, cell)
    return nb


def _py_notebook(source: Path, text: str | None = None) -> Any:
    """A `.py` notebook (its file, or its `text`) as papermill's loader would give it."""
    import nbformat

    from .source_format import from_source, read_notebook

    nb = read_notebook(source) if text is None else from_source(text, base_dir=source.parent)
    return load_notebook_text(nbformat.writes(nb))


def _cell_label(nb: Any, index: int) -> str:
    tags = nb.cells[index].metadata.get("tags", [])
    if INJECTED_TAG in tags:
        return "in the injected nbjobs cell"
    if "injected-parameters" in tags:
        return "in the injected parameters cell"
    number = sum(1 for c in nb.cells[: index + 1]
                 if not {INJECTED_TAG, "injected-parameters"} & set(c.metadata.get("tags", [])))
    return f"in cell {number}"


def _first_error(nb: Any) -> tuple[int, dict] | None:
    """The first error output (papermill's rules: SystemExit(0) is not an error)."""
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            if output.get("ename") == "SystemExit" and output.get("evalue") in ("", "0"):
                continue
            return index, output
        if cell.get("metadata", {}).get("papermill", {}).get("exception") is True:
            return index, {"ename": "CellExecutionError", "evalue": "the cell failed", "traceback": []}
    return None


def _finish_exit(nb: Any) -> None:
    """After dbutils.notebook.exit: later cells show as not run; an exit 'error' becomes the note."""
    exit_index = None
    for index, cell in enumerate(nb.cells):
        outputs = cell.get("outputs", [])
        for pos, output in enumerate(outputs):
            if output.get("output_type") == "error" and output.get("ename") == EXIT_ENAME:
                import nbformat
                outputs[pos] = nbformat.v4.new_output(
                    "display_data", data={"text/plain": f"Notebook exited: {output.get('evalue', '')}"},
                    metadata={"nbjobs": {"exit": True}})
                cell.metadata.setdefault("papermill", {})["exception"] = False
                exit_index = index
            elif output.get("metadata", {}).get("nbjobs", {}).get("exit"):
                exit_index = index
        if exit_index is not None:
            break
    if exit_index is None:
        return
    for cell in nb.cells[exit_index + 1:]:
        if cell.cell_type == "code":
            cell.execution_count = None
            cell.outputs = []
            cell.metadata["nbjobs"] = {"skipped": "dbutils.notebook.exit() was called"}
    nb.metadata.setdefault("papermill", {})["exception"] = False


def execute_prepared(nb: Any, source: Path, output: Path, *, workdir: Path, kernel_name: str | None = None,
                     handle: KernelHandle | None = None, exited: Path | None = None) -> NotebookResult:
    """Execute a prepared notebook; the executed notebook is written to `output`, also on failure."""
    from papermill.engines import papermill_engines
    from papermill.execute import prepare_notebook_metadata, remove_error_markers

    handle = handle or KernelHandle()
    output.parent.mkdir(parents=True, exist_ok=True)
    nb = prepare_notebook_metadata(nb, str(source), str(output))
    nb = remove_error_markers(nb)
    papermill_log = logging.getLogger("papermill")
    if _quiet not in papermill_log.filters:
        papermill_log.addFilter(_quiet)
    _current.handle = handle
    try:
        nb = papermill_engines.execute_notebook_with_engine(
            None, nb, kernel_name=kernel_name_of(nb, kernel_name), input_path=str(source),
            output_path=str(output), progress_bar=False, log_output=False, start_timeout=60,
            stdout_file=None, stderr_file=None,
            resources={"metadata": {"path": str(workdir)}},          # the kernel's cwd
            ipython_hist_file=":memory:",  # --HistoryManager.hist_file=:memory: for IPython kernels
            shutdown_kernel="immediate", kernel_manager_class=handle.manager_class())
    except Exception as exc:  # the kernel died, was killed, or could not start
        return failure_result(exc, nb, output, killed=handle.killed)
    finally:
        _current.handle = None
    return finish_notebook(nb, output, exited)


def failure_result(exc: BaseException, nb: Any, output: Path, *, killed: bool = False) -> NotebookResult:
    """The result of an execution that raised (the kernel died, was killed, or could not start)."""
    if killed:
        return NotebookResult(error="the kernel was stopped (cancelled or timed out)", cancelled=True,
                              written=output.exists())
    summary = f"{type(exc).__name__}: {strip_ansi(str(exc)).strip() or 'the kernel failed'}"
    summary = summary.splitlines()[0]
    if type(exc).__name__ == "DeadKernelError":  # "Kernel died" (often glued to the next sentence)
        summary = "DeadKernelError: the kernel died (it was killed, crashed or ran out of memory)"
    started = [i for i, c in enumerate(nb.cells) if c.metadata.get("papermill", {}).get("start_time")]
    if started:
        summary += f" ({_cell_label(nb, started[-1])})"
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return NotebookResult(error=summary, error_trace=strip_ansi(trace), written=output.exists())


def finish_notebook(nb: Any, output: Path, exited: Path | None = None) -> NotebookResult:
    """After execution: papermill's error markers or the exit handling; the notebook written to `output`."""
    from papermill.exceptions import PapermillExecutionError
    from papermill.execute import raise_for_execution_errors
    from papermill.iorw import write_ipynb

    found = _first_error(nb)
    if found is None or found[1].get("ename") == EXIT_ENAME:
        _finish_exit(nb)
        write_ipynb(nb, str(output))
        did_exit = found is not None or (exited is not None and exited.exists())
        return NotebookResult(exited=did_exit, written=True)
    index, error = found
    ename, evalue = error.get("ename", "Error"), strip_ansi(str(error.get("evalue", "")))
    trace = strip_ansi("\n".join(error.get("traceback") or [])) or f"{ename}: {evalue}"
    head = f"{ename}: {evalue}" if evalue else ename
    summary = f"{head.splitlines()[0] if head else ename} ({_cell_label(nb, index)})"
    try:
        raise_for_execution_errors(nb, str(output))  # papermill's error markers, then writes the notebook
    except PapermillExecutionError:
        pass
    if not output.exists():  # pragma: no cover - raise_for_execution_errors always writes
        write_ipynb(nb, str(output))
    return NotebookResult(error=summary, error_trace=trace, written=True)


def run_notebook(source: Path, output: Path, context: TaskContext, *, workdir: Path,
                 parameters: dict[str, str], kernel_name: str | None = None, timeout: float | None = None,
                 handle: KernelHandle | None = None) -> NotebookResult:
    """Write the context, prepare and execute `source` (blocking). `timeout` kills the kernel."""
    run_dir = Path(context.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in (VALUES_FILE, EXIT_FILE):
        (run_dir / stale).unlink(missing_ok=True)
    context_path = context.save(run_dir / CONTEXT_FILE)
    try:
        nb = prepare_notebook(source, context_path, parameters, workdir=workdir, kernel_name=kernel_name)
    except Exception as exc:
        return NotebookResult(error=f"cannot read notebook {source}: {type(exc).__name__}: {exc}",
                              error_trace=traceback.format_exc())
    handle = handle or KernelHandle()

    def work() -> NotebookResult:
        return execute_prepared(nb, source, output, workdir=workdir, kernel_name=kernel_name, handle=handle,
                                exited=run_dir / EXIT_FILE)

    if not timeout:
        return work()
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(work())
        except BaseException as exc:  # pragma: no cover - work() returns its failures
            box.append(exc)

    thread = threading.Thread(target=target, name=f"nbjobs-notebook-{source.stem}", daemon=True)
    thread.start()
    try:
        thread.join(timeout)
    except BaseException:  # e.g. the caller's kernel was interrupted: stop the child too
        handle.kill()
        thread.join(10)
        raise
    if thread.is_alive():
        handle.kill()
        thread.join(30)
        return NotebookResult(error=f"timed out after {timeout:g} seconds", timed_out=True,
                              written=output.exists())
    result = box[0]
    if isinstance(result, BaseException):  # pragma: no cover
        raise result
    return result

