"""Every error a client shows: a leaf module (stdlib only), so the HTTP client, the CLI and the
server share them without loading the store or the runner.

`error_code` follows the Jobs API error codes (``INVALID_PARAMETER_VALUE``,
``RESOURCE_DOES_NOT_EXIST``, ``INVALID_STATE``), which databricks-sdk maps to its own exceptions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

__all__ = ["InvalidParameterValue", "InvalidState", "JobDefinitionError", "NbjobsError", "Problem",
           "ResourceDoesNotExist"]


class NbjobsError(Exception):
    """An error a client shows as is; `error_code` follows the Jobs API."""
    error_code = "INVALID_PARAMETER_VALUE"


class ResourceDoesNotExist(NbjobsError):
    error_code = "RESOURCE_DOES_NOT_EXIST"


class InvalidParameterValue(NbjobsError):
    error_code = "INVALID_PARAMETER_VALUE"


class InvalidState(NbjobsError):
    error_code = "INVALID_STATE"


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "?", "!")) else text + "."


@dataclass(frozen=True)
class Problem:
    """One problem in a job definition: where (field path), what, and how to fix it."""
    path: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        out = _sentence(f"{self.path}: {self.message}" if self.path else self.message)
        return f"{out} Fix: {_sentence(self.fix)}" if self.fix else out


class JobDefinitionError(ValueError):
    """A job definition with problems; ``problems`` lists them all."""

    def __init__(self, problems: Iterable[Problem], source: str | os.PathLike | None = None):
        self.problems: list[Problem] = list(problems)
        self.source = str(source) if source is not None else None
        super().__init__(str(self))

    def __reduce__(self):  # keep the problems when pickled (across processes)
        return (type(self), (self.problems, self.source))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{self.source}: " if self.source else ""
        lines = [f"{head}invalid job definition, {n} problem{'s' if n != 1 else ''}:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)
