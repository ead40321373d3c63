"""The `compute` section of the workspace config (`<NBJOBS_HOME>/config.yml`, or `config.json`).

    compute:
      kernel_pool_size: 4              # warm kernels per kernelspec/environment (default: cores)
      clusters:                        # existing_cluster_id -> Dask scheduler address
        analytics: tcp://10.0.0.5:8786
      instance_pools:                  # instance_pool_id of a cluster -> warm kernels per worker
        small-pool: {min_idle_instances: 2}
      dask:                            # defaults for job clusters (a Dask LocalCluster per run)
        threads_per_worker: 1

`NBJOBS_KERNEL_POOL_SIZE` overrides `kernel_pool_size`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAMES = ("config.yml", "config.yaml", "config.json")


class ConfigError(ValueError):
    """The workspace config cannot be used; the message names the file and the field."""


@dataclass
class ComputeConfig:
    kernel_pool_size: int | None = None
    clusters: dict[str, str] = field(default_factory=dict)
    instance_pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    dask: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

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
    for name in CONFIG_NAMES:
        path = Path(home) / name
        if path.is_file():
            break
    else:
        return ComputeConfig()
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
    section = data.get("compute") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: `compute` must be a mapping")
    config = ComputeConfig(path=path)
    size = section.get("kernel_pool_size")
    if size is not None:
        if not isinstance(size, int) or size < 0:
            raise ConfigError(f"{path}: compute.kernel_pool_size must be a whole number >= 0, got {size!r}")
        config.kernel_pool_size = size
    clusters = section.get("clusters") or {}
    if not isinstance(clusters, dict):
        raise ConfigError(f"{path}: compute.clusters must map a cluster id to a scheduler address")
    for name, value in clusters.items():
        address = value.get("address") if isinstance(value, dict) else value
        if not isinstance(address, str) or "://" not in address:
            raise ConfigError(f"{path}: compute.clusters.{name} must be a Dask scheduler address such as "
                              f"tcp://host:8786, got {value!r}")
        config.clusters[str(name)] = address
    pools = section.get("instance_pools") or {}
    if not isinstance(pools, dict) or not all(isinstance(v, dict) for v in pools.values()):
        raise ConfigError(f"{path}: compute.instance_pools must map a pool id to {{min_idle_instances: N}}")
    config.instance_pools = {str(k): dict(v) for k, v in pools.items()}
    dask = section.get("dask") or {}
    if not isinstance(dask, dict):
        raise ConfigError(f"{path}: compute.dask must be a mapping")
    config.dask = dict(dask)
    return config
