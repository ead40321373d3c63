"""Compute backends found by name, as jupyter_client finds kernel provisioners: an entry-point group.

A package adds a backend by declaring it in its metadata (pyproject.toml)::

    [project.entry-points."nbjobs.compute_backends"]
    mine = "my_package.compute:MyBackend"      # a ComputeBackend subclass

and naming it in the workspace config (`compute.cluster_backend: mine`, or `backend: mine` on a
cluster under `compute.clusters`). nbjobs' own backends are in the table below too, so they are
found when the installed metadata is older than the code. `register_backend` adds one in-process.
"""
from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

from .base import ComputeError

if TYPE_CHECKING:  # pragma: no cover
    from .base import ComputeBackend

GROUP = "nbjobs.compute_backends"
BUILTIN = {
    "local": "nbjobs.compute.local:LocalBackend",
    "dask": "nbjobs.compute.dask_backend:DaskBackend",
}
#: the nbjobs extra that installs a backend's engine
EXTRAS = {"dask": "dask"}
#: an existing cluster's address scheme -> the backend that connects to it (Dask's comm schemes)
SCHEMES = {"tcp": "dask", "tls": "dask", "ucx": "dask", "ws": "dask", "wss": "dask", "inproc": "dask"}

_lock = threading.Lock()
_registered: dict[str, type | str] = {}
_loaded: dict[str, type] = {}


def register_backend(name: str, target: type | str) -> None:
    """Add (or replace) backend `name` in this process: a ComputeBackend subclass or "module:Class"."""
    with _lock:
        _registered[name] = target
        _loaded.pop(name, None)


def unregister_backend(name: str) -> None:
    with _lock:
        _registered.pop(name, None)
        _loaded.pop(name, None)


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points
    found: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep.value)  # the first on sys.path wins, as for imports
    return found


def backend_names() -> list[str]:
    """Every backend name known here: registered, declared by an installed package, built in."""
    return sorted({*_registered, *_entry_points(), *BUILTIN})


def backend_class(name: str) -> type[ComputeBackend]:
    """The backend class called `name`, loaded once per process; ComputeError says what is missing."""
    cls = _loaded.get(name)
    if cls is not None:
        return cls
    with _lock:
        target = _registered.get(name)
    if target is None:
        target = _entry_points().get(name) or BUILTIN.get(name)
    if target is None:
        raise ComputeError(f"no compute backend named '{name}' (known: {', '.join(backend_names())}); a package "
                           f"adds one under the entry-point group '{GROUP}'")
    cls = _load(name, target) if isinstance(target, str) else target
    from .base import ComputeBackend
    if not (isinstance(cls, type) and issubclass(cls, ComputeBackend)):
        raise ComputeError(f"compute backend '{name}' ({target}) is not a ComputeBackend subclass")
    with _lock:
        _loaded[name] = cls
    return cls


def _load(name: str, target: str) -> type:
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name.strip())
        for part in attr.strip().split(".") if attr.strip() else ():
            obj = getattr(obj, part)
    except ImportError as exc:
        hint = f" Install it with: pip install 'nbjobs[{EXTRAS[name]}]'" if name in EXTRAS else ""
        raise ComputeError(f"compute backend '{name}' cannot be loaded from {target}: {exc}.{hint}") from None
    except AttributeError as exc:
        raise ComputeError(f"compute backend '{name}' cannot be loaded from {target}: {exc}") from None
    return obj  # type: ignore[return-value]


def backend_for_address(address: str, default: str) -> str:
    """The backend that connects to `address`, by its scheme (`tcp://` is Dask's), else `default`."""
    scheme, sep, _ = address.partition("://")
    return SCHEMES.get(scheme.lower(), default) if sep else default
