"""Databricks Asset Bundles (Databricks docs, "bundle configuration"): ``databricks.yml`` with include, variables and targets."""
from __future__ import annotations

import difflib
import getpass
import glob
import json
import os
import re
from pathlib import Path
from typing import Any

from ..tasks.paths import map_task_paths
from .load import BUNDLE_FILES, LoadedJob, Located, parse_job_settings, read_document, resolve_job_paths
from .models import as_text
from ..errors import JobDefinitionError, Problem

# target keys that replace the root value instead of being merged into it
_OVERWRITTEN = frozenset({"run_as", "mode", "compute_id", "cluster_id"})
_VAR_FIELDS = frozenset({"default", "lookup", "description", "type"})
_REF = re.compile(r"\$\{([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\}")
_KEEP = object()  # an interpolation left as written (${resources...}, unknown roots)


class _Lookup:
    """A variable whose value is a workspace lookup, which nbjobs cannot resolve."""


def load_bundle(path: Path, data: Any, *, job: str | None = None, target: str | None = None,
                variables: dict[str, str] | None = None) -> LoadedJob:
    """Load one job of a bundle. ``path`` is a databricks.yml, or a resource file of a bundle."""
    root_file, root_data, only = path, data, None
    if path.name not in BUNDLE_FILES:
        root = _root_including(path)
        if root is not None:  # a resource file included by a databricks.yml above it
            only = list(_jobs(data))
            root_file, root_data = root, read_document(root)
    return _Bundle(root_file, source=path).load(root_data, job=job, target=target,
                                                variables=dict(variables or {}), only=only)


def _jobs(doc: Any) -> dict:
    resources = doc.get("resources") if isinstance(doc, dict) else None
    jobs = resources.get("jobs") if isinstance(resources, dict) else None
    return jobs if isinstance(jobs, dict) else {}


def _include_matches(root_dir: Path, patterns: Any) -> tuple[list[Path], list[str]]:
    """Files matched by the include globs (sorted, once each) and the literal paths that do not exist."""
    files: list[Path] = []
    missing: list[str] = []
    for pattern in patterns if isinstance(patterns, list) else []:
        if not isinstance(pattern, str):
            continue
        matches = sorted(glob.glob(pattern, root_dir=str(root_dir), recursive=True))
        if not matches and not glob.has_magic(pattern):
            missing.append(pattern)
        for m in matches:
            p = Path(os.path.abspath(root_dir / m))
            if p.is_file() and p not in files and p.name not in BUNDLE_FILES:
                files.append(p)
    return files, missing


def _root_including(path: Path) -> Path | None:
    """The databricks.yml above ``path`` whose include globs match it, if any."""
    for parent in path.parents:
        for name in BUNDLE_FILES:
            candidate = parent / name
            if candidate.is_file():
                doc = read_document(candidate)
                files, _ = _include_matches(parent, doc.get("include") if isinstance(doc, dict) else None)
                return candidate if path in files else None
    return None


# -- merging -------------------------------------------------------------------------------------

def _merge(base: Any, over: Any) -> Any:
    """Deep merge as the CLI does: maps merged, lists concatenated, scalars replaced; null keeps base."""
    if over is None:
        return base
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    if isinstance(base, list) and isinstance(over, list):
        return base + over
    return over


def _merge_by_key(items: Any, key: str) -> Any:
    """Entries with the same ``key`` merged into the first one (later entries' fields win)."""
    if not isinstance(items, list):
        return items
    out: list = []
    index: dict[Any, int] = {}
    for item in items:
        k = as_text(item.get(key)) if isinstance(item, dict) else None
        if not isinstance(k, str):
            out.append(item)
        elif k in index:
            out[index[k]] = _merge(out[index[k]], item)
        else:
            index[k] = len(out)
            out.append(item)
    return out


def _normalise_job(job: dict) -> dict:
    job = dict(job)
    if "tasks" in job:
        tasks = _merge_by_key(job["tasks"], "task_key")
        job["tasks"] = [_dedupe_depends_on(t) for t in tasks] if isinstance(tasks, list) else tasks
    if "parameters" in job:
        job["parameters"] = _merge_by_key(job["parameters"], "name")
    if "job_clusters" in job:
        job["job_clusters"] = _merge_by_key(job["job_clusters"], "job_cluster_key")
    return job


def _dedupe_depends_on(task: Any) -> Any:
    """A merged task lists each upstream once (the later entry wins)."""
    if not isinstance(task, dict) or not isinstance(task.get("depends_on"), list):
        return task
    return {**task, "depends_on": _merge_by_key(task["depends_on"], "task_key")}


# -- remembering where paths were declared -----------------------------------------------------

def _annotate(doc: dict, base_dir: Path) -> dict:
    """Mark the task paths of a bundle document with the document's directory (in place)."""
    def mark(value: Any, what: str, holder: dict, label: str) -> Any:
        return Located(value, base_dir) if isinstance(value, str) else value

    places = [doc] + [t for key in ("targets", "environments") if isinstance(doc.get(key), dict)
                      for t in doc[key].values() if isinstance(t, dict)]
    for place in places:
        for job in _jobs(place).values():
            if isinstance(job, dict) and isinstance(job.get("tasks"), list):
                job["tasks"] = [map_task_paths(task, mark) for task in job["tasks"]]
    return doc


# -- the bundle ----------------------------------------------------------------------------------

def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return os.environ.get("USER") or "user"


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(as_text(value))


def _job_label(key: str, job: Any) -> str:
    name = job.get("name") if isinstance(job, dict) else None
    return f"{key} ({name})" if isinstance(name, str) and name != key else key


class _Bundle:
    def __init__(self, root_file: Path, source: Path):
        self.root_file = root_file
        self.root_dir = root_file.parent
        self.source = source
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(path, message, fix))

    def check(self) -> None:
        if self.problems:
            raise JobDefinitionError(self.problems, source=self.source)

    def load(self, data: Any, *, job: str | None, target: str | None, variables: dict[str, str],
             only: list[str] | None) -> LoadedJob:
        if not isinstance(data, dict):
            raise JobDefinitionError([Problem("", "a databricks.yml must be a map (bundle:, resources: ...)",
                                              "write the bundle's settings at the top level")], source=self.source)
        config = self.read(data)
        self.check()
        target, config, target_cfg = self.apply_target(config, target)
        self.check()
        jobs = {k: _normalise_job(j) if isinstance(j, dict) else j for k, j in _jobs(config).items()}
        values = self.variables(config, target, target_cfg, variables)
        self.check()
        interp = _Interpolator(values, config, target, self.root_dir)
        key = self.select(jobs, job, only, interp)
        self.check()
        settings = interp.expand(jobs[key], f"resources.jobs.{key}")
        self.problems += interp.problems
        self.check()
        if not isinstance(settings, dict):
            raise JobDefinitionError([Problem(f"resources.jobs.{key}", "a job must be a map of JobSettings fields",
                                              "write name:, tasks: ... under the job's key")], source=self.source)
        if settings.get("queue") is None:
            settings["queue"] = {"enabled": True}  # bundles turn queueing on (Databricks docs, bundle job defaults)
        settings = resolve_job_paths(settings, self.root_dir)
        try:
            model = parse_job_settings(settings, base_dir=self.root_dir)
        except JobDefinitionError as exc:
            prefix = f"resources.jobs.{key}"
            raise JobDefinitionError([Problem(f"{prefix}.{p.path}" if p.path else prefix, p.message, p.fix)
                                      for p in exc.problems], source=self.source) from None
        return LoadedJob(model, self.source, resource_key=key, target=target)

    def read(self, data: dict) -> dict:
        """The root document merged with its includes (paths marked with their file's directory)."""
        config = _annotate(dict(data), self.root_dir)
        includes = config.pop("include", None)
        if includes is not None and not isinstance(includes, list):
            self.problem("include", "must be a list of file globs", "write include: [resources/*.yml]")
        files, missing = _include_matches(self.root_dir, includes)
        for pattern in missing:
            self.problem("include", f"no file matches '{pattern}' (in {self.root_dir})",
                         "fix the path; include globs are relative to databricks.yml")
        owners = {k: self.root_file.name for k in _jobs(config)}
        for file in files:
            doc = read_document(file)
            rel = os.path.relpath(file, self.root_dir)
            if doc is None:
                continue
            if not isinstance(doc, dict):
                self.problem(rel, "an included file must be a map (resources: ...)", "fix the file")
                continue
            if "include" in doc:
                self.problem(f"{rel}: include", "include is only read from databricks.yml",
                             "move the include list into databricks.yml")
                doc = {k: v for k, v in doc.items() if k != "include"}
            for k in _jobs(doc):
                if k in owners:
                    self.problem(f"resources.jobs.{k}", f"the job '{k}' is defined in both {owners[k]} and {rel}",
                                 "define each job once, or rename one of them")
                owners[k] = rel
            config = _merge(config, _annotate(doc, file.parent))
        return config

    def apply_target(self, config: dict, target: str | None) -> tuple[str, dict, dict]:
        """The chosen target's name, the config with the target merged over it, and the target's map."""
        targets = config.get("targets") if config.get("targets") is not None else config.get("environments")
        targets = targets if isinstance(targets, dict) else {}
        names = list(targets)
        listing = ", ".join(names) if names else "none are defined"
        if target is not None:
            if target not in targets and not (target == "default" and not targets):
                self.problem("targets", f"unknown target '{target}'", f"use one of the bundle's targets: {listing}")
                return target, config, {}
        else:
            defaults = [n for n, t in targets.items() if isinstance(t, dict) and t.get("default") is True]
            if len(defaults) > 1:
                self.problem("targets", "several targets are marked default: " + ", ".join(defaults),
                             "mark only one target default: true")
                return defaults[0], config, {}
            if defaults:
                target = defaults[0]
            elif len(names) == 1:
                target = names[0]
            elif not names:
                return "default", config, {}  # the CLI's implicit target
            else:
                self.problem("targets", f"the bundle has {len(names)} targets and none is the default",
                             f"choose one with --target (target= in Python): {listing}")
                return names[0], config, {}
        target_cfg = targets.get(target) or {}
        if not isinstance(target_cfg, dict):
            self.problem(f"targets.{target}", "a target must be a map", "write the target's settings as a map")
            return target, config, {}
        merged = {k: v for k, v in config.items() if k not in ("targets", "environments")}
        for k, v in target_cfg.items():
            if k in ("default", "variables"):
                continue
            merged[k] = v if k in _OVERWRITTEN else _merge(merged.get(k), v)
        return target, merged, target_cfg

    def variables(self, config: dict, target: str, target_cfg: dict, cli: dict[str, str]) -> dict[str, Any]:
        """Each declared variable's value: --var > BUNDLE_VAR_<name> > target > default."""
        declared = config.get("variables") or {}
        if not isinstance(declared, dict):
            self.problem("variables", "must be a map of variable definitions",
                         "write variables: {name: {default: value}}")
            declared = {}
        specs = {n: dict(s) if isinstance(s, dict) else {"default": s} for n, s in declared.items()}
        overrides = target_cfg.get("variables") or {}
        for name, v in overrides.items() if isinstance(overrides, dict) else []:
            if name not in specs:
                self.problem(f"targets.{target}.variables.{name}",
                             f"the variable '{name}' is not declared at the top level",
                             f"declare it under variables: in databricks.yml ({name}: {{default: ...}})")
                continue
            full = isinstance(v, dict) and v and set(v) <= _VAR_FIELDS
            override = v if full else {"default": v}
            if "default" in override or "lookup" in override:
                specs[name] = {**{k: s for k, s in specs[name].items() if k not in ("default", "lookup")},
                               **override}
        for name in cli:
            if name not in specs:
                self.problem(f"--var {name}", f"no variable '{name}' is declared in the bundle",
                             "declare it under variables: in databricks.yml, or fix the name"
                             + (f" (declared: {', '.join(specs)})" if specs else ""))
        values: dict[str, Any] = {}
        for name, spec in specs.items():
            env = os.environ.get(f"BUNDLE_VAR_{name}")
            if name in cli:
                values[name] = cli[name]
            elif env is not None:
                values[name] = env
            elif spec.get("default") is not None:
                values[name] = spec["default"]
            elif spec.get("lookup") is not None:
                values[name] = _Lookup()
            else:
                self.problem(f"variables.{name}", f"the variable '{name}' has no value",
                             f"give it a default, a value in the target, --var {name}=value "
                             f"or the environment variable BUNDLE_VAR_{name}")
        return values

    def select(self, jobs: dict, job: str | None, only: list[str] | None, interp: _Interpolator) -> str:
        """The resource key of the job to load."""
        listing = ", ".join(_job_label(k, interp.quiet_name(j)) for k, j in jobs.items())
        if not jobs:
            self.problem("resources.jobs", "the bundle defines no jobs", "add a job under resources.jobs.<key>")
            return ""
        if job is not None:
            if job in jobs:
                return job
            named = [k for k, j in jobs.items() if interp.quiet_name(j).get("name") == job]
            if len(named) == 1:
                return named[0]
            if named:
                self.problem("resources.jobs", f"several jobs are named '{job}': {', '.join(named)}",
                             "choose the job by its resource key")
            else:
                close = difflib.get_close_matches(job, list(jobs), n=1)
                self.problem("resources.jobs", f"the bundle has no job '{job}'"
                             + (f" (did you mean '{close[0]}'?)" if close else ""), f"use one of: {listing}")
            return ""
        candidates = [k for k in (only or list(jobs)) if k in jobs]
        if len(candidates) == 1:
            return candidates[0]
        self.problem("resources.jobs", f"the bundle has {len(candidates)} jobs; say which one to load",
                     f"choose one with --job (job= in Python): {listing}")
        return ""


class _Interpolator:
    """``${var.x}``, ``${bundle.name}``, ``${bundle.target}``, ``${workspace...}``; ``{{...}}`` left alone."""

    def __init__(self, values: dict[str, Any], config: dict, target: str, root_dir: Path):
        self.values = values
        self.bundle = config.get("bundle") if isinstance(config.get("bundle"), dict) else {}
        self.workspace = config.get("workspace") if isinstance(config.get("workspace"), dict) else {}
        self.target = target
        self.root_dir = root_dir
        self.problems: list[Problem] = []
        self._done: dict[str, Any] = {}
        self._stack: list[str] = []

    def quiet_name(self, job: Any) -> dict:
        """The job with its name interpolated, problems ignored (to match job= against names)."""
        if not isinstance(job, dict):
            return {}
        saved = list(self.problems), dict(self._done)
        name = self.expand(job.get("name"), "")
        self.problems, self._done = saved
        return {**job, "name": name}

    def expand(self, obj: Any, path: str) -> Any:
        if isinstance(obj, str):
            return self.expand_str(obj, path)
        if isinstance(obj, Located):
            return Located(self.expand(obj.value, path), obj.base_dir)
        if isinstance(obj, dict):
            return {k: self.expand(v, f"{path}.{k}") for k, v in obj.items()}
        if isinstance(obj, list):
            label = path.endswith(".tasks")
            return [self.expand(v, f"{path}[{i}]" + (_task_label(v) if label else "")) for i, v in enumerate(obj)]
        return obj

    def expand_str(self, text: str, path: str) -> Any:
        whole = _REF.fullmatch(text)
        if whole:  # "${var.n}" alone keeps the value's type (a number, a map for complex variables)
            value = self.lookup(whole.group(1), path)
            return text if value is _KEEP else value

        def sub(m: re.Match) -> str:
            value = self.lookup(m.group(1), path)
            return m.group(0) if value is _KEEP else _render(value)
        return _REF.sub(sub, text)

    def fail(self, path: str, message: str, fix: str) -> str:
        self.problems.append(Problem(path, message, fix))
        return ""

    def lookup(self, ref: str, path: str) -> Any:
        head, *rest = ref.split(".")
        if head == "var" and rest:
            return self.variable(rest[0], rest[1:], path)
        if head == "bundle" and rest:
            if rest in (["target"], ["environment"]):
                return self.target
            return self.walk(self.bundle, rest, f"${{{ref}}}", path, "bundle")
        if head == "workspace" and rest:
            if rest in (["file_path"], ["root_path"]):
                return str(self.root_dir)
            if rest[0] == "current_user" and len(rest) == 2:
                return _user_name()
            return self.walk(self.workspace, rest, f"${{{ref}}}", path, "workspace")
        return _KEEP  # ${resources.jobs.<key>.id} and other deploy-time values

    def walk(self, node: Any, parts: list[str], shown: str, path: str, section: str) -> Any:
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return self.fail(path, f"{shown} is not set in the bundle", f"set it under {section}: or fix the name")
            node = node[part]
        return node

    def variable(self, name: str, fields: list[str], path: str) -> Any:
        shown = "${var." + ".".join([name, *fields]) + "}"
        if name not in self.values:
            close = difflib.get_close_matches(name, list(self.values), n=1)
            return self.fail(path, f"unknown variable {shown}" + (f" (did you mean '{close[0]}'?)" if close else ""),
                             f"declare '{name}' under variables: in databricks.yml, or fix the name")
        value = self.values[name]
        if isinstance(value, _Lookup):
            return self.fail(path, f"the variable '{name}' is a lookup, which nbjobs cannot resolve locally",
                             f"give it a value: --var {name}=value or BUNDLE_VAR_{name}, or a default in the target")
        if name not in self._done:
            if name in self._stack:
                return self.fail(path, "variables refer to each other in a cycle: "
                                 + " -> ".join(self._stack + [name]), "break the cycle")
            self._stack.append(name)
            self._done[name] = self.expand(value, f"variables.{name}")
            self._stack.pop()
        value = self._done[name]
        for f in fields:  # ${var.cfg.key} in a complex variable
            if not isinstance(value, dict) or f not in value:
                return self.fail(path, f"{shown}: the variable has no field '{f}'", "fix the reference")
            value = value[f]
        return value


def _task_label(task: Any) -> str:
    key = task.get("task_key") if isinstance(task, dict) else None
    return f" ({key})" if isinstance(key, str) else ""
