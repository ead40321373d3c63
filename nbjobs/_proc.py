"""Process helpers shared by the store (orphaned runs) and the kernel pool."""
from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (exited, not yet reaped)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1][:1] != "Z"
    except OSError:
        return True
