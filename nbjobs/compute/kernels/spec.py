"""What a pooled kernel is fixed to (`KernelKey`), its resolved kernelspec, and the pool's settings.

The settings come from the environment: `NBJOBS_KERNEL_POOL_SIZE`, `NBJOBS_KERNEL_POOL_IDLE`,
`NBJOBS_KERNEL_LAUNCH` and `NBJOBS_KEEP_IRI_FORMAT`.
"""
from __future__ import annotations

import os
import string
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 60.0       # seconds for one kernel to become ready
START_ATTEMPTS = 3         # kernel start failures are retried
HISTORY_ARG = "--HistoryManager.hist_file=:memory:"


def default_pool_size() -> int:
    """Warm kernels per kernelspec/environment: $NBJOBS_KERNEL_POOL_SIZE, else the number of cores."""
    value = os.environ.get("NBJOBS_KERNEL_POOL_SIZE")
    if value:
        try:
            return max(0, int(value))
        except ValueError:
            raise ValueError(f"NBJOBS_KERNEL_POOL_SIZE={value!r} is not a whole number") from None
    return max(1, os.cpu_count() or 1)


def idle_seconds() -> float:
    """A pool unused this long is emptied (its kernels and fork server stop): $NBJOBS_KERNEL_POOL_IDLE, 600."""
    try:
        return float(os.environ.get("NBJOBS_KERNEL_POOL_IDLE") or 600)
    except ValueError:
        return 600.0


def fork_enabled() -> bool:
    """Fork ipykernel kernels from a fork server (POSIX). NBJOBS_KERNEL_LAUNCH=spawn turns it off."""
    return os.name == "posix" and hasattr(os, "fork") and \
        os.environ.get("NBJOBS_KERNEL_LAUNCH", "fork").lower() != "spawn"


def skip_slow_imports() -> None:
    """Keep jsonschema from importing `rfc3987_syntax` in this process, unless something already did.

    nbformat imports jsonschema, whose format checkers import `rfc3987_syntax` when it is installed
    (jupyter-events pulls it in); that module builds a Lark grammar at import: ~2 CPU-s, 10x the rest
    of nbformat, paid by every process that runs notebooks (the CLI, each Dask worker). It only serves
    the "iri"/"iri-reference" formats, which notebook validation does not use. NBJOBS_KEEP_IRI_FORMAT=1
    keeps it.
    """
    if os.environ.get("NBJOBS_KEEP_IRI_FORMAT") == "1" or "jsonschema" in sys.modules:
        return
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # -> ImportError, skipped


class KernelStartError(RuntimeError):
    """A kernel could not be started (after retries)."""


@dataclass(frozen=True)
class KernelKey:
    """What a pooled kernel is fixed to at start: its kernelspec and its environment."""

    kernel_name: str = "python3"
    env: tuple[tuple[str, str], ...] = ()       # extra environment variables (an environment's)
    kernel_dirs: tuple[str, ...] = ()           # extra kernelspec folders (kernelspecs nbjobs made)


@dataclass
class LaunchSpec:
    """A resolved kernelspec: argv, environment, and whether it is ipykernel (and forkable)."""

    argv: list[str]
    env: dict[str, str]
    language: str
    resource_dir: str
    ipykernel: bool
    forkable: bool


_spec_cache: dict[KernelKey, LaunchSpec] = {}
_spec_lock = threading.Lock()


def resolve_spec(key: KernelKey) -> LaunchSpec:
    """The kernelspec of `key` (raises jupyter_client's NoSuchKernel, with its message)."""
    with _spec_lock:
        if key in _spec_cache:
            return _spec_cache[key]
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager()
    if key.kernel_dirs:
        manager.kernel_dirs = [*key.kernel_dirs, *manager.kernel_dirs]
    spec = manager.get_kernel_spec(key.kernel_name)
    argv = list(spec.argv)
    env = {k: string.Template(str(v)).safe_substitute(os.environ) for k, v in (spec.env or {}).items()}
    env.update(dict(key.env))
    ipykernel = any("ipykernel" in a for a in argv)
    forkable = (len(argv) >= 3 and argv[1] == "-m" and argv[2] in ("ipykernel_launcher", "ipykernel")
                and "python" in Path(argv[0]).name.lower())
    if argv and argv[0] in ("python", "python3") and forkable:
        argv[0] = sys.executable  # what jupyter_client does for the native kernel
    resolved = LaunchSpec(argv=argv, env=env, language=spec.language or "python",
                          resource_dir=spec.resource_dir or "", ipykernel=ipykernel, forkable=forkable)
    with _spec_lock:
        _spec_cache[key] = resolved
    return resolved

