"""Validation of a job definition: every problem at once, each naming the field path and a fix."""
from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import Problem
from ..plan import find_cycle
from ..states import RunIf
from ..schedule.settings import check_when
from ..tasks.registry import kind_for_field, kinds, version
from .files import find_source_file, is_remote_path, source_candidates
from .health import health_problems
from .notifications import notification_problems
from .problems import key_label as _key_label, loc_path as _loc_path, show as _show, type_problem as _type_problem
from .models import TASK_TYPES, JobSettings, Task, as_text

_TASK_FIELDS = frozenset(Task.model_fields)
_RUN_IFS = [str(v) for v in RunIf]
_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_PARAM_RE = re.compile(r"[A-Za-z0-9_.-]+")
_REF_FIX = ("correct the reference: job.parameters.<name> needs a declared job parameter, "
            "tasks.<task_key> a task this one depends on (directly or not)")


# -- graph ---------------------------------------------------------------------------------------

def cycle_in_run_order(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """`plan.find_cycle` turned around: ``[a, b, c, a]`` where each runs before the next, starting
    at the task declared first (as the validation message shows it)."""
    cycle = find_cycle(deps)
    if cycle is None:
        return None
    cycle = cycle[:-1][::-1]
    order = {k: i for i, k in enumerate(deps)}
    first = min(range(len(cycle)), key=lambda i: order[cycle[i]])
    cycle = cycle[first:] + cycle[:first]
    return cycle + [cycle[0]]


def _upstream_closure(deps: Mapping[str, list[str]], key: str) -> list[str]:
    """`key`'s transitive upstream keys (cycles tolerated), in declaration order."""
    seen: set[str] = set()
    todo = list(deps.get(key, ()))
    while todo:
        k = todo.pop()
        if k in seen or k not in deps:
            continue
        seen.add(k)
        todo.extend(deps[k])
    seen.discard(key)
    return [k for k in deps if k in seen]


class _Upstream(Collection):
    """A task's transitive upstream keys, computed on first use (by a `{{tasks.…}}` reference):
    computing them for every task up front is quadratic in a deep DAG."""

    def __init__(self, checker: Any, key: str):
        self._checker, self._key = checker, key

    def _keys(self) -> list[str]:
        return self._checker.upstream_of(self._key)

    def __contains__(self, item: object) -> bool:
        return item in self._keys()

    def __iter__(self):
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


# -- the checker ---------------------------------------------------------------------------------

def validate_job_settings(data: Any, *, base_dir: Path | None = None,
                          destinations: Collection[str] | None = None) -> list[Problem]:
    """Every problem of a JobSettings dict (types and semantics); empty when the job is valid.

    With ``base_dir``, notebook and script paths must name existing files (relative paths are
    taken relative to ``base_dir``). With ``destinations`` (the workspace's notification destination
    ids), webhook notifications must name one of them.
    """
    if not isinstance(data, Mapping):
        return [Problem("", f"the job definition must be a map of JobSettings fields, not {_show(data)}",
                        "write name:, tasks: ... at the top level")]
    return _Checker(data, base_dir, destinations).run()


class _Checker:
    def __init__(self, data: Mapping, base_dir: Path | None, destinations: Collection[str] | None = None):
        self.data = data
        self.destinations = destinations
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.problems: list[Problem] = []
        self.typed_paths: set[str] = set()
        self.git = data.get("git_source") is not None
        self._refs: Any = None
        self.labels: list[str] = []
        self.by_key: dict[str, dict] = {}
        self.keys: list[str] = []
        self.params: list[str] = []
        self.suppressed: tuple[str, ...] = ()  # paths below a nested for_each (one problem says it all)

    def add(self, path: str, message: str, fix: str = "") -> None:
        if path not in self.typed_paths:
            self.problems.append(Problem(path, message, fix))

    def run(self) -> list[Problem]:
        try:
            JobSettings.model_validate(dict(self.data))
        except ValidationError as exc:
            for err in exc.errors():
                path = _loc_path(err["loc"], self.data)
                if path not in self.typed_paths:
                    self.typed_paths.add(path)
                    self.problems.append(_type_problem(err, path))
        self.check_job()
        problems = [p for p in self.problems if not p.path.startswith(self.suppressed)]
        return sorted(problems, key=_order)

    # job level
    def check_job(self) -> None:
        data = self.data
        tasks = data.get("tasks")
        if tasks is None or tasks == []:
            self.add("tasks", "a job needs at least one task",
                     "add tasks: with at least one task (task_key and one task type)")
        tasks = tasks if isinstance(tasks, list) else []
        for field in ("max_concurrent_runs", "timeout_seconds"):
            self.check_range(field, data.get(field), 0, 1000 if field == "max_concurrent_runs" else None)
        self.check_health(data.get("health"), "health")
        for note, problem in notification_problems(data, self.destinations):
            if not note:
                self.add(problem.path, problem.message, problem.fix)
        for problem in check_when(data):  # schedule, trigger, continuous
            self.add(problem.path, problem.message, problem.fix)
        for i, task in enumerate(tasks):
            label = f"tasks[{i}]" + _key_label(task)
            self.labels.append(label)
            key = as_text(task.get("task_key")) if isinstance(task, dict) else None
            if isinstance(key, str):
                if key in self.by_key:
                    first = next(j for j, t in enumerate(tasks) if t is self.by_key[key])
                    self.add(f"{label}.task_key", f"task_key '{key}' is already used by tasks[{first}]",
                             "give every task a unique task_key")
                else:
                    self.by_key[key] = task
        self.keys = list(self.by_key)
        self.deps = {k: [d for d in self.dep_keys(t) if d in self.by_key and d != k]
                     for k, t in self.by_key.items()}
        self._upstream: dict[str, list[str]] = {}  # transitive upstream, computed for tasks that need it
        self.params = self.check_parameters(data.get("parameters"))

        for i, task in enumerate(tasks):
            if isinstance(task, dict):
                key = as_text(task.get("task_key"))
                ups = _Upstream(self, key) if isinstance(key, str) else []
                self.check_task(task, self.labels[i], ups, nested=False)
                self.check_depends_on(task, self.labels[i], key)

        cycle = cycle_in_run_order(self.deps)
        if cycle:
            i = next(i for i, t in enumerate(tasks) if t is self.by_key[cycle[0]])
            self.add(f"{self.labels[i]}.depends_on", "the tasks depend on each other in a cycle: "
                     + " -> ".join(cycle) + " (each runs before the next)",
                     "remove one of these dependencies so the tasks form a DAG")

    def check_compute_keys(self, task: dict, label: str) -> None:
        """`job_cluster_key` / `environment_key` must name an entry of `job_clusters` / `environments`."""
        for field, section, entry_key, noun in (
                ("job_cluster_key", "job_clusters", "job_cluster_key", "job cluster"),
                ("environment_key", "environments", "environment_key", "environment")):
            value = as_text(task.get(field))
            if not isinstance(value, str):
                continue
            entries = self.data.get(section)
            known = [as_text(e.get(entry_key)) for e in entries if isinstance(e, dict)] \
                if isinstance(entries, list) else []
            if value not in known:
                close = difflib.get_close_matches(value, [k for k in known if isinstance(k, str)], n=1)
                hint = f"; did you mean '{close[0]}'?" if close else \
                    f"; defined: {', '.join(map(str, known))}" if known else f"; the job has no {section}"
                self.add(f"{label}.{field}", f"'{value}' names no {noun} of this job{hint}",
                         f"add {{{entry_key}: {value}, ...}} under {section}, or remove {field} "
                         "to run the task on the local kernel pool")

    def upstream_of(self, key: str) -> list[str]:
        """`key`'s transitive upstream keys in declaration order (only tasks whose references name other
        tasks need it: computing it for every task is quadratic in a deep DAG)."""
        if key not in self._upstream:
            self._upstream[key] = _upstream_closure(self.deps, key)
        return self._upstream[key]

    def check_parameters(self, params: Any) -> list[str]:
        names: list[str] = []
        if not isinstance(params, list):
            return names
        for i, p in enumerate(params):
            if not isinstance(p, dict):
                continue
            path = f"parameters[{i}]"
            name = as_text(p.get("name"))
            if isinstance(name, str):
                if not _PARAM_RE.fullmatch(name):
                    self.add(f"{path}.name", f"'{name}' is not a valid parameter name",
                             "use only letters, digits, _, - and .")
                if name in names:
                    self.add(f"{path}.name", f"parameter '{name}' is declared twice",
                             "give each job parameter a unique name")
                else:
                    names.append(name)
        for i, p in enumerate(params):
            if isinstance(p, dict):
                self.refs(p.get("default"), f"parameters[{i}].default", names=names, upstream=[],
                          fix="a job parameter's default is set when the run starts: it may use job.* "
                              "references, not tasks.*")
        return names

    def check_range(self, path: str, value: Any, low: int, high: int | None = None) -> None:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < low or (high is not None and value > high):
                span = f"between {low} and {high}" if high is not None else f"at least {low}"
                self.add(path, f"must be {span}, not {value}", f"use a value {span}")

    @staticmethod
    def dep_keys(task: dict) -> list[str]:
        deps = task.get("depends_on")
        out = []
        for d in deps if isinstance(deps, list) else []:
            key = as_text(d.get("task_key")) if isinstance(d, dict) else None
            if isinstance(key, str):
                out.append(key)
        return out

    # task level
    def check_task(self, task: dict, label: str, upstream: list[str], nested: bool) -> None:
        key = as_text(task.get("task_key"))
        if isinstance(key, str):
            if not _KEY_RE.fullmatch(key) or len(key) > 100:
                self.add(f"{label}.task_key", f"'{key}' is not a valid task_key",
                         "use 1 to 100 letters, digits, _ and -")
        types = _task_types()
        present = [t for t in types if task.get(t) is not None]
        if not present:
            hint = ""
            for k in task:
                close = [] if k in _TASK_FIELDS else difflib.get_close_matches(k, types, n=1, cutoff=0.75)
                if close:
                    hint = f" ('{k}' is not a task type; did you mean {close[0]}?)"
                    break
            self.add(label, "the task has no task type" + hint, f"add exactly one of {_runnable()}")
        elif len(present) > 1:
            self.add(label, f"the task has {len(present)} task types: " + " and ".join(present),
                     "keep exactly one task type per task; split the work into several tasks")
        for kind in present:
            if kind_for_field(kind) is None and task.get("disabled") is not True:
                self.add(f"{label}.{kind}", f"nbjobs cannot run {kind} tasks locally",
                         "use a notebook_task or spark_python_task that does the same work, "
                         "or set disabled: true")

        self.check_compute_keys(task, label)
        run_if = as_text(task.get("run_if"))
        if run_if is not None and run_if not in _RUN_IFS:
            self.add(f"{label}.run_if", f"'{run_if}' is not a run_if value", "use one of " + ", ".join(_RUN_IFS))
        for field in ("timeout_seconds", "min_retry_interval_millis"):
            self.check_range(f"{label}.{field}", task.get(field), 0)
        self.check_range(f"{label}.max_retries", task.get("max_retries"), -1)
        self.check_health(task.get("health"), f"{label}.health")

        for field in present:
            kind, payload = kind_for_field(field), task.get(field)
            if kind is None or not isinstance(payload, dict):
                continue
            if field not in _TASK_FIELDS and kind.model is not None:  # a plug-in's type: Task keeps it as JSON
                self.check_model(kind.model, payload, f"{label}.{field}")
            kind.validate(payload, f"{label}.{field}", self, upstream=upstream, nested=nested)
        refs = dict(upstream=upstream, in_for_each=nested)
        for kind, field in (("sql_task", "parameters"), ("python_wheel_task", "named_parameters")):
            payload = task.get(kind)
            if isinstance(payload, dict):
                self.refs_map(payload.get(field), f"{label}.{kind}.{field}", **refs)
        wheel = task.get("python_wheel_task")
        if isinstance(wheel, dict):
            self.refs_list(wheel.get("parameters"), f"{label}.python_wheel_task.parameters", **refs)

    def check_model(self, model: Any, payload: dict, path: str) -> None:
        """Type problems of a payload `model` (a plug-in kind's), named by their field path."""
        try:
            model.model_validate(payload)
        except ValidationError as exc:
            for err in exc.errors():
                where = path + "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in err["loc"])
                if where not in self.typed_paths:
                    self.typed_paths.add(where)
                    self.problems.append(_type_problem(err, where))

    def check_health(self, health: Any, path: str) -> None:
        for note, problem in health_problems(health, path):
            if not note:
                self.add(problem.path, problem.message, problem.fix)

    def suppress(self, prefix: str) -> None:
        self.suppressed += (prefix,)

    def check_depends_on(self, task: dict, label: str, key: Any) -> None:
        deps = task.get("depends_on")
        if not isinstance(deps, list):
            return
        seen: set[str] = set()
        for j, dep in enumerate(deps):
            if not isinstance(dep, dict):
                continue
            path = f"{label}.depends_on[{j}]"
            up = as_text(dep.get("task_key"))
            if not isinstance(up, str):
                continue
            if up == key:
                self.add(f"{path}.task_key", "a task cannot depend on itself", "remove this dependency")
            elif up not in self.by_key:
                close = difflib.get_close_matches(up, self.keys, n=1)
                fix = f"did you mean '{close[0]}'?" if close else \
                    "use the task_key of another task in this job: " + ", ".join(self.keys[:10]) + \
                    (", ..." if len(self.keys) > 10 else "")
                self.add(f"{path}.task_key", f"depends on unknown task '{up}'", fix)
            if up in seen:
                self.add(f"{path}.task_key", f"depends on '{up}' twice", "list each upstream task once")
            seen.add(up)
            outcome = as_text(dep.get("outcome"))
            if outcome is None:
                continue
            if outcome not in ("true", "false"):
                self.add(f"{path}.outcome", f"'{outcome}' is not a condition outcome", 'use "true" or "false"')
            upstream_task = self.by_key.get(up)
            if upstream_task is not None and not any(upstream_task.get(f) is not None for f in _outcome_fields()):
                kind = next((t for t in _task_types() if upstream_task.get(t) is not None), "task without a type")
                with_outcome = " or ".join(_outcome_fields())
                self.add(f"{path}.outcome", f"outcome is only allowed after a condition task, "
                         f"and '{up}' is a {kind}", f"remove outcome, or make '{up}' a {with_outcome}")

    def check_file(self, payload: dict, field: str, path: str, kind: str) -> None:
        value = payload.get(field)
        source = as_text(payload.get("source"))
        if self.base_dir is None or self.git or not isinstance(value, str) or \
                (isinstance(source, str) and source.upper() == "GIT"):
            return
        what = "notebook" if kind == "notebook" else "script"
        if is_remote_path(value):
            self.add(f"{path}.{field}", f"{what} '{value}' is a remote path nbjobs cannot read",
                     "use a local path, relative to the file that declares the task")
            return
        if find_source_file(value, self.base_dir, kind) is None:
            tried = source_candidates(value, self.base_dir, kind)
            also = f" (also tried {', '.join(c.name for c in tried[1:])})" if len(tried) > 1 else ""
            self.add(f"{path}.{field}", f"{what} not found: {tried[0]}{also}",
                     "check the path; a relative path is relative to the file that declares the task")

    # dynamic value references
    def refs(self, text: Any, path: str, *, upstream: list[str], in_for_each: bool = False,
             names: list[str] | None = None, fix: str = _REF_FIX) -> None:
        if not isinstance(text, str) or "{{" not in text:
            return
        module = self.refs_module()
        if module is None:
            return
        messages = module.reference_problems(
            text, job_parameters=self.params if names is None else names, task_keys=self.keys,
            upstream=upstream, in_for_each=in_for_each)
        for message in messages:
            self.add(path, message, fix)

    def refs_map(self, values: Any, path: str, **kw: Any) -> None:
        if isinstance(values, dict):
            for k, v in values.items():
                self.refs(v, f"{path}.{k}", **kw)

    def refs_list(self, values: Any, path: str, **kw: Any) -> None:
        if isinstance(values, list):
            for i, v in enumerate(values):
                self.refs(v, f"{path}[{i}]", **kw)

    def refs_module(self) -> Any:
        if self._refs is None:
            try:
                self._refs = importlib.import_module("nbjobs.refs")
            except ImportError:
                self._refs = False
        return self._refs or None


_types_cache: tuple[int, list[str], tuple[str, ...]] = (-1, [], ())


def _task_types() -> list[str]:
    """The Jobs API task types, and the fields plug-in kinds registered."""
    return _types()[1]


def _outcome_fields() -> tuple[str, ...]:
    """The task types that end with an outcome `depends_on[].outcome` may test (conditions)."""
    return _types()[2]


def _types() -> tuple[int, list[str], tuple[str, ...]]:
    global _types_cache
    if _types_cache[0] != version():
        _types_cache = (version(), list(TASK_TYPES) + [k.field for k in kinds() if k.field not in TASK_TYPES],
                        tuple(k.field for k in kinds() if k.has_outcome))
    return _types_cache


def _runnable() -> str:
    fields = [k.field for k in kinds()]
    return ", ".join(fields[:-1]) + " or " + fields[-1] if len(fields) > 1 else "".join(fields)


def _order(problem: Problem) -> tuple[int, int]:
    """Job-level problems first, then task by task (stable within a task)."""
    m = re.match(r"tasks\[(\d+)\]", problem.path)
    return (1, int(m.group(1))) if m else (0, 0)
