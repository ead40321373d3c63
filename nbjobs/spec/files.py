"""Source files a job names: local paths found with their extension fallbacks, remote URIs told apart."""
from __future__ import annotations

import os
import re
from pathlib import Path

_REMOTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")  # dbfs:/, s3://, ... (not a C: drive)
_SUFFIXES = {"notebook": ("", ".ipynb", ".py"), "script": ("", ".py")}


def is_remote_path(path: str) -> bool:
    """``dbfs:/...``, ``s3://...``: a URI, not a local path."""
    return bool(_REMOTE_RE.match(path))


def source_candidates(path: str, base_dir: Path, kind: str = "file") -> list[Path]:
    """Absolute paths tried for ``path`` (relative to ``base_dir``), in order; kind: notebook/script/file."""
    p = Path(os.path.expanduser(path))
    full = Path(os.path.abspath(p if p.is_absolute() else Path(base_dir) / p))
    if full.suffix.lower() in (".ipynb", ".py"):
        return [full]
    return [Path(str(full) + suffix) for suffix in _SUFFIXES.get(kind, ("",))]


def find_source_file(path: str, base_dir: Path, kind: str = "file") -> Path | None:
    """The existing file for ``path`` with the extension fallback (``x`` → ``x.ipynb``, ``x.py``)."""
    for candidate in source_candidates(path, base_dir, kind):
        if candidate.is_file():
            return candidate
    return None
