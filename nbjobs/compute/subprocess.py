"""Python scripts as asyncio subprocesses: output to logs.txt, the process group killed on cancel."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from ..kernel.context import (CONTEXT_FILE, ENV_VAR, EXIT_FILE, LOGS_FILE, VALUES_FILE, TaskContext,
                              read_exit_value, read_values)
from ..kernel.script_main import bootstrap_code
from .base import TaskOutput

TRACE_LINES = 100  # error_trace: the tail of the logs
_TAIL_BYTES = 256 * 1024


async def run_script_subprocess(python_file: Path, args: list[str], context: TaskContext, workdir: Path, *,
                                python: str | None = None, env: dict[str, str] | None = None) -> TaskOutput:
    """The script as an asyncio subprocess; stdout+stderr to `<run_dir>/logs.txt`."""
    python_file = Path(python_file)
    run_dir = Path(context.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in (VALUES_FILE, EXIT_FILE):
        (run_dir / stale).unlink(missing_ok=True)
    context_path = context.save(run_dir / CONTEXT_FILE)
    logs = run_dir / LOGS_FILE
    environ = dict(os.environ, **(env or {}))
    environ.update({ENV_VAR: str(context_path), "PYTHONUNBUFFERED": "1"})
    posix = os.name == "posix"
    with open(logs, "wb") as sink:
        try:
            proc = await asyncio.create_subprocess_exec(
                # `python -c BOOTSTRAP file args` runs like `python file args`, with databricks.sdk.runtime
                # giving nbjobs' dbutils in the script (nbjobs.kernel.script_main)
                python or sys.executable, "-c", bootstrap_code(), str(python_file), *[str(a) for a in args],
                cwd=str(workdir),
                env=environ, stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=asyncio.subprocess.STDOUT,
                start_new_session=posix)
        except OSError as exc:
            return TaskOutput(error=f"cannot start {python_file.name}: {exc}", logs_path=logs)
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            _kill(proc, posix)
            await asyncio.wait({asyncio.ensure_future(proc.wait())}, timeout=10)
            raise
    return script_output(python_file.name, code, run_dir, logs)


def script_output(name: str, code: int, run_dir: Path, logs: Path) -> TaskOutput:
    """A finished script's TaskOutput: values, exit value, and on failure the summary and log tail."""
    output = TaskOutput(exit_value=read_exit_value(run_dir), values=read_values(run_dir), logs_path=logs)
    if code != 0:
        lines = _tail(logs)
        output.error = _summary(name, code, lines)
        output.error_trace = "\n".join(lines[-TRACE_LINES:]) or None
    return output


def _kill(proc: asyncio.subprocess.Process, posix: bool) -> None:
    try:
        if posix:
            os.killpg(proc.pid, signal.SIGKILL)  # the script and anything it started
        else:  # pragma: no cover
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path) -> list[str]:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL_BYTES))
        text = f.read().decode("utf-8", errors="replace")
    return text.rstrip().splitlines()


def _summary(name: str, code: int, lines: list[str]) -> str:
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:  # pragma: no cover
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    last = _exception_line(lines)
    return f"{name} {how}: {last}" if last else f"{name} {how}"


def _exception_line(lines: list[str]) -> str | None:
    """The `Type: message` line ending the last traceback, else the last line written."""
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last):")]
    if starts:
        for line in lines[starts[-1] + 1:]:
            if line and not line[0].isspace():
                return line.strip()
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return None
