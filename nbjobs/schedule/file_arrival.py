"""`trigger.file_arrival`, pure parts: where a url is on this machine, a folder's listing, when new files fire.

Jobs API `FileArrivalTriggerConfiguration {url, min_time_between_triggers_seconds,
wait_after_last_change_seconds}`: a run starts when new files appear in the location since the last
trigger; `wait_after_last_change_seconds` lets a batch of files settle first; two triggers are at least
`min_time_between_triggers_seconds` apart. Databricks polls about once a minute; nbjobs polls every
`NBJOBS_FILE_ARRIVAL_POLL` seconds (default 2).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlparse

Listing = dict[str, tuple[int, int]]  # relative path -> (mtime_ns, size)
_VOLUME = re.compile(r"^/Volumes/([^/]+)/([^/]+)/([^/]+)(?:/(.*))?$")


def url_problem(url: Any) -> str | None:
    """Why `url` is not a location nbjobs watches (None when it is)."""
    if not isinstance(url, str) or not url.strip():
        return "a file-arrival trigger needs url: the folder to watch"
    if url.startswith("file://") or url.startswith("dbfs:/") or url.startswith("/"):
        if url.startswith("/Volumes") and not _VOLUME.match(url.rstrip("/")):
            return f"{url!r} is not a volume path /Volumes/<catalog>/<schema>/<volume>/..."
        return None
    if "://" in url:
        return (f"{url!r}: nbjobs watches local folders, file:// URLs, /Volumes/... and dbfs:/... paths; "
                f"{url.split('://', 1)[0]}:// locations are not supported")
    return f"{url!r} is a relative path; give an absolute folder, a file:// URL, /Volumes/... or dbfs:/..."


def local_path(url: str, home: Path) -> Path:
    """The folder `url` names on this machine: /Volumes/c/s/v/... under NBJOBS_HOME/volumes/c/s/v/...,
    dbfs:/... under NBJOBS_HOME/dbfs/..., file:// URLs and absolute paths as they are."""
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if url.startswith("dbfs:/"):
        return Path(home) / "dbfs" / url[len("dbfs:/"):].lstrip("/")
    match = _VOLUME.match(url.rstrip("/"))
    if match:
        catalog, schema, volume, rest = match.groups()
        return Path(home) / "volumes" / catalog / schema / volume / (rest or "")
    return Path(url)


def listing(folder: Path) -> Listing:
    """Every file under `folder` (recursively; hidden files and folders are skipped): {relative path:
    (mtime_ns, size)}. A folder that does not exist is empty."""
    out: Listing = {}
    stack = [Path(folder)]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    stat = entry.stat()
                    out[os.path.relpath(entry.path, folder)] = (stat.st_mtime_ns, stat.st_size)
            except FileNotFoundError:  # removed while listing
                continue
    return out


@dataclass
class FileWatch:
    """One job's watch: fires when files appeared since the last trigger and the timings allow."""

    url: str
    min_between: float = 0.0
    settle: float = 0.0
    baseline: set[str] | None = None
    last_listing: Listing = field(default_factory=dict)
    last_change: float | None = None
    last_trigger: float | None = None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "FileWatch":
        return cls(str(config["url"]), float(config.get("min_time_between_triggers_seconds") or 0),
                   float(config.get("wait_after_last_change_seconds") or 0))

    def same_config(self, config: Mapping[str, Any]) -> bool:
        other = FileWatch.of(config)
        return (other.url, other.min_between, other.settle) == (self.url, self.min_between, self.settle)

    def start(self, files: Listing, *, since_ns: int | None = None) -> None:
        """The files present now are not new; with `since_ns` (the last trigger's scan), files modified
        after it are (they arrived while nobody watched)."""
        self.baseline = {p for p, (mtime, _) in files.items() if since_ns is None or mtime <= since_ns}
        self.last_listing = files

    def new_files(self, files: Listing) -> list[str]:
        return sorted(set(files) - (self.baseline or set()))

    def observe(self, files: Listing, now: float) -> list[str] | None:
        """Record a listing taken at `now`; the new files when a run should start now, else None."""
        if self.baseline is None:
            self.start(files)
            return None
        if files != self.last_listing:
            self.last_change, self.last_listing = now, files
        new = self.new_files(files)
        if not new:
            return None
        if self.settle and self.last_change is not None and now - self.last_change < self.settle:
            return None  # the batch is still changing
        if self.min_between and self.last_trigger is not None and now - self.last_trigger < self.min_between:
            return None
        self.baseline = set(files)
        self.last_trigger = now
        return new
