"""The workspace: a folder (`NBJOBS_HOME`, default `./.nbjobs`) of jobs, runs and outputs, and its lifecycle."""
from __future__ import annotations

import getpass
import os
import sys
import weakref
from pathlib import Path
from typing import Any

from ..contract import default_home
from ..engine import RunEngine
from ..events import bus_for
from ..runner import RunDriver
from ..spec import JobSettings
from ..store import Store
from .recovery import recover_orphans
from .control import ControlMixin
from .jobs import JobsMixin
from .repair import RepairMixin
from .run_views import RunViewsMixin
from .runs import RunsMixin

_DRIVERS: dict[Path, dict[int, Any]] = {}
_OPEN: "weakref.WeakSet[Workspace]" = weakref.WeakSet()  # open workspaces of this process


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "nbjobs"


class Workspace(JobsMixin, RunsMixin, RunViewsMixin, RepairMixin, ControlMixin):
    """A workspace folder: its jobs, runs and outputs; runs execute in this process.

    Implements `nbjobs.contract.JobsClient`, as the HTTP client `nbjobs.connect(url)` does."""

    def __init__(self, home: str | os.PathLike | None = None, *, concurrency: int | None = None):
        self.store = Store(home if home is not None else default_home())
        self.home = self.store.home
        self.concurrency = concurrency
        self.user = _user()
        self.events = bus_for(self.home)  # every run of this folder executed in this process publishes here
        self._engine: RunEngine | None = None
        self._validated: dict[int, JobSettings] = {}  # run_id -> settings validated by _start_run
        # runs executing in this process (any Workspace of this folder): run_id -> RunDriver (None: starting)
        self._drivers: dict[int, RunDriver | None] = _DRIVERS.setdefault(self.home, {})
        recover_orphans(self.store)
        _OPEN.add(self)

    def __repr__(self) -> str:
        return f"<nbjobs.Workspace {self.home}>"

    @property
    def location(self) -> str:
        """Where runs execute (for messages): "workspace <folder>"."""
        try:
            return f"workspace {Path(self.home).relative_to(Path.cwd())}"
        except ValueError:
            return f"workspace {self.home}"

    @property
    def engine(self) -> RunEngine:
        """The background loop that executes runs started with `wait=False`."""
        if self._engine is None:
            self._engine = RunEngine()
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        _OPEN.discard(self)
        notify = sys.modules.get("nbjobs.notify.notifier")
        if notify is not None and not any(w.home == self.home for w in _OPEN):
            notify.close_notifier(self.home)  # finish this folder's deliveries (bounded) before the process ends
        if not _OPEN:  # the last open workspace of this process: kill the warm kernels (nbjobs.compute)
            kernels = sys.modules.get("nbjobs.compute.kernels")
            if kernels is not None:
                kernels.shutdown_pools()
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
