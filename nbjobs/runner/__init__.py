"""Drive one job run: the loop (`driver`), one task across its attempts (`attempts`), what is kept per
started task (`units`). Task kinds run through `nbjobs.tasks.registry`; no kind is named here."""
from ..events import EventHandler, RunEvent
from .driver import INSTANT_STRETCH, POLL_SECONDS, RunDriver, duration_thresholds
from .units import ChildRuns, Unit, plan_task, retry_policy

__all__ = ["INSTANT_STRETCH", "POLL_SECONDS", "ChildRuns", "EventHandler", "RunDriver", "RunEvent", "Unit",
           "duration_thresholds", "plan_task", "retry_policy"]
