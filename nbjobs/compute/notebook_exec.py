"""Execute a prepared notebook on a pooled kernel with papermill's engine pieces and nbclient's async API.

This is papermill's NBClient engine, driven asynchronously on a kernel that is already running:
`NotebookExecutionManager` keeps papermill's notebook and cell metadata (start/end times, durations,
status, exception), `PapermillNotebookClient` executes the cells and stops at the first error, and
`nbjobs.kernel.execute.finish_notebook` adds papermill's error cells and writes the result. What
differs from `papermill.execute_notebook`: no kernel start or shutdown on the task's path, and the
output notebook is written once at the end (and while a cell runs longer than `LIVE_SAVE_DELAY`)
instead of twice per cell.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Protocol

from ..kernel.execute import NotebookResult, failure_result, finish_notebook, kernel_name_of

LIVE_SAVE_DELAY = 1.0   # a cell running longer than this: write the notebook so progress shows
_quiet_log = logging.getLogger("nbjobs.compute.nbclient")
_quiet_log.setLevel(logging.CRITICAL)  # kernel deaths are reported by nbjobs itself
_quiet_log.propagate = False


def _classes() -> tuple[type, type]:
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NotebookExecutionManager

    class LazyExecutionManager(NotebookExecutionManager):
        """papermill's manager; a save is deferred until a cell has run for LIVE_SAVE_DELAY seconds."""

        def __init__(self, nb: Any, output_path: str, loop: asyncio.AbstractEventLoop):
            super().__init__(nb, output_path=None, log_output=False, progress_bar=False, autosave_cell_every=0)
            self.live_path = output_path
            self.loop = loop
            self._timer: asyncio.TimerHandle | None = None

        def save(self, **kwargs: Any) -> None:
            nb = kwargs.get("nb")
            if nb is not None:
                self.nb = nb
            if self._timer is None:
                self._timer = self.loop.call_later(LIVE_SAVE_DELAY, self._live_save)

        def _live_save(self) -> None:
            self._timer = None
            if any(c.metadata.get("papermill", {}).get("status") == self.RUNNING for c in self.nb.cells):
                from papermill.iorw import write_ipynb
                try:
                    write_ipynb(self.nb, self.live_path)
                except OSError:  # pragma: no cover - the run folder went away
                    pass
                self._timer = self.loop.call_later(LIVE_SAVE_DELAY, self._live_save)

        def stop(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    class PooledNotebookClient(PapermillNotebookClient):
        """papermill's client, on a kernel the pool started (no start, no shutdown here)."""

        async def async_papermill_execute_cells(self) -> None:
            from nbclient.exceptions import CellExecutionError

            for index, cell in enumerate(self.nb.cells):
                try:
                    self.nb_man.cell_start(cell, index)
                    await self.async_execute_cell(cell, index)
                except CellExecutionError as ex:
                    self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=ex)
                    break
                finally:
                    self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)

    return LazyExecutionManager, PooledNotebookClient


_CLASSES: tuple[type, type] | None = None


class RunningKernel(Protocol):
    """A started kernel to execute on (the pool's `PooledKernel`)."""

    client: Any            # a connected jupyter_client AsyncKernelClient
    kernel_name: str
    language_info: dict
    killed: bool

    def kill(self) -> None: ...


def warm_imports() -> None:
    """Import what executing a notebook needs. Call it on the pool loop: never import these in two
    threads at once (papermill's modules import each other; a concurrent first import can see one
    half-made)."""
    global _CLASSES
    import nbclient  # noqa: F401
    import papermill.execute  # noqa: F401
    import papermill.iorw  # noqa: F401
    import papermill.parameterize  # noqa: F401
    import papermill.utils  # noqa: F401
    if _CLASSES is None:
        _CLASSES = _classes()


async def execute_on_kernel(nb: Any, kernel: RunningKernel, source: Path, output: Path, *,
                            exited: Path | None = None, killed: Any = None) -> NotebookResult:
    """Execute prepared `nb` on `kernel`; the executed notebook is written to `output`, also on failure.

    Cancelling kills the kernel, writes what ran so far and re-raises. `killed()` tells whether the
    kernel was killed on purpose (then the result is "stopped", not a crash).
    """
    global _CLASSES
    from papermill.execute import prepare_notebook_metadata, remove_error_markers

    if _CLASSES is None:
        _CLASSES = _classes()
    manager_class, client_class = _CLASSES
    output.parent.mkdir(parents=True, exist_ok=True)
    nb = prepare_notebook_metadata(nb, str(source), str(output))
    nb = remove_error_markers(nb)
    loop = asyncio.get_running_loop()
    nb_man = manager_class(nb, str(output), loop)
    client = client_class(nb_man, km=None, kernel_name=kernel_name_of(nb, kernel.kernel_name),
                          log=_quiet_log, resources={"metadata": {"path": str(output.parent)}})
    client.kc = kernel.client
    client.reset_execution_trackers()
    nb_man.notebook_start()
    try:
        try:
            await client.async_papermill_execute_cells()
            if kernel.language_info:
                nb.metadata["language_info"] = kernel.language_info
            client.set_widgets_metadata()
        finally:
            nb_man.stop()
            nb_man.notebook_complete()
    except asyncio.CancelledError:
        kernel.kill()
        _write_quietly(nb, output)
        raise
    except Exception as exc:  # the kernel died or was killed
        was_killed = kernel.killed or bool(killed and killed())
        _write_quietly(nb, output)
        return failure_result(exc, nb, output, killed=was_killed)
    return finish_notebook(nb, output, exited)


def _write_quietly(nb: Any, output: Path) -> None:
    from papermill.iorw import write_ipynb
    try:
        write_ipynb(nb, str(output))
    except Exception:  # pragma: no cover
        pass
