"""Parameterised notebook batches: one notebook (or script) over the product of parameter grids.

A batch is an ordinary job with one for-each task, so it has everything a run has: a run id, an
executed notebook per combination, runs/get, cancel and repair (a repair reruns only the
combinations that failed)::

    from nbjobs.batch import run_batch
    result = run_batch("report.ipynb", {"region": ["north", "south"], "year": [2024, 2025]},
                       params={"mode": "full"}, concurrency=2)
    for row in result.rows:
        print(row.parameters, row.state, row.output_path)

From the command line: ``nbjobs batch report.ipynb --grid region=north,south --grid year=2024,2025``.
"""
from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import unquote

from .events import EventHandler
from .follow import cancel_on_interrupt
from .tasks.for_each import MAX_CONCURRENCY, MAX_ITERATIONS

__all__ = ["Batch", "BatchResult", "BatchRow", "batch_settings", "combinations", "parse_grid", "run_batch",
           "save_batch"]

LOOP_KEY = "batch"


@dataclass
class BatchRow:
    """One combination of the batch: its parameters, state and executed notebook (or logs)."""
    index: int
    parameters: dict[str, str]
    state: str
    output_path: str | None = None
    error: str | None = None
    task_run_id: int | None = None


@dataclass
class BatchResult:
    job_id: int
    run: dict
    rows: list[BatchRow] = field(default_factory=list)

    @property
    def run_id(self) -> int:
        return self.run["run_id"]

    @property
    def ok(self) -> bool:
        return self.run["state"].get("result_state") == "SUCCESS"


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """``NAME=V1,V2`` items (repeatable; a repeated NAME adds values) to {name: [values]}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--grid {item!r}: expected NAME=V1,V2,..., e.g. --grid region=north,south")
        parts = [v.strip() for v in values.split(",")]
        if not any(parts):
            raise ValueError(f"--grid {item!r}: give at least one value after '='")
        grid.setdefault(name, []).extend(parts)
    return grid


def combinations(grid: Mapping[str, Iterable[Any]]) -> list[dict[str, str]]:
    """The product of the grids, in order (the last name varies fastest); values become text."""
    if not grid:
        raise ValueError("a batch needs at least one grid, e.g. --grid region=north,south")
    names = list(grid)
    values = []
    for name in names:
        column = [_text(v) for v in grid[name]]
        if not column:
            raise ValueError(f"grid {name!r} has no values")
        values.append(column)
    count = 1
    for column in values:
        count *= len(column)
    if count > MAX_ITERATIONS:
        raise ValueError(f"the grids make {count:,} combinations; the limit is {MAX_ITERATIONS:,} iterations. "
                         "Use fewer values, or split the batch")
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def batch_settings(notebook: str | os.PathLike, grid: Mapping[str, Iterable[Any]], *,
                   params: Mapping[str, Any] | None = None, concurrency: int = 1,
                   name: str | None = None) -> dict:
    """The job (Jobs API JSON) of a batch: one for-each task over the combinations.

    A notebook gets each combination (and ``params``) as widget values and papermill parameters;
    a ``.py`` script gets them as ``--name value`` arguments."""
    path = Path(notebook).expanduser().resolve()
    if not 1 <= int(concurrency) <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency {concurrency}: give a number from 1 to {MAX_CONCURRENCY}")
    combos = combinations(grid)
    params = {str(k): _text(v) for k, v in (params or {}).items()}
    clash = sorted(set(params) & set(combos[0]))
    if clash:
        raise ValueError(f"{', '.join(clash)} is both a grid and a fixed parameter; keep one")
    values = {k: "{{input." + _ref_name(k) + "}}" for k in combos[0]}
    nested_key = re.sub(r"[^A-Za-z0-9_-]", "_", path.stem) or "notebook"
    if path.suffix == ".py":
        args = [a for k, v in {**params, **values}.items() for a in (f"--{k}", v)]
        nested: dict = {"task_key": nested_key, "spark_python_task": {"python_file": str(path), "parameters": args}}
    else:
        nested = {"task_key": nested_key,
                  "notebook_task": {"notebook_path": str(path), "base_parameters": {**params, **values}}}
    return {
        "name": name or f"batch {path.stem}",
        "tags": {"nbjobs-batch": ""},
        "max_concurrent_runs": 10,
        "tasks": [{"task_key": LOOP_KEY, "for_each_task": {
            "inputs": json.dumps(combos, ensure_ascii=False), "concurrency": int(concurrency), "task": nested}}],
    }


@dataclass
class Batch:
    """A batch saved as a job on a client (a `JobsClient`); `run` starts it and waits."""
    client: Any
    job_id: int
    settings: dict

    @property
    def count(self) -> int:
        """How many combinations (runs of the notebook) the batch has."""
        return len(json.loads(self.settings["tasks"][0]["for_each_task"]["inputs"]))

    def run(self, on_event: EventHandler | None = None) -> BatchResult:
        """Run the batch and wait; `on_event` gets its events. Ctrl-C cancels the run."""
        started = self.client.run_now(self.job_id, wait=False)
        run = cancel_on_interrupt(self.client, started["run_id"], on_event=on_event)
        return BatchResult(job_id=self.job_id, run=run, rows=batch_rows(self.client, run))


def save_batch(client: Any, notebook: str | os.PathLike, grid: Mapping[str, Iterable[Any]], *,
               params: Mapping[str, Any] | None = None, concurrency: int = 1, name: str | None = None) -> Batch:
    """Save the batch's job on `client` by name (``batch <notebook stem>``, so batches of a notebook
    share one job and its run history)."""
    settings = batch_settings(notebook, grid, params=params, concurrency=concurrency, name=name)
    job_id, _ = client.save_job(settings, base_dir=Path(notebook).expanduser().resolve().parent)
    return Batch(client, job_id, settings)


def run_batch(notebook: str | os.PathLike, grid: Mapping[str, Iterable[Any]], *,
              params: Mapping[str, Any] | None = None, concurrency: int = 1, name: str | None = None,
              workspace: Any = None, on_event: EventHandler | None = None) -> BatchResult:
    """Run the batch and wait. ``workspace``: any `JobsClient` (a Workspace, or `nbjobs.connect(url)`);
    default ``Workspace()`` ($NBJOBS_HOME or ./.nbjobs)."""
    own = workspace is None
    if own:
        from .service import Workspace
        workspace = Workspace()
    try:
        return save_batch(workspace, notebook, grid, params=params, concurrency=concurrency, name=name).run(on_event)
    finally:
        if own:
            workspace.close()


def batch_rows(client: Any, run: dict) -> list[BatchRow]:
    """The rows of a batch run (one per combination, in order) from its for-each task run's runs/get."""
    loop = next((t for t in run.get("tasks", []) if t["task_key"] == LOOP_KEY), None)
    if loop is None:
        return []
    try:
        elements = json.loads(loop["for_each_task"]["inputs"])
    except (KeyError, ValueError):
        elements = []
    rows = []
    iterations = client.get_run(loop["run_id"]).get("iterations", [])
    for index, (element, item) in enumerate(zip(elements, iterations)):
        state = item["state"].get("result_state") or item["state"]["life_cycle_state"]
        url = item.get("run_page_url") or ""
        rows.append(BatchRow(
            index=index, parameters={k: _text(v) for k, v in element.items()} if isinstance(element, dict) else {},
            state=state, output_path=unquote(url.removeprefix("file://")) or None,
            error=(item["state"].get("state_message") or None) if state != "SUCCESS" else None,
            task_run_id=item["run_id"]))
    return rows


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _ref_name(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_]+", name) else f"`{name}`"
