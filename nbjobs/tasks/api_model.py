"""The base of the Jobs API models (pydantic v2): unknown fields kept, YAML scalars read as text.

Scalars written in YAML without quotes (``limit: 10``, ``flag: true``) become the text Databricks
would see (``"10"``, ``"true"``) wherever the API wants a string. A leaf module: the task kinds'
payload models and `nbjobs.spec.models` build on it.
"""
from __future__ import annotations

import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

__all__ = ["ApiModel", "Text", "as_text"]


def as_text(value: Any) -> Any:
    """A YAML/JSON scalar as the text Databricks would see; other values are returned unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    return value


Text = Annotated[str, BeforeValidator(as_text)]


class ApiModel(BaseModel):
    """Base of every model: unknown fields are kept and echoed back (``extra="allow"``)."""
    model_config = ConfigDict(extra="allow")
