"""Finding services by name: a built-in table plus the `nbjobs.services` entry-point group.

Third parties add a service as jupyter_client finds kernel provisioners (entry points, see
https://packaging.python.org/en/latest/specifications/entry-points/):

    [project.entry-points."nbjobs.services"]
    mywatcher = "mypkg.watch:Watcher"     # a `nbjobs.services.Service` subclass (or a factory)

A name with a colon, `module:attribute`, is imported directly (no packaging needed).
"""
from __future__ import annotations

import importlib
import logging
import warnings
from importlib.metadata import entry_points
from typing import Any, Callable

from .base import Service

GROUP = "nbjobs.services"

# name -> "module:attribute"; running from the source tree finds these without an install.
BUILTIN: dict[str, str] = {
    "recovery": "nbjobs.services.recovery:RecoveryService",
    "scheduler": "nbjobs.services.scheduler:SchedulerService",
    "file_arrival": "nbjobs.services.file_arrival:FileArrivalService",
    "continuous": "nbjobs.services.continuous:ContinuousService",
}

log = logging.getLogger("nbjobs.services")


class UnknownService(LookupError):
    pass


def _import(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    target: Any = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def _entry_points() -> dict[str, Any]:
    try:
        found = entry_points(group=GROUP)
    except Exception as exc:  # noqa: BLE001 - broken metadata of some installed distribution
        warnings.warn(f"nbjobs: cannot read the {GROUP!r} entry points: {exc}", RuntimeWarning, stacklevel=3)
        return {}
    return {ep.name: ep for ep in found}


def available() -> dict[str, Callable[[], Service] | None]:
    """{name: factory} of every service found, built-ins first. A built-in's name cannot be taken by
    an entry point; an entry point that fails to load is a warning and maps to None."""
    out: dict[str, Callable[[], Service] | None] = {}
    for name, spec in BUILTIN.items():
        out[name] = _factory(name, lambda spec=spec: _import(spec), f"built-in {spec}")
    for name, ep in _entry_points().items():
        if name in out:
            warnings.warn(f"nbjobs: entry point {GROUP}:{name} ({ep.value}) is ignored: {name!r} is a "
                          "built-in service", RuntimeWarning, stacklevel=2)
            continue
        out[name] = _factory(name, ep.load, f"entry point {GROUP}:{name} = {ep.value}")
    return out


def _factory(name: str, load: Callable[[], Any], where: str) -> Callable[[], Service] | None:
    try:
        target = load()
    except Exception as exc:  # noqa: BLE001 - a broken plug-in must not take the host down
        warnings.warn(f"nbjobs: service {name!r} ({where}) failed to load and is skipped: "
                      f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)
        return None
    if not callable(target):
        warnings.warn(f"nbjobs: service {name!r} ({where}) is not a class or factory and is skipped",
                      RuntimeWarning, stacklevel=3)
        return None
    return target


def create(name: str) -> Service:
    """A new instance of the service `name` (a registered name, or `module:attribute`)."""
    if ":" in name:
        factory = _import(name)
    else:
        factories = available()
        if name not in factories:
            known = ", ".join(sorted(factories)) or "none"
            raise UnknownService(f"no service named {name!r} (known: {known})")
        factory = factories[name]
        if factory is None:
            raise UnknownService(f"service {name!r} failed to load (see the warning above)")
    service = factory()
    if not isinstance(service, Service):
        raise TypeError(f"service {name!r} made a {type(service).__name__}, not a nbjobs.services.Service")
    if not service.name:
        service.name = name.rsplit(":", 1)[-1]  # type: ignore[misc]
    return service


def create_all(names: list[str] | None = None) -> list[Service]:
    """Instances of `names` (default: every available service that loads)."""
    if names:
        return [create(n) for n in names]
    services = []
    for name, factory in available().items():
        if factory is None:
            continue
        try:
            services.append(create(name))
        except Exception as exc:  # noqa: BLE001 - one broken plug-in never stops the others
            warnings.warn(f"nbjobs: service {name!r} could not be created and is skipped: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
    return services
