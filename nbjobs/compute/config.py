"""The `compute` section of the workspace config (`<NBJOBS_HOME>/config.yml`, or `config.json`).

    compute:
      kernel_pool_size: 4              # warm kernels per kernelspec/environment (default: cores)
      cluster_backend: dask            # the backend of job_clusters and new_cluster (default: dask)
      clusters:                        # existing_cluster_id -> an address (its scheme picks the backend)
        analytics: tcp://10.0.0.5:8786
        sandbox: {backend: local}      # ... or a backend by name (and its address, if it needs one)
      instance_pools:                  # instance_pool_id of a cluster -> warm kernels per worker
        small-pool: {min_idle_instances: 2}
      dask:                            # options of the dask backend (a LocalCluster per job cluster)
        threads_per_worker: 1

`NBJOBS_KERNEL_POOL_SIZE` overrides `kernel_pool_size`. A backend's own options are the mapping
under its name (`options_for(name)`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAMES = ("config.yml", "config.yaml", "config.json")
DEFAULT_CLUSTER_BACKEND = "dask"


def read_workspace_config(home: str | os.PathLike) -> tuple[dict, Path | None]:
    """The workspace config (`<home>/config.yml`, `.yaml` or `.json`) as a mapping, and its path
    ({}, None when there is none); ConfigError names the file when it cannot be read."""
    for name in CONFIG_NAMES:
        path = Path(home) / name
        if path.is_file():
            break
    else:
        return {}, None
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text) if text.strip() else {}
        else:
            import yaml
            data = yaml.safe_load(text) or {}
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read the workspace config: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data, path


class ConfigError(ValueError):
    """The workspace config cannot be used; the message names the file and the field."""


@dataclass
class ComputeConfig:
    kernel_pool_size: int | None = None
    clusters: dict[str, str] = field(default_factory=dict)              # name -> address
    cluster_backends: dict[str, str] = field(default_factory=dict)      # name -> explicit backend
    cluster_backend: str = DEFAULT_CLUSTER_BACKEND
    instance_pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    section: dict[str, Any] = field(default_factory=dict)               # the whole `compute` mapping
    path: Path | None = None

    def options_for(self, backend: str) -> dict[str, Any]:
        """The mapping under the backend's name in the `compute` section (e.g. `dask:`), else {}."""
        value = self.section.get(backend)
        return dict(value) if isinstance(value, dict) else {}

    def named_cluster(self, cluster_id: str) -> tuple[str | None, str | None] | None:
        """(explicit backend or None, address or None) of a cluster under `clusters`, else None."""
        if cluster_id not in self.clusters and cluster_id not in self.cluster_backends:
            return None
        return self.cluster_backends.get(cluster_id), self.clusters.get(cluster_id)

    def pool_size_for(self, instance_pool_id: str | None) -> int | None:
        """Warm kernels for a cluster on `instance_pool_id` (its `min_idle_instances`), if configured."""
        if not instance_pool_id:
            return None
        pool = self.instance_pools.get(instance_pool_id) or {}
        value = pool.get("min_idle_instances", pool.get("size"))
        return int(value) if value is not None else None


def load_compute_config(home: str | os.PathLike | None) -> ComputeConfig:
    """Read the `compute` section (an absent file or section is the defaults)."""
    if home is None:
        return ComputeConfig()
    data, path = read_workspace_config(home)
    if path is None:
        return ComputeConfig()
    section = data.get("compute") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: `compute` must be a mapping")
    config = ComputeConfig(path=path, section=dict(section))
    size = section.get("kernel_pool_size")
    if size is not None:
        if not isinstance(size, int) or size < 0:
            raise ConfigError(f"{path}: compute.kernel_pool_size must be a whole number >= 0, got {size!r}")
        config.kernel_pool_size = size
    backend = section.get("cluster_backend", DEFAULT_CLUSTER_BACKEND)
    if not isinstance(backend, str) or not backend:
        raise ConfigError(f"{path}: compute.cluster_backend must be a compute backend's name, got {backend!r}")
    config.cluster_backend = backend
    clusters = section.get("clusters") or {}
    if not isinstance(clusters, dict):
        raise ConfigError(f"{path}: compute.clusters must map a cluster id to a scheduler address")
    for name, value in clusters.items():
        named = value.get("backend") if isinstance(value, dict) else None
        address = value.get("address") if isinstance(value, dict) else value
        if named is not None:  # a backend by name: the address is whatever that backend understands
            if not isinstance(named, str) or not named:
                raise ConfigError(f"{path}: compute.clusters.{name}.backend must be a compute backend's name, "
                                  f"got {named!r}")
            if address is not None and not isinstance(address, str):
                raise ConfigError(f"{path}: compute.clusters.{name}.address must be a string, got {address!r}")
            config.cluster_backends[str(name)] = named
            if address is not None:
                config.clusters[str(name)] = address
            continue
        if not isinstance(address, str) or "://" not in address:
            raise ConfigError(f"{path}: compute.clusters.{name} must be a Dask scheduler address such as "
                              f"tcp://host:8786, got {value!r}")
        config.clusters[str(name)] = address
    pools = section.get("instance_pools") or {}
    if not isinstance(pools, dict) or not all(isinstance(v, dict) for v in pools.values()):
        raise ConfigError(f"{path}: compute.instance_pools must map a pool id to {{min_idle_instances: N}}")
    config.instance_pools = {str(k): dict(v) for k, v in pools.items()}
    for backend in sorted({"dask", "local", config.cluster_backend, *config.cluster_backends.values()}):
        if section.get(backend) is not None and not isinstance(section.get(backend), dict):
            raise ConfigError(f"{path}: compute.{backend} (the {backend} backend's options) must be a mapping")
    return config
