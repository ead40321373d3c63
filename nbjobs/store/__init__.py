"""The workspace store (SQLite, WAL, versioned schema)."""
from .db import Store, TokenOfDeletedRun
from .rows import ACTIVE_STATES, now_ms, utc_from_ms

__all__ = ["ACTIVE_STATES", "Store", "TokenOfDeletedRun", "now_ms", "utc_from_ms"]
