"""Runs whose executing process died: ended INTERNAL_ERROR, and their jobs' notifications sent."""
from __future__ import annotations

from ..store import Store


def recover_orphans(store: Store) -> list[int]:
    """End the runs whose executing process died (INTERNAL_ERROR, finished tasks kept) and send the
    notifications their jobs ask for; the ids of the runs this call ended."""
    ids = store.recover_orphans()
    if ids:
        from ..notify.notifier import notify_recovered
        notify_recovered(store, ids)
    return ids
