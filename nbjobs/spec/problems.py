"""Problems from values and pydantic errors: a value shown as a user wrote it, an error location as a
field path naming tasks (``tasks[2] (silver).run_if``), a type error with its fix."""
from __future__ import annotations

from typing import Any

from ..errors import Problem
from .models import as_text


def show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, str):
        return repr(value)
    return f"{value!r}"


_FIELD_FIX = {
    "task_key": "give every task a unique task_key (letters, digits, _ and -)",
    "notebook_path": "set notebook_path to the notebook file, relative to the file that declares the task",
    "python_file": "set python_file to the script, relative to the file that declares the task",
    "inputs": 'set inputs to a JSON array such as "[1, 2]" or a {{...}} reference to one',
    "task": "add the task to run for each input (task_key and one task type)",
    "default": 'give the parameter a default value ("" for empty)',
    "name": "give the parameter a name",
    "job_id": "set job_id to the id of the job to run",
}
_TEXT_MAPS = ("base_parameters", "parameters", "job_parameters", "tags")


def type_problem(err: dict, loc_path: str) -> Problem:
    kind, value = err["type"], err.get("input")
    loc = [x for x in err["loc"] if isinstance(x, str)]
    field = loc[-1] if loc else ""
    if kind == "missing":
        return Problem(loc_path, "a value is required", _FIELD_FIX.get(field, f"add {field}"))
    if kind == "string_type":
        if any(m in loc for m in _TEXT_MAPS):
            return Problem(loc_path, f"must be text, not {show(value)}",
                           "parameter values are strings: write a structured value as quoted JSON text")
        return Problem(loc_path, f"must be text, not {show(value)}", "write the value as a string")
    if kind.startswith("int_"):
        return Problem(loc_path, f"must be a whole number, not {show(value)}", "write an integer")
    if kind.startswith("bool_"):
        return Problem(loc_path, f"must be true or false, not {show(value)}", "write true or false")
    if kind == "list_type":
        hint = "write depends_on: [{task_key: other}]" if field == "depends_on" else "write a list"
        return Problem(loc_path, f"must be a list, not {show(value)}", hint)
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return Problem(loc_path, f"must be a map of fields, not {show(value)}", "write a map (key: value)")
    return Problem(loc_path, err.get("msg", "invalid value"), "correct the value")


def loc_path(loc: tuple, data: Any) -> str:
    """A pydantic error location as a field path naming tasks: ``tasks[2] (silver).run_if``."""
    out = ""
    node, prev = data, None
    for item in loc:
        if isinstance(item, int):
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
            out += f"[{item}]"
            if prev == "tasks":
                out += key_label(node)
        else:
            if not isinstance(node, dict):
                continue  # a union member tag ("int", "str"), not a field
            node = node.get(item)
            out += f".{item}" if out else str(item)
            if item == "task" and prev == "for_each_task":
                out += key_label(node)
        prev = item
    return out


def key_label(task: Any) -> str:
    key = as_text(task.get("task_key")) if isinstance(task, dict) else None
    return f" ({key})" if isinstance(key, str) and key else ""
