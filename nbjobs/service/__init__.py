"""The one service layer every client goes through: `Workspace`, split by concern.

`workspace` (the folder and its lifecycle), `jobs` (jobs/create … jobs/delete), `runs` (run-now,
submit, wait), `run_views` (runs/get, runs/list, get-output, export), `repair` (runs/repair) and
`control` (runs/cancel, cancel-all, delete).
"""
from __future__ import annotations

from ..cli_args import parse_key_values
from ..errors import InvalidParameterValue, InvalidState, NbjobsError, ResourceDoesNotExist
from .jobs import confine_paths, update_settings
from .run_views import notebook_html
from .workspace import Workspace, default_home

__all__ = ["InvalidParameterValue", "InvalidState", "NbjobsError", "ResourceDoesNotExist", "Workspace",
           "confine_paths", "default_home", "notebook_html", "parse_key_values", "update_settings"]
