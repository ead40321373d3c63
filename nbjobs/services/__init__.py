"""Long-running services (start, stop, health) hosted by `nbjobs serve`, the Jupyter server extension
and `nbjobs services run`; once-per-workspace services hold a lease in the workspace store."""
from __future__ import annotations

from .base import LoopService, Service, ServiceContext, in_thread
from .host import ServiceHost
from .registry import GROUP, available, create

__all__ = ["GROUP", "LoopService", "Service", "ServiceContext", "ServiceHost", "available", "create", "in_thread"]
