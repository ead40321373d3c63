"""The compute of one run: which backend each task uses, and the job clusters' lifecycle.

Backends are found by name (`registry.py`); the workspace config (`config.py`) says which:
- no compute field, or `environment_key` -> the "local" backend, the warm kernel pool (Databricks'
  serverless compute for jobs); the environment chooses the kernel (`environments.py`);
- `job_cluster_key` -> that `job_clusters[].new_cluster`, started for this run by the backend named
  `compute.cluster_backend` (default "dask": a LocalCluster of `num_workers` workers); shared by the
  tasks that name it, closed when the last of them finishes (or is skipped), at the latest when the
  run ends;
- `new_cluster` on the task itself -> a cluster of that backend for that task only, closed after it;
- `existing_cluster_id` -> a cluster named under `compute.clusters` (its `backend`, else the one its
  address scheme names) or an address itself; nbjobs connects and leaves it running;
- instance-pool settings (`new_cluster.instance_pool_id` with `compute.instance_pools`) -> the warm
  kernel pool size on that cluster's workers; the local pool's size is `compute.kernel_pool_size`
  (default: the number of cores).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .base import ComputeBackend, ComputeError, KernelChoice
from .config import ComputeConfig, ConfigError, load_compute_config
from .registry import backend_class, backend_for_address


@dataclass
class ComputeTarget:
    """Where one task runs."""

    backend: ComputeBackend
    kernel: KernelChoice = field(default_factory=KernelChoice)
    environment: dict | None = None     # resolved where the kernel runs (remote workers)
    close_after: bool = False           # a task-level new_cluster

    @property
    def label(self) -> str:
        return self.backend.label


def _tasks(tasks: Iterable[Any]) -> Iterable[Any]:
    """The tasks and the tasks nested in them (a for-each's task), as their kinds declare."""
    from ..tasks.registry import kind_of
    for task in tasks:
        yield task
        kind = kind_of(task)
        for key in kind.nested_tasks if kind is not None else ():
            inner = getattr(kind.payload(task), key, None)
            if inner is not None:
                yield from _tasks([inner])


class RunCompute:
    """Backends for the tasks of one run. `start()` when the run starts, `task_finished(key)` as each
    task ends, `close()` when the run ends. `done`: task keys this run (a repair) will not run."""

    def __init__(self, settings: Any, *, home: str | Path | None = None, done: Iterable[str] = ()):
        self.settings = settings
        self.home = Path(home) if home is not None else None
        done = set(done)
        # job cluster key -> the top-level tasks still to finish that use it (itself or its for-each's task)
        self._users: dict[str, set[str]] = {}
        for task in settings.tasks:
            if task.task_key not in done:
                for each in _tasks([task]):
                    if each.job_cluster_key:
                        self._users.setdefault(each.job_cluster_key, set()).add(task.task_key)
        self._closing: list[asyncio.Future] = []
        self._config: ComputeConfig | None = None
        self._local: ComputeBackend | None = None
        self._clusters: dict[str, ComputeBackend] = {}
        self._environments: dict[tuple[str, bool], asyncio.Future] = {}
        self._job_clusters = {c.job_cluster_key: c for c in (settings.job_clusters or []) if c.job_cluster_key}
        self._environment_specs = {e.environment_key: e.spec for e in (settings.environments or [])
                                   if e.environment_key}
        self._closed = False

    @property
    def config(self) -> ComputeConfig:
        if self._config is None:
            self._config = load_compute_config(self.home)
        return self._config

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Warm up what the run will need, without waiting: local kernels, job clusters."""
        try:
            self.config
        except ConfigError:
            return  # reported by the first task that needs it
        local_notebooks: set[str] = set()
        cluster_keys = set(self._users)  # only the clusters of tasks this run will run
        for task in _tasks(self.settings.tasks):
            if task.notebook_task is not None and not (task.job_cluster_key or task.existing_cluster_id
                                                       or task.new_cluster):
                if not task.environment_key and not getattr(task.notebook_task, "kernel_name", None):
                    local_notebooks.add(task.notebook_task.notebook_path)
        if local_notebooks:
            try:
                self.local().prepare(sorted(local_notebooks))
            except ComputeError:
                pass  # reported by the first task that needs it
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        for key in cluster_keys:  # start job clusters now, in the background (a failure shows per task)
            if key in self._job_clusters:
                try:
                    backend = self._cluster_backend(key)
                except ComputeError:
                    continue
                task = asyncio.ensure_future(backend.start())
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def task_finished(self, task_key: str) -> None:
        """`task_key` ended (finally, after its retries) or was skipped: a job cluster no remaining
        task uses is closed now, in the background (on the run's event loop)."""
        for cluster_key, users in list(self._users.items()):
            if task_key not in users:
                continue
            users.discard(task_key)
            if users:
                continue
            del self._users[cluster_key]
            backend = self._clusters.pop(f"job_cluster:{cluster_key}", None)
            if backend is not None:
                self._closing.append(asyncio.ensure_future(backend.close()))

    async def close(self) -> None:
        """Close the job clusters this run started (existing clusters stay up)."""
        self._closed = True
        clusters, self._clusters = list(self._clusters.values()), {}
        closing, self._closing = self._closing, []
        waits = [c.close() for c in clusters] + closing
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)

    # -- mapping --------------------------------------------------------------------------------------
    def local(self) -> ComputeBackend:
        if self._local is None:
            self._local = backend_class("local").serverless(self.config, label="local")
        return self._local

    def _cluster_backend(self, job_cluster_key: str) -> ComputeBackend:
        name = f"job_cluster:{job_cluster_key}"
        backend = self._clusters.get(name)
        if backend is None:
            cluster = self._job_clusters.get(job_cluster_key)
            if cluster is None:
                defined = ", ".join(sorted(self._job_clusters)) or "none"
                raise ComputeError(f"job_cluster_key '{job_cluster_key}' is not defined in job_clusters "
                                   f"(defined: {defined})")
            backend = self._clusters[name] = self._new_cluster(cluster.new_cluster, name)
        return backend

    def _new_cluster(self, spec: dict | None, where: str) -> ComputeBackend:
        name = self.config.cluster_backend
        return backend_class(name).new_cluster(spec or {}, self.config, label=f"{name} {where}")

    def _existing_ref(self, cluster_id: str, config: ComputeConfig) -> tuple[str, str | None, bool]:
        """(backend name, address, named in the config) of an existing_cluster_id."""
        named = config.named_cluster(cluster_id)
        if named is not None:
            backend, address = named
            return backend or backend_for_address(address or "", config.cluster_backend), address, True
        return backend_for_address(cluster_id, config.cluster_backend), cluster_id, False

    def _existing(self, cluster_id: str) -> ComputeBackend:
        name = f"existing_cluster:{cluster_id}"
        backend = self._clusters.get(name)
        if backend is None:
            backend_name, address, named = self._existing_ref(cluster_id, self.config)
            cls = backend_class(backend_name)
            if not named and "://" not in cluster_id:
                where = self.config.path or (self.home / "config.yml" if self.home else "the workspace config")
                raise ComputeError(f"existing_cluster_id '{cluster_id}' is neither {cls.address_hint} nor a "
                                   f"cluster named under compute.clusters in {where}")
            label = f"{backend_name} {name}" + (f" ({address})" if named and address else "")
            backend = self._clusters[name] = cls.existing_cluster(address, self.config, label=label)
        return backend

    async def _environment(self, key: str, notebook: bool) -> KernelChoice:
        if key not in self._environment_specs:
            defined = ", ".join(sorted(self._environment_specs)) or "none"
            raise ComputeError(f"environment_key '{key}' is not defined in environments (defined: {defined})")
        slot = (key, notebook)
        future = self._environments.get(slot)
        if future is None:
            from .environments import resolve_environment
            envs_dir = (self.home or Path(".nbjobs")) / "envs"
            future = self._environments[slot] = asyncio.ensure_future(asyncio.to_thread(
                resolve_environment, key, self._environment_specs[key], envs_dir=envs_dir, notebook=notebook))
        return await asyncio.shield(future)

    def describe(self, task: Any) -> str:
        """The compute a task asks for, as the store records it (when it could not run there)."""
        try:
            config = self.config
        except ConfigError:
            config = ComputeConfig()
        if task.existing_cluster_id:
            backend = self._existing_ref(task.existing_cluster_id, config)[0]
            return f"{backend} existing_cluster:{task.existing_cluster_id}"
        if task.job_cluster_key:
            return f"{config.cluster_backend} job_cluster:{task.job_cluster_key}"
        if task.new_cluster:
            return f"{config.cluster_backend} new_cluster:{task.task_key}"
        return "local"

    async def target(self, task: Any) -> ComputeTarget:
        """The backend (started) and kernel for `task`; ComputeError says what is wrong."""
        if self._closed:
            raise ComputeError("the run's compute is closed")
        try:
            self.config
        except ConfigError as exc:
            raise ComputeError(str(exc)) from None
        environment = None
        key = task.environment_key
        if key and key not in self._environment_specs:
            defined = ", ".join(sorted(self._environment_specs)) or "none"
            raise ComputeError(f"environment_key '{key}' is not defined in environments (defined: {defined})")
        if key:
            environment = {"key": key, "spec": self._environment_specs[key]}
        kernel_name = getattr(task.notebook_task, "kernel_name", None) if task.notebook_task else None
        if task.existing_cluster_id or task.job_cluster_key or task.new_cluster:
            if task.existing_cluster_id:
                backend, close_after = self._existing(task.existing_cluster_id), False
            elif task.job_cluster_key:
                backend, close_after = self._cluster_backend(task.job_cluster_key), False
            else:
                backend = self._new_cluster(task.new_cluster, f"new_cluster:{task.task_key}")
                close_after = True
            await backend.start()
            return ComputeTarget(backend, KernelChoice(kernel_name=kernel_name), environment, close_after)
        kernel = KernelChoice()
        if key:
            kernel = await self._environment(key, task.notebook_task is not None)
        if kernel_name:
            kernel = KernelChoice(**{**kernel.to_dict(), "kernel_name": kernel_name})
        backend = self.local()
        await backend.start()
        return ComputeTarget(backend, kernel, None)

    async def release(self, target: ComputeTarget) -> None:
        """After a task: a task-level cluster is closed."""
        if target.close_after:
            await target.backend.close()
