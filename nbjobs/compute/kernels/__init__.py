"""The warm kernel pool: fresh, pre-started kernels, one pool per kernelspec + environment.

Every notebook task gets a kernel nobody used before; kernels are never reused. What makes that cheap
is doing the expensive parts ahead of time and off the task's path:

- kernels are started ahead (a pool of `size` ready kernels per `KernelKey`, refilled in the
  background as soon as one is taken) and killed in the background after use (`pool.py`);
- readiness is "kernel_info reply received and the matching IOPub idle seen": no fixed waits
  (`launch.py`);
- ipykernel kernels are forked from a fork server (`forkserver.py`, driven by `process.py`) that
  imported ipykernel once, so a new kernel costs its own setup, not another ~0.3 CPU-s of imports;
  other kernelspecs (and ipykernel when forking is unavailable) are launched as ordinary processes;
- local kernels use the ipc transport (no TCP port races between processes); starts are retried.

All kernel I/O happens on one background thread with its own asyncio loop (`manager.py`). One manager
per process: `pool_manager()`; `shutdown_pools()` kills every kernel it started.
"""
from __future__ import annotations

from .launch import PooledKernel
from .manager import ExecutionHandle, PoolManager, pool_manager, shutdown_pools
from .pool import KernelPool
from .spec import KernelKey, KernelStartError, default_pool_size, fork_enabled, idle_seconds, skip_slow_imports

__all__ = ["ExecutionHandle", "KernelKey", "KernelPool", "KernelStartError", "PoolManager", "PooledKernel",
           "default_pool_size", "fork_enabled", "idle_seconds", "pool_manager", "shutdown_pools",
           "skip_slow_imports"]
