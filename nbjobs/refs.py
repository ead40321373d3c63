"""Dynamic value references ``{{namespace.path}}``: find, check (definition time), resolve (run time).

The Jobs docs' "dynamic value references" page: a reference is ``{{`` + optional spaces + dot-separated segments + optional spaces +
``}}``; a segment is ``[A-Za-z0-9_]+`` or a back-quoted identifier (`` `my-task` ``). Text that does
not parse, and references in unknown namespaces, are left as literal text. A bad path in a known
namespace (``job``, ``task``, ``tasks``, ``workspace``, ``input``, ``backfill`` and the deprecated
one-word aliases) is an error.

Local choices where the reference is silent:

* Time arguments are UTC. ``iso_datetime`` is ISO 8601 with milliseconds and ``Z``
  (``2026-11-22T11:05:00.123Z``); ``year``..``second`` are plain integers (``"7"``, not ``"07"``).
* ``job.trigger.time.*`` falls back to the start time when ``RefContext.trigger_time`` is None.
* ``job.id`` is empty for a run without a job (runs/submit); ``job.trigger.file_arrival.location`` is
  empty without a file-arrival trigger.
* Non-string task values and for-each elements render through :func:`render_value`.
"""
from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Collection

__all__ = [
    "MISSING",
    "RefContext",
    "Reference",
    "ReferenceResolutionError",
    "TaskRefState",
    "find_references",
    "is_reference_only",
    "malformed_references",
    "reference_problems",
    "render_value",
    "resolve",
    "resolve_all",
    "value_of",
]


class ReferenceResolutionError(ValueError):
    """A reference whose value is not known at run time (the consuming task should fail)."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""``RefContext.input`` when the task is not a for-each iteration."""

# ---------------------------------------------------------------------------------------------
# Parsing

_SEG = r"(?:[A-Za-z0-9_]+|`[^`]+`)"
_REF_RE = re.compile(r"\{\{\s*(" + _SEG + r"(?:\." + _SEG + r")*)\s*\}\}")
_SEG_RE = re.compile(_SEG)
_BRACED_RE = re.compile(r"\{\{([^{}]*)\}\}")

_NAMESPACES = frozenset({"job", "task", "tasks", "workspace", "input", "backfill"})
_ALIASES = {
    "job_id": ("job", "id"),
    "run_id": ("task", "run_id"),
    "parent_run_id": ("job", "run_id"),
    "task_key": ("task", "name"),
    "start_date": ("job", "start_time", "iso_date"),
    "start_time": ("job", "start_time", "timestamp_ms"),
    "task_retry_count": ("task", "retry_count"),  # internal: execution_count - 1
}


@dataclass(frozen=True)
class Reference:
    """One ``{{...}}`` occurrence: ``raw`` is ``text[start:end]``; ``segments`` are unquoted."""

    raw: str
    segments: tuple[str, ...]
    start: int
    end: int

    @property
    def namespace(self) -> str:
        return self.segments[0]

    @property
    def known(self) -> bool:
        """In a known namespace (otherwise it is literal text)."""
        if len(self.segments) == 1 and self.segments[0] in _ALIASES:
            return True
        return self.segments[0] in _NAMESPACES


def find_references(text: str) -> list[Reference]:
    """Every syntactically valid reference in ``text``, known namespace or not (see ``.known``)."""
    return list(_references(text))


@functools.lru_cache(maxsize=4096)
def _references(text: str) -> tuple[Reference, ...]:
    # cached: a run of 10,000 tasks parses the same few texts over and over (References are frozen)
    out = []
    for m in _REF_RE.finditer(text):
        segs = tuple(s[1:-1] if s.startswith("`") else s for s in _SEG_RE.findall(m.group(1)))
        out.append(Reference(m.group(0), segs, m.start(), m.end()))
    return tuple(out)


def is_reference_only(text: str) -> bool:
    """``text`` (ignoring surrounding spaces) is exactly one reference in a known namespace."""
    if not isinstance(text, str):
        return False
    stripped = text.strip()
    refs = find_references(stripped)
    return len(refs) == 1 and refs[0].known and refs[0].raw == stripped


# ---------------------------------------------------------------------------------------------
# Interpreting a path

_TIME_ARGS = ("iso_weekday", "is_weekday", "iso_date", "iso_datetime", "year", "month", "day",
              "hour", "minute", "second", "timestamp_ms")
_TIME_HELP = "time arguments are " + ", ".join(_TIME_ARGS)
_JOB_HELP = ("job has id, name, run_id, repair_count, start_time.<arg>, parameters.<name>, "
             "trigger.type, trigger.time.<arg>, trigger.file_arrival.location")
_TASK_HELP = "task has name, run_id, execution_count, notebook_path"
_TASKS_FIELDS = ("run_id", "result_state", "error_code", "execution_count", "notebook_path")
_TASKS_HELP = ("tasks.<task_key> has run_id, result_state, error_code, execution_count, "
               "notebook_path, values.<key>")
_WORKSPACE_HELP = "workspace has id, url"
_BACKFILL_HELP = "backfill.<arg>: " + _TIME_HELP


class _Invalid(Exception):
    """A bad path in a known namespace; the message says what is valid."""


@dataclass(frozen=True)
class _Path:
    kind: str                 # see _lookup
    args: tuple = ()


def _interpret(segments: tuple[str, ...]) -> _Path:
    if len(segments) == 1 and segments[0] in _ALIASES:
        if segments[0] == "task_retry_count":
            return _Path("retry_count")
        return _interpret(_ALIASES[segments[0]])
    ns, rest = segments[0], segments[1:]
    if ns == "job":
        return _interpret_job(rest)
    if ns == "task":
        if len(rest) == 1 and rest[0] in ("name", "run_id", "execution_count", "notebook_path"):
            return _Path("task", (rest[0],))
        raise _Invalid(_TASK_HELP)
    if ns == "tasks":
        if len(rest) == 2 and rest[1] in _TASKS_FIELDS:
            return _Path("tasks", (rest[0], rest[1]))
        if len(rest) == 3 and rest[1] == "values":
            return _Path("value", (rest[0], rest[2]))
        raise _Invalid(_TASKS_HELP)
    if ns == "workspace":
        if len(rest) == 1 and rest[0] in ("id", "url"):
            return _Path("workspace", (rest[0],))
        raise _Invalid(_WORKSPACE_HELP)
    if ns == "input":
        return _Path("input", rest)
    if ns == "backfill":
        if len(rest) == 1 and rest[0] in _TIME_ARGS:
            return _Path("time", ("backfill", rest[0]))
        raise _Invalid(_BACKFILL_HELP)
    raise AssertionError(ns)  # pragma: no cover - callers check .known


def _interpret_job(rest: tuple[str, ...]) -> _Path:
    if len(rest) == 1 and rest[0] in ("id", "name", "run_id", "repair_count"):
        return _Path("job", (rest[0],))
    if rest and rest[0] == "start_time":
        if len(rest) == 2 and rest[1] in _TIME_ARGS:
            return _Path("time", ("start", rest[1]))
        raise _Invalid("job.start_time.<arg>: " + _TIME_HELP)
    if rest and rest[0] == "parameters":
        if len(rest) == 2:
            return _Path("param", (rest[1],))
        raise _Invalid("use job.parameters.<name> (back-quote names with other characters than "
                       "letters, digits and _: job.parameters.`my-param`)")
    if rest == ("trigger", "type"):
        return _Path("trigger_type")
    if rest == ("trigger", "file_arrival", "location"):
        return _Path("file_arrival")
    if len(rest) >= 2 and rest[:2] == ("trigger", "time"):
        if len(rest) == 3 and rest[2] in _TIME_ARGS:
            return _Path("time", ("trigger", rest[2]))
        raise _Invalid("job.trigger.time.<arg>: " + _TIME_HELP)
    raise _Invalid(_JOB_HELP)


# ---------------------------------------------------------------------------------------------
# Definition time


def _suggest(name: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3)
    if close:
        return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
    return ""


def reference_problems(text: str, *, job_parameters: Collection[str], task_keys: Collection[str],
                       upstream: Collection[str] | None = None, in_for_each: bool = False) -> list[str]:
    """Messages for the invalid references in known namespaces in ``text`` (empty if all are fine).

    ``upstream`` (when given) holds the task keys this task depends on, directly or not;
    ``in_for_each`` says ``text`` belongs to the task nested in a for_each_task.
    """
    if not isinstance(text, str):
        return []
    problems: list[str] = []
    for ref in find_references(text):
        if not ref.known:
            continue
        msg = _problem(ref, job_parameters, task_keys, upstream, in_for_each)
        if msg and msg not in problems:
            problems.append(msg)
    return problems


def _problem(ref: Reference, job_parameters, task_keys, upstream, in_for_each) -> str | None:
    bad = f"{ref.raw} is not a valid reference: "
    try:
        path = _interpret(ref.segments)
    except _Invalid as e:
        return bad + str(e)
    if path.kind == "param":
        name = path.args[0]
        if name not in job_parameters:
            if job_parameters:
                hint = _suggest(name, job_parameters) or (
                    "; the job's parameters are " + ", ".join(sorted(job_parameters)))
            else:
                hint = "; the job defines no parameters"
            return bad + f"no job parameter named '{name}'" + hint
    elif path.kind in ("tasks", "value"):
        key = path.args[0]
        if key not in task_keys:
            return bad + f"no task named '{key}'" + _suggest(key, task_keys)
        if upstream is not None and key not in upstream:
            return bad + f"task '{key}' is not upstream of this task; add it to depends_on"
    elif path.kind == "input" and not in_for_each:
        return bad + "{{input}} is only available in the task nested in a for_each_task"
    return None


def malformed_references(text: str) -> list[str]:
    """Warnings for ``{{...}}`` text that looks like a known-namespace reference but does not parse.

    Such text is left as is at run time (Databricks docs, "dynamic value references"), which is rarely what the author meant:
    ``{{tasks.my-task.values.x}}`` needs back-quotes: ``{{tasks.`my-task`.values.x}}``.
    """
    if not isinstance(text, str):
        return []
    parsed = {(r.start, r.end) for r in find_references(text)}
    out = []
    for m in _BRACED_RE.finditer(text):
        if (m.start(), m.end()) in parsed:
            continue
        head = re.match(r"\s*`?([A-Za-z_]+)`?\s*(\.|$)", m.group(1))
        if head and (head.group(1) in _NAMESPACES or head.group(1) in _ALIASES):
            out.append(f"{m.group(0)} is not a valid reference and will be passed as literal text: "
                       "back-quote identifiers that have other characters than letters, digits "
                       "and _, e.g. {{tasks.`my-task`.values.`my-key`}}")
    return out


# ---------------------------------------------------------------------------------------------
# Run time


@dataclass
class TaskRefState:
    """What references can read about another task of the same job run."""

    run_id: int | None = None
    result_state: str | None = None      # e.g. "SUCCESS" (rendered lower case)
    error_code: str = ""
    execution_count: int = 0
    notebook_path: str | None = None
    values: dict = field(default_factory=dict)


@dataclass
class RefContext:
    """Everything a reference can resolve to, for one task run. Datetimes are UTC."""

    job_id: int | None = None
    job_name: str = ""
    run_id: int | None = None
    repair_count: int = 0
    start_time: datetime | None = None
    trigger_type: str = "one_time"
    trigger_time: datetime | None = None
    file_arrival_location: str | None = None
    job_parameters: dict[str, str] = field(default_factory=dict)
    task_key: str | None = None
    task_run_id: int | None = None
    execution_count: int = 1
    notebook_path: str | None = None
    tasks: dict[str, TaskRefState] = field(default_factory=dict)
    input: Any = MISSING
    workspace_id: str = "0"
    workspace_url: str = "http://127.0.0.1"
    backfill_time: datetime | None = None


def render_value(value: Any) -> str:
    """A value as reference text: str as is, bool → true/false, None → null, others compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _time_value(dt: datetime, arg: str) -> str:
    dt = dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    if arg == "iso_weekday":
        return str(dt.isoweekday())
    if arg == "is_weekday":
        return "true" if dt.isoweekday() <= 5 else "false"
    if arg == "iso_date":
        return dt.date().isoformat()
    if arg == "iso_datetime":
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    if arg == "timestamp_ms":
        return str((dt - _EPOCH) // timedelta(milliseconds=1))
    return str(getattr(dt, arg))  # year, month, day, hour, minute, second


def _lookup(ref: Reference, ctx: RefContext) -> Any:
    """The raw value of a known reference (task values and for-each elements keep their type)."""
    try:
        path = _interpret(ref.segments)
    except _Invalid as e:
        raise ReferenceResolutionError(f"{ref.raw} is not a valid reference: {e}") from None

    def fail(why: str):
        raise ReferenceResolutionError(f"{ref.raw}: {why}")

    def need(value, what: str):
        if value is None:
            fail(f"{what} is not known for this run")
        return value

    kind, args = path.kind, path.args
    if kind == "job":
        if args[0] == "id":
            return "" if ctx.job_id is None else ctx.job_id
        if args[0] == "name":
            return ctx.job_name
        if args[0] == "run_id":
            return need(ctx.run_id, "the job run id")
        return ctx.repair_count
    if kind == "time":
        source, arg = args
        if source == "start":
            when = need(ctx.start_time, "the job start time")
        elif source == "trigger":
            when = need(ctx.trigger_time or ctx.start_time, "the trigger time")
        else:
            if ctx.backfill_time is None:
                fail("this run is not a backfill run")
            when = ctx.backfill_time
        return _time_value(when, arg)
    if kind == "param":
        if args[0] not in ctx.job_parameters:
            fail(f"no job parameter named '{args[0]}'")
        return ctx.job_parameters[args[0]]
    if kind == "trigger_type":
        return str(ctx.trigger_type).lower()
    if kind == "file_arrival":
        return ctx.file_arrival_location or ""
    if kind == "task":
        what = args[0]
        if what == "name":
            return need(ctx.task_key, "the current task")
        if what == "run_id":
            return need(ctx.task_run_id, "the current task run id")
        if what == "execution_count":
            return ctx.execution_count
        if ctx.notebook_path is None:
            fail("the current task is not a notebook task")
        return ctx.notebook_path
    if kind == "retry_count":
        return max(ctx.execution_count - 1, 0)
    if kind in ("tasks", "value"):
        key = args[0]
        state = ctx.tasks.get(key)
        if state is None:
            fail(f"task '{key}' has not run in this job run")
        if kind == "value":
            vkey = args[1]
            if vkey not in state.values:
                msg = f"task '{key}' did not set a task value '{vkey}'"
                rs = str(state.result_state).lower() if state.result_state is not None else None
                if rs not in (None, "success"):
                    msg += f" (its result is {rs})"
                fail(msg)
            return state.values[vkey]
        what = args[1]
        if what == "run_id":
            return need(state.run_id, f"the run id of task '{key}'")
        if what == "result_state":
            if state.result_state is None:
                fail(f"task '{key}' has no result yet")
            return str(state.result_state).lower()
        if what == "error_code":
            return state.error_code or ""
        if what == "execution_count":
            return state.execution_count
        if state.notebook_path is None:
            fail(f"task '{key}' is not a notebook task")
        return state.notebook_path
    if kind == "workspace":
        return ctx.workspace_id if args[0] == "id" else ctx.workspace_url
    if kind == "input":
        if ctx.input is MISSING:
            fail("there is no for-each input here ({{input}} works only in the task nested "
                 "in a for_each_task)")
        value = ctx.input
        for i, seg in enumerate(args):
            where = "the for-each input element" + "".join(f".{s}" for s in args[:i])
            if isinstance(value, dict):
                if seg not in value:
                    fail(f"{where} has no key '{seg}' (element: {_short(ctx.input)})")
                value = value[seg]
            elif isinstance(value, list) and seg.isdigit():
                if int(seg) >= len(value):
                    fail(f"{where} has no item {seg} (element: {_short(ctx.input)})")
                value = value[int(seg)]
            else:
                fail(f"{where} is not a JSON object, so it has no key '{seg}' "
                     f"(element: {_short(ctx.input)})")
        return value
    raise AssertionError(kind)  # pragma: no cover


def _short(value: Any, limit: int = 200) -> str:
    text = render_value(value)
    return text if len(text) <= limit else text[:limit] + "…"


def resolve(text: str, ctx: RefContext) -> str:
    """``text`` with every known reference replaced; raises :class:`ReferenceResolutionError`."""
    refs = [r for r in find_references(text) if r.known]
    if not refs:
        return text
    parts, pos = [], 0
    for ref in refs:
        parts.append(text[pos:ref.start])
        parts.append(render_value(_lookup(ref, ctx)))
        pos = ref.end
    parts.append(text[pos:])
    return "".join(parts)


def resolve_all(obj: Any, ctx: RefContext) -> Any:
    """Resolve strings inside dicts (values only), lists and tuples, recursively; a new object."""
    if isinstance(obj, str):
        return resolve(obj, ctx)
    if isinstance(obj, dict):
        return {k: resolve_all(v, ctx) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve_all(v, ctx) for v in obj]
    if isinstance(obj, tuple):
        return tuple(resolve_all(v, ctx) for v in obj)
    return obj


def value_of(text: str, ctx: RefContext) -> Any:
    """The raw value of a lone task-value or ``{{input...}}`` reference, else ``resolve(text)``.

    Task values and for-each elements keep their JSON type (a list stays a list); every other
    reference gives its rendered string.
    """
    if is_reference_only(text):
        ref = find_references(text.strip())[0]
        value = _lookup(ref, ctx)
        if _interpret(ref.segments).kind in ("value", "input"):
            return value
        return render_value(value)
    return resolve(text, ctx)
