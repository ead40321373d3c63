"""The pure planner: job graph, run_if decisions, ready/skip steps, job result, repair selection.

No I/O. Everything is O(V+E): each task is decided once, when the last of its dependencies
finishes, by looking at its own edges (in-degree counting).

Repair (Jobs API runs/repair): ``selection = repair_selection(graph, results, ...)`` is the set of tasks
to plan again; every other task keeps its previous result and is passed as ``done``::

    done = {k: (results[k], outcomes.get(k)) for k in graph.tasks if k not in selection}
    planner = Planner(graph, done)

(``repair_selection`` always selects tasks that have no previous result, so ``done`` covers the
rest.) Condition tasks in ``done`` must keep their outcome so their branches decide again.

Retries (the task settings max_retries, min_retry_interval_millis, retry_on_timeout): ``retry_delay(policy, ...)`` says whether a finished attempt is retried
and after how long. For-each repairs and retries: ``iterations_to_reuse`` says which iterations of
the previous for-each task run keep their result. ``select_only`` is run-now's ``only``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from nbjobs.states import ResultState, RunIf

__all__ = [
    "Dependency",
    "JobGraph",
    "PlanTask",
    "Planner",
    "RetryPolicy",
    "Step",
    "decide",
    "edge_state",
    "find_cycle",
    "iterations_to_reuse",
    "job_result",
    "repair_selection",
    "retry_delay",
    "select_only",
]

S = ResultState


@dataclass(frozen=True)
class Dependency:
    """One ``depends_on`` entry; ``outcome`` ("true"/"false") only after a condition task."""

    task_key: str
    outcome: str | None = None


@dataclass(frozen=True)
class PlanTask:
    task_key: str
    depends_on: tuple[Dependency, ...] = ()
    run_if: RunIf = RunIf.ALL_SUCCESS
    disabled: bool = False


def _norm_outcome(outcome) -> str | None:
    if outcome is None:
        return None
    if isinstance(outcome, bool):
        return "true" if outcome else "false"
    return str(outcome).lower()


# ---------------------------------------------------------------------------------------------
# Graph


def find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as a closed path (``['a', 'b', 'a']``: a depends on b, b on a), or None.

    Keys missing from ``deps`` are ignored. Iterative DFS, O(V+E).
    """
    adj = {k: [d for d in v if d in deps] for k, v in deps.items()}
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(adj, WHITE)
    for root in adj:
        if color[root] != WHITE:
            continue
        color[root] = GREY
        path = [root]
        stack = [iter(adj[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = BLACK
                stack.pop()
            elif color[nxt] == GREY:
                return path[path.index(nxt):] + [nxt]
            elif color[nxt] == WHITE:
                color[nxt] = GREY
                path.append(nxt)
                stack.append(iter(adj[nxt]))
    return None


class JobGraph:
    """The task DAG. Raises ValueError for an unknown dependency, a duplicate key or a cycle."""

    def __init__(self, tasks: Iterable[PlanTask]):
        self.tasks: dict[str, PlanTask] = {}
        for t in tasks:
            if t.task_key in self.tasks:
                raise ValueError(f"duplicate task_key '{t.task_key}'")
            self.tasks[t.task_key] = t
        dependents: dict[str, list[str]] = {k: [] for k in self.tasks}
        for t in self.tasks.values():
            for d in t.depends_on:
                if d.task_key not in self.tasks:
                    raise ValueError(f"task '{t.task_key}' depends on unknown task '{d.task_key}'")
                dependents[d.task_key].append(t.task_key)
        cycle = find_cycle({k: [d.task_key for d in t.depends_on] for k, t in self.tasks.items()})
        if cycle:
            raise ValueError("dependency cycle: " + " -> ".join(cycle))
        # one entry per edge (the planner counts edges); dependents() de-duplicates
        self._edges_out = dependents
        self._dependents = {k: tuple(dict.fromkeys(v)) for k, v in dependents.items()}
        self.leaves: frozenset[str] = frozenset(k for k, v in dependents.items() if not v)

    def dependents(self, key: str) -> tuple[str, ...]:
        """Tasks that depend directly on ``key``."""
        return self._dependents[key]

    def upstream(self, key: str) -> frozenset[str]:
        """Every task ``key`` depends on, directly or not."""
        seen: set[str] = set()
        todo = [d.task_key for d in self.tasks[key].depends_on]
        while todo:
            k = todo.pop()
            if k not in seen:
                seen.add(k)
                todo.extend(d.task_key for d in self.tasks[k].depends_on)
        return frozenset(seen)

    def downstream(self, key: str | Iterable[str]) -> frozenset[str]:
        """Every task depending on ``key`` (or on any of several keys), directly or not."""
        starts = [key] if isinstance(key, str) else list(key)
        seen: set[str] = set()
        todo = [d for k in starts for d in self._dependents[k]]
        while todo:
            k = todo.pop()
            if k not in seen:
                seen.add(k)
                todo.extend(self._dependents[k])
        return frozenset(seen)

    def topological_order(self) -> list[str]:
        """Upstream first; ties in declaration order (Kahn)."""
        indeg = {k: len(t.depends_on) for k, t in self.tasks.items()}
        queue = deque(k for k, n in indeg.items() if n == 0)
        order = []
        while queue:
            k = queue.popleft()
            order.append(k)
            for d in self._edges_out[k]:
                indeg[d] -= 1
                if indeg[d] == 0:
                    queue.append(d)
        return order

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, key: object) -> bool:
        return key in self.tasks


# ---------------------------------------------------------------------------------------------
# Decisions


def edge_state(dep: Dependency, result: ResultState, outcome: str | None) -> ResultState:
    """The state a dependency edge contributes: EXCLUDED for the branch a condition did not take."""
    if dep.outcome is not None and result == S.SUCCESS and _norm_outcome(outcome) != _norm_outcome(dep.outcome):
        return S.EXCLUDED
    return result


def decide(run_if: RunIf, edges: Sequence[ResultState]) -> ResultState | None:
    """The run_if rule (Jobs API `Task.run_if`, databricks-sdk `jobs.RunIf`) over finished edges: None = run it, else the skip state.

    A DISABLED parent is done but neither succeeded nor failed; when a condition cannot be met
    because of disabled parents, the task is DISABLED too (Databricks "Disabled tasks" page)."""
    if not edges:
        return None
    run_if = RunIf(run_if)
    disabled = [e for e in edges if e is S.DISABLED]
    others = [e for e in edges if e is not S.DISABLED]
    if run_if == RunIf.ALL_DONE:
        return None if disabled or not all(e.is_excluded for e in edges) else S.EXCLUDED
    if disabled:
        if run_if in (RunIf.ALL_SUCCESS, RunIf.ALL_FAILED):
            return S.UPSTREAM_FAILED if run_if == RunIf.ALL_SUCCESS and any(e.is_failure for e in others) \
                else S.DISABLED
        if not others:
            return S.DISABLED
        verdict = decide(run_if, others)
        if verdict is S.EXCLUDED and run_if == RunIf.AT_LEAST_ONE_FAILED:
            return S.EXCLUDED
        if verdict is S.UPSTREAM_FAILED and not any(e.is_failure for e in others):
            return S.DISABLED
        return verdict
    if all(e.is_excluded for e in edges):
        return S.EXCLUDED
    if run_if == RunIf.AT_LEAST_ONE_FAILED:
        return None if any(e.is_failure for e in edges) else S.EXCLUDED
    if run_if == RunIf.ALL_FAILED:
        return None if all(e.is_failure for e in edges) else S.EXCLUDED
    if run_if == RunIf.ALL_SUCCESS:
        ok = all(e.is_success for e in edges)
    elif run_if == RunIf.AT_LEAST_ONE_SUCCESS:
        ok = any(e.is_success for e in edges)
    else:  # NONE_FAILED
        ok = not any(e.is_failure or e.is_canceled for e in edges)
    if ok:
        return None
    if any(e.is_failure for e in edges):
        return S.UPSTREAM_FAILED
    if any(e.is_canceled for e in edges):
        return S.UPSTREAM_CANCELED
    return S.UPSTREAM_FAILED


# ---------------------------------------------------------------------------------------------
# Planner


@dataclass
class Step:
    """Tasks to start now, and tasks the planner decided not to run (with their result)."""

    ready: list[str] = field(default_factory=list)
    skipped: dict[str, ResultState] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.ready or self.skipped)


class Planner:
    """Incremental planner for one run (or one repair) of a :class:`JobGraph`.

    ``done`` maps tasks finished before this planner started to ``(result, outcome)``; they are not
    rerun and their results feed their dependents. ``start()`` once, then ``finish()`` each task
    handed out as ready. A disabled task is skipped as DISABLED at start (it counts as excluded for
    its dependents).
    """

    def __init__(self, graph: JobGraph,
                 done: Mapping[str, tuple[ResultState, str | None]] | None = None):
        self.graph = graph
        self._results: dict[str, ResultState] = {}
        self._outcomes: dict[str, str | None] = {}
        for k, (result, outcome) in (done or {}).items():
            if k in graph.tasks:  # a task removed from the job since is forgotten
                self._results[k] = ResultState(result)
                self._outcomes[k] = _norm_outcome(outcome)
        self._pending = {
            k: sum(1 for d in t.depends_on if d.task_key not in self._results)
            for k, t in graph.tasks.items() if k not in self._results
        }
        self._started: set[str] = set()
        self._begun = False

    # -- state
    @property
    def finished(self) -> bool:
        return len(self._results) == len(self.graph.tasks)

    @property
    def results(self) -> dict[str, ResultState]:
        return dict(self._results)

    @property
    def outcomes(self) -> dict[str, str | None]:
        return {k: v for k, v in self._outcomes.items() if v is not None}

    @property
    def running(self) -> frozenset[str]:
        """Tasks handed out as ready and not finished yet."""
        return frozenset(self._started)

    # -- transitions
    def start(self) -> Step:
        """The initially ready tasks and the skips that follow from ``done`` and disabled tasks."""
        if self._begun:
            raise ValueError("the planner has already started")
        self._begun = True
        step = Step()
        for k, t in self.graph.tasks.items():
            if t.disabled and k not in self._results:
                self._settle(k, S.DISABLED, None, step, skipped=True)
        for k in self.graph.tasks:
            if k not in self._results and k not in self._started and self._pending[k] == 0:
                self._decide(k, step)
        return step

    def finish(self, key: str, result: ResultState, outcome: str | bool | None = None) -> Step:
        """Record ``key``'s result (and a condition task's outcome); return what follows from it.

        A task that is not running may be finished too (e.g. CANCELED when the run is canceled).
        """
        if key not in self.graph.tasks:
            raise ValueError(f"unknown task '{key}'")
        if key in self._results:
            raise ValueError(f"task '{key}' has already finished ({self._results[key]})")
        if not self._begun:
            raise ValueError("call start() before finish()")
        step = Step()
        self._started.discard(key)
        self._settle(key, ResultState(result), _norm_outcome(outcome), step, skipped=False)
        return step

    def cancel(self, result: ResultState = S.CANCELED) -> Step:
        """Mark every task that has not started as ``result`` (running tasks are finished by the
        caller as they stop). Returns them in ``skipped``."""
        step = Step()
        for k in self.graph.tasks:
            if k not in self._results and k not in self._started:
                self._results[k] = ResultState(result)
                self._outcomes[k] = None
                step.skipped[k] = ResultState(result)
        return step

    def _settle(self, key: str, result: ResultState, outcome: str | None, step: Step,
                skipped: bool) -> None:
        """Record a result and cascade: every dependent whose last edge this was is decided."""
        work = deque([(key, result, outcome, skipped)])
        while work:
            k, res, out, was_skip = work.popleft()
            self._results[k] = res
            self._outcomes[k] = out
            if was_skip:
                step.skipped[k] = res
            for d in self.graph._edges_out[k]:
                if d in self._results:
                    continue
                self._pending[d] -= 1
                if self._pending[d] == 0 and d not in self._started:
                    verdict = self._verdict(d)
                    if verdict is None:
                        self._started.add(d)
                        step.ready.append(d)
                    else:
                        work.append((d, verdict, None, True))

    def _verdict(self, key: str) -> ResultState | None:
        t = self.graph.tasks[key]
        if t.disabled:
            return S.DISABLED
        edges = [edge_state(d, self._results[d.task_key], self._outcomes.get(d.task_key))
                 for d in t.depends_on]
        return decide(t.run_if, edges)

    def _decide(self, key: str, step: Step) -> None:
        verdict = self._verdict(key)
        if verdict is None:
            self._started.add(key)
            step.ready.append(key)
        else:
            self._settle(key, verdict, None, step, skipped=True)

    # -- result
    def job_result(self) -> ResultState:
        """Decided by the leaf tasks (Jobs API docs, "run if dependencies"); raises ValueError before the run finished."""
        if not self.finished:
            missing = [k for k in self.graph.tasks if k not in self._results]
            raise ValueError("the run has unfinished tasks: " + ", ".join(missing[:10]))
        return job_result(self.graph, self._results)


def job_result(graph: JobGraph, results: Mapping[str, ResultState]) -> ResultState:
    """SUCCESS, SUCCESS_WITH_FAILURES (leaves fine, something failed), FAILED or CANCELED."""
    leaves = [results[k] for k in graph.leaves]
    if all(r.is_success for r in leaves):
        if all(results[k].is_success for k in graph.tasks):
            return S.SUCCESS
        return S.SUCCESS_WITH_FAILURES
    if any(r.is_failure for r in leaves):
        return S.FAILED
    return S.CANCELED


# ---------------------------------------------------------------------------------------------
# Repair

_RERUN_FAILED = frozenset(r for r in ResultState if r.is_failure or r.is_canceled)


def repair_selection(graph: JobGraph, results: Mapping[str, ResultState], *,
                     rerun_tasks: Iterable[str] | None = None, rerun_all_failed: bool = False,
                     rerun_dependent_tasks: bool = False) -> set[str]:
    """The tasks a repair plans again (Jobs API runs/repair: rerun_tasks, rerun_all_failed_tasks, rerun_dependent_tasks).

    ``rerun_all_failed``: FAILED, TIMEDOUT, CANCELED, UPSTREAM_FAILED, UPSTREAM_CANCELED (and
    MAXIMUM_CONCURRENT_RUNS_REACHED); or ``rerun_tasks``: those named. Exactly one of the two.
    Downstream tasks that did not succeed are added so the run can complete;
    ``rerun_dependent_tasks`` adds every downstream task. Tasks without a previous result (added
    to the job since) are always selected.
    """
    if (rerun_tasks is None) == (not rerun_all_failed):
        raise ValueError("give exactly one of rerun_tasks and rerun_all_failed_tasks")
    if rerun_tasks is not None:
        base = list(dict.fromkeys(rerun_tasks))
        unknown = [k for k in base if k not in graph.tasks]
        if unknown:
            raise ValueError("rerun_tasks names unknown tasks: " + ", ".join(map(repr, unknown)))
        if not base:
            raise ValueError("rerun_tasks is empty")
    else:
        base = [k for k in graph.tasks if k in results and ResultState(results[k]) in _RERUN_FAILED]
    selected = set(base)
    below = graph.downstream(base) - selected
    if rerun_dependent_tasks:
        selected |= below
    else:
        selected |= {k for k in below if results.get(k) != S.SUCCESS}
    selected |= {k for k in graph.tasks if k not in results}
    return selected


# ---------------------------------------------------------------------------------------------
# run-now `only`


def select_only(graph: JobGraph, only: Iterable[str]) -> set[str]:
    """The tasks run-now's ``only`` selects (Jobs API jobs/run-now `only`): ``key``; ``+key`` adds everything
    upstream of it, ``key+`` everything downstream, ``+key+`` both. Raises ValueError naming an
    unknown key."""
    selected: set[str] = set()
    items = [str(i).strip() for i in only]
    if not items:
        raise ValueError("only is empty; list at least one task_key")
    for item in items:
        up, down = item.startswith("+"), item.endswith("+") and len(item) > 1
        key = item[1 if up else 0: len(item) - (1 if down else 0)]
        if key not in graph.tasks:
            close = [k for k in graph.tasks if k.lower() == key.lower()]
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"only: '{key}' is not a task of this job{hint}; tasks: "
                             + ", ".join(list(graph.tasks)[:20]))
        selected.add(key)
        if up:
            selected |= graph.upstream(key)
        if down:
            selected |= graph.downstream(key)
    return selected


# ---------------------------------------------------------------------------------------------
# Retries


@dataclass(frozen=True)
class RetryPolicy:
    """A task's retry settings (databricks-sdk `jobs.Task.max_retries` and friends). ``max_retries=-1`` retries forever."""

    max_retries: int = 0
    min_retry_interval_millis: int = 0
    retry_on_timeout: bool = False
    retryable: bool = True   # condition tasks are never retried


def retry_delay(policy: RetryPolicy, *, attempt_number: int, result: ResultState, started_ms: int,
                now_ms: int) -> float | None:
    """Seconds to wait before the next attempt, or None when the attempt is final.

    FAILED is retried; TIMEDOUT only with ``retry_on_timeout``; CANCELED, skips and successes never.
    ``attempt_number`` counts from 0; with ``max_retries=n`` attempts 0..n run. The interval is
    measured from the **start** of the failed attempt."""
    if not policy.retryable or policy.max_retries == 0:
        return None
    result = ResultState(result)
    if result is S.TIMEDOUT:
        if not policy.retry_on_timeout:
            return None
    elif result is not S.FAILED:
        return None
    if policy.max_retries >= 0 and attempt_number >= policy.max_retries:
        return None
    due = started_ms + max(0, policy.min_retry_interval_millis or 0)
    return max(0, due - now_ms) / 1000


# ---------------------------------------------------------------------------------------------
# For-each iterations


def iterations_to_reuse(previous: Mapping[int, tuple[Any, ResultState]], inputs: Sequence[Any], *,
                        previous_succeeded: bool) -> set[int]:
    """Indexes of iterations a rerun of a for-each task keeps from its previous task run.

    ``previous``: {index: (input element, result)} of the previous task run's latest iterations.
    A for-each that succeeded and is rerun on purpose reruns every iteration; otherwise an
    iteration is kept when it succeeded with the same input at the same index."""
    if previous_succeeded:
        return set()
    keep = set()
    for index, (element, result) in previous.items():
        if 0 <= index < len(inputs) and ResultState(result) is S.SUCCESS and inputs[index] == element:
            keep.add(index)
    return keep
