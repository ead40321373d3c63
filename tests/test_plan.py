"""The pure planner: run_if table, graph shapes, branches, disabled tasks, job result, repair."""
from collections import deque

import pytest

import nbjobs.plan as plan_module
from nbjobs.plan import (
    Dependency as D,
    JobGraph,
    PlanTask,
    Planner,
    RetryPolicy,
    Step,
    decide,
    edge_state,
    find_cycle,
    iterations_to_reuse,
    repair_selection,
    retry_delay,
    select_only,
)
from nbjobs.states import ResultState as S, RunIf as R

pytestmark = pytest.mark.pure

RUN = None
UF, UC, EX, DIS = S.UPSTREAM_FAILED, S.UPSTREAM_CANCELED, S.EXCLUDED, S.DISABLED

# ---------------------------------------------------------------------------------------------
# decide(): every run_if x every mix of upstream states

RUN_IFS = [R.ALL_SUCCESS, R.AT_LEAST_ONE_SUCCESS, R.NONE_FAILED, R.ALL_DONE,
           R.AT_LEAST_ONE_FAILED, R.ALL_FAILED]

#  edges                                  ALL_SUCC ≥1 SUCC NONE_FAIL ALL_DONE ≥1 FAIL ALL_FAIL
DECIDE_TABLE = {
    "no dependencies":                 ([], (RUN, RUN, RUN, RUN, RUN, RUN)),
    "success":                         ([S.SUCCESS], (RUN, RUN, RUN, RUN, EX, EX)),
    "success, success":                ([S.SUCCESS, S.SUCCESS], (RUN, RUN, RUN, RUN, EX, EX)),
    "success_with_failures":           ([S.SUCCESS_WITH_FAILURES], (RUN, RUN, RUN, RUN, EX, EX)),
    "failed":                          ([S.FAILED], (UF, UF, UF, RUN, RUN, RUN)),
    "failed, failed":                  ([S.FAILED, S.FAILED], (UF, UF, UF, RUN, RUN, RUN)),
    "success, failed":                 ([S.SUCCESS, S.FAILED], (UF, RUN, UF, RUN, RUN, EX)),
    "timedout":                        ([S.TIMEDOUT], (UF, UF, UF, RUN, RUN, RUN)),
    "success, timedout":               ([S.SUCCESS, S.TIMEDOUT], (UF, RUN, UF, RUN, RUN, EX)),
    "upstream_failed":                 ([S.UPSTREAM_FAILED], (UF, UF, UF, RUN, RUN, RUN)),
    "success, upstream_failed":        ([S.SUCCESS, S.UPSTREAM_FAILED], (UF, RUN, UF, RUN, RUN, EX)),
    "max concurrent runs":             ([S.MAXIMUM_CONCURRENT_RUNS_REACHED], (UF, UF, UF, RUN, RUN, RUN)),
    "canceled":                        ([S.CANCELED], (UC, UC, UC, RUN, EX, EX)),
    "success, canceled":               ([S.SUCCESS, S.CANCELED], (UC, RUN, UC, RUN, EX, EX)),
    "upstream_canceled":               ([S.UPSTREAM_CANCELED], (UC, UC, UC, RUN, EX, EX)),
    "failed, canceled":                ([S.FAILED, S.CANCELED], (UF, UF, UF, RUN, RUN, EX)),
    "canceled, upstream_failed":       ([S.CANCELED, S.UPSTREAM_FAILED], (UF, UF, UF, RUN, RUN, EX)),
    "excluded (all)":                  ([S.EXCLUDED], (EX, EX, EX, EX, EX, EX)),
    "excluded, excluded (all)":        ([S.EXCLUDED, S.EXCLUDED], (EX, EX, EX, EX, EX, EX)),
    # a disabled parent is done but neither succeeded nor failed; a condition it makes impossible
    # marks the task DISABLED too (Databricks "Disabled tasks in Lakeflow Jobs")
    "disabled (all)":                  ([S.DISABLED], (DIS, DIS, DIS, RUN, DIS, DIS)),
    "excluded, disabled":              ([S.EXCLUDED, S.DISABLED], (DIS, EX, EX, RUN, EX, DIS)),
    "success, excluded":               ([S.SUCCESS, S.EXCLUDED], (RUN, RUN, RUN, RUN, EX, EX)),
    "success, disabled":               ([S.SUCCESS, S.DISABLED], (DIS, RUN, RUN, RUN, EX, DIS)),
    "failed, disabled":                ([S.FAILED, S.DISABLED], (UF, UF, UF, RUN, RUN, DIS)),
    # excluded counts as success: "at least one succeeded" holds
    "failed, excluded":                ([S.FAILED, S.EXCLUDED], (UF, RUN, UF, RUN, RUN, EX)),
    "canceled, excluded":              ([S.CANCELED, S.EXCLUDED], (UC, RUN, UC, RUN, EX, EX)),
    "upstream_failed, excluded":       ([S.UPSTREAM_FAILED, S.EXCLUDED], (UF, RUN, UF, RUN, RUN, EX)),
}

DECIDE_CASES = [
    pytest.param(run_if, edges, expected[i], id=f"{name} / {run_if}")
    for name, (edges, expected) in DECIDE_TABLE.items()
    for i, run_if in enumerate(RUN_IFS)
]


@pytest.mark.parametrize("run_if, edges, expected", DECIDE_CASES)
def test_decide(run_if, edges, expected):
    assert decide(run_if, edges) == expected
    assert decide(str(run_if), list(reversed(edges))) == expected  # order and str run_if don't matter


@pytest.mark.parametrize("dep, result, outcome, expected", [
    (D("c", "true"), S.SUCCESS, "true", S.SUCCESS),
    (D("c", "true"), S.SUCCESS, "false", S.EXCLUDED),
    (D("c", "false"), S.SUCCESS, "false", S.SUCCESS),
    (D("c", "false"), S.SUCCESS, "true", S.EXCLUDED),
    (D("c", "true"), S.SUCCESS, True, S.SUCCESS),
    (D("c", "True"), S.SUCCESS, "true", S.SUCCESS),
    (D("c", "true"), S.FAILED, None, S.FAILED),
    (D("c", "true"), S.UPSTREAM_FAILED, None, S.UPSTREAM_FAILED),
    (D("c", "true"), S.EXCLUDED, None, S.EXCLUDED),
    (D("c"), S.SUCCESS, "false", S.SUCCESS),
])
def test_edge_state(dep, result, outcome, expected):
    assert edge_state(dep, result, outcome) == expected


# ---------------------------------------------------------------------------------------------
# Driving a planner


def task(key, *deps, run_if=R.ALL_SUCCESS, disabled=False):
    """deps: "k" or ("k", "true")."""
    return PlanTask(key, tuple(D(*d) if isinstance(d, tuple) else D(d) for d in deps),
                    run_if, disabled)


def simulate(tasks, results=None, outcomes=None, done=None):
    """Run the planner to the end; tasks run SUCCESS unless ``results`` says otherwise."""
    graph = tasks if isinstance(tasks, JobGraph) else JobGraph(tasks)
    results, outcomes = results or {}, outcomes or {}
    planner = Planner(graph, done)
    executed, skipped = [], {}
    queue, seen = deque(), set()  # seen: handed out as ready or skipped

    def take(step: Step):
        for k in step.ready:
            assert k not in seen
            seen.add(k)
            queue.append(k)
        for k, st in step.skipped.items():
            assert k not in seen
            seen.add(k)
            skipped[k] = st

    take(planner.start())
    while queue:
        key = queue.popleft()
        executed.append(key)
        take(planner.finish(key, results.get(key, S.SUCCESS), outcomes.get(key)))
    assert planner.finished
    final = planner.results
    for k in executed:
        assert final[k] == results.get(k, S.SUCCESS)
    for k, st in skipped.items():
        assert final[k] == st
    return final, planner.job_result(), executed


CHAIN = [task("a"), task("b", "a"), task("c", "b")]
DIAMOND = [task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")]
FAN_IN = [task("a"), task("b"), task("c"), task("d", "a", "b", "c")]
FAN_OUT = [task("a"), task("b", "a"), task("c", "a"), task("d", "a")]
OK = S.SUCCESS


@pytest.mark.parametrize("tasks, results, expected, job", [
    # chain
    (CHAIN, {}, dict(a=OK, b=OK, c=OK), S.SUCCESS),
    (CHAIN, dict(a=S.FAILED), dict(a=S.FAILED, b=UF, c=UF), S.FAILED),
    (CHAIN, dict(b=S.FAILED), dict(a=OK, b=S.FAILED, c=UF), S.FAILED),
    (CHAIN, dict(c=S.FAILED), dict(a=OK, b=OK, c=S.FAILED), S.FAILED),
    (CHAIN, dict(b=S.TIMEDOUT), dict(a=OK, b=S.TIMEDOUT, c=UF), S.FAILED),
    (CHAIN, dict(b=S.CANCELED), dict(a=OK, b=S.CANCELED, c=UC), S.CANCELED),
    (CHAIN, dict(c=S.CANCELED), dict(a=OK, b=OK, c=S.CANCELED), S.CANCELED),
    # diamond
    (DIAMOND, {}, dict(a=OK, b=OK, c=OK, d=OK), S.SUCCESS),
    (DIAMOND, dict(a=S.FAILED), dict(a=S.FAILED, b=UF, c=UF, d=UF), S.FAILED),
    (DIAMOND, dict(b=S.FAILED), dict(a=OK, b=S.FAILED, c=OK, d=UF), S.FAILED),
    (DIAMOND, dict(b=S.CANCELED, c=S.FAILED), dict(a=OK, b=S.CANCELED, c=S.FAILED, d=UF), S.FAILED),
    (DIAMOND, dict(b=S.CANCELED), dict(a=OK, b=S.CANCELED, c=OK, d=UC), S.CANCELED),
    (DIAMOND, dict(d=S.FAILED), dict(a=OK, b=OK, c=OK, d=S.FAILED), S.FAILED),
    # fan-in
    (FAN_IN, {}, dict(a=OK, b=OK, c=OK, d=OK), S.SUCCESS),
    (FAN_IN, dict(c=S.FAILED), dict(a=OK, b=OK, c=S.FAILED, d=UF), S.FAILED),
    (FAN_IN, dict(a=S.FAILED, b=S.FAILED, c=S.FAILED), dict(a=S.FAILED, b=S.FAILED, c=S.FAILED, d=UF),
     S.FAILED),
    ([*FAN_IN[:3], task("d", "a", "b", "c", run_if=R.ALL_DONE)], dict(c=S.FAILED),
     dict(a=OK, b=OK, c=S.FAILED, d=OK), S.SUCCESS_WITH_FAILURES),
    ([*FAN_IN[:3], task("d", "a", "b", "c", run_if=R.AT_LEAST_ONE_SUCCESS)], dict(a=S.FAILED),
     dict(a=S.FAILED, b=OK, c=OK, d=OK), S.SUCCESS_WITH_FAILURES),
    ([*FAN_IN[:3], task("d", "a", "b", "c", run_if=R.ALL_FAILED)], dict(a=S.FAILED),
     dict(a=S.FAILED, b=OK, c=OK, d=EX), S.SUCCESS_WITH_FAILURES),
    # fan-out: a failed leaf fails the job even if the other leaves succeed
    (FAN_OUT, {}, dict(a=OK, b=OK, c=OK, d=OK), S.SUCCESS),
    (FAN_OUT, dict(c=S.FAILED), dict(a=OK, b=OK, c=S.FAILED, d=OK), S.FAILED),
    (FAN_OUT, dict(a=S.FAILED), dict(a=S.FAILED, b=UF, c=UF, d=UF), S.FAILED),
    (FAN_OUT, dict(a=S.CANCELED), dict(a=S.CANCELED, b=UC, c=UC, d=UC), S.CANCELED),
], ids=lambda v: None)
def test_graph_shapes(tasks, results, expected, job):
    final, job_result, _ = simulate(tasks, results)
    assert final == expected
    assert job_result == job


def test_independent_tasks_start_together_and_order_is_declaration_order():
    graph = JobGraph([task("z"), task("a"), task("m", "z", "a"), task("b")])
    planner = Planner(graph)
    assert planner.start() == Step(["z", "a", "b"], {})
    assert planner.finish("a", S.SUCCESS) == Step([], {})
    assert planner.running == frozenset({"z", "b"})
    assert planner.finish("z", S.SUCCESS) == Step(["m"], {})
    assert not planner.finished


# ---------------------------------------------------------------------------------------------
# Condition branches and exclusion


def branches(join_run_if=R.ALL_SUCCESS):
    return [
        task("cond"),
        task("t1", ("cond", "true")), task("t2", "t1"),
        task("f1", ("cond", "false")), task("f2", "f1"), task("f3", "f2"),
        task("join", "t2", "f3", run_if=join_run_if),
    ]


@pytest.mark.parametrize("join_run_if", [R.ALL_SUCCESS, R.NONE_FAILED, R.ALL_DONE,
                                         R.AT_LEAST_ONE_SUCCESS])
@pytest.mark.parametrize("outcome", ["true", "false", True, False])
def test_branch_taken_and_excluded_branch(outcome, join_run_if):
    final, job, executed = simulate(branches(join_run_if), outcomes={"cond": outcome})
    taken = {"t1", "t2"} if str(outcome).lower() == "true" else {"f1", "f2", "f3"}
    other = {"t1", "t2", "f1", "f2", "f3"} - taken
    assert all(final[k] == OK for k in taken)
    assert all(final[k] == EX for k in other)  # exclusion flows down the branch
    assert final["join"] == OK and "join" in executed
    assert job == S.SUCCESS  # excluded leaves/tasks count as success


@pytest.mark.parametrize("join_run_if, join_state, job", [
    (R.ALL_SUCCESS, UF, S.FAILED),
    (R.NONE_FAILED, UF, S.FAILED),
    (R.AT_LEAST_ONE_SUCCESS, RUN, S.SUCCESS_WITH_FAILURES),  # the excluded branch counts as success
    (R.ALL_DONE, RUN, S.SUCCESS_WITH_FAILURES),
    (R.AT_LEAST_ONE_FAILED, RUN, S.SUCCESS_WITH_FAILURES),
    (R.ALL_FAILED, EX, S.SUCCESS_WITH_FAILURES),
])
def test_join_after_a_failed_branch(join_run_if, join_state, job):
    final, job_result, executed = simulate(branches(join_run_if), results={"t1": S.FAILED},
                                           outcomes={"cond": "true"})
    assert final["t2"] == UF
    assert final["f3"] == EX
    assert final["join"] == (OK if join_state is RUN else join_state)
    assert ("join" in executed) == (join_state is RUN)
    assert job_result == job


def test_join_only_on_the_excluded_branch_is_excluded_whatever_run_if():
    for run_if in RUN_IFS:
        tasks = [task("cond"), task("f1", ("cond", "false")), task("t1", ("cond", "true")),
                 task("after", "f1", run_if=run_if)]
        final, job, _ = simulate(tasks, outcomes={"cond": "true"})
        assert final == dict(cond=OK, f1=EX, t1=OK, after=EX), run_if
        assert job == S.SUCCESS


def test_failed_condition_fails_both_branches():
    final, job, executed = simulate(branches(R.ALL_DONE), results={"cond": S.FAILED})
    assert final == dict(cond=S.FAILED, t1=UF, t2=UF, f1=UF, f2=UF, f3=UF, join=OK)
    assert job == S.SUCCESS_WITH_FAILURES


def test_condition_inside_an_excluded_branch_excludes_both_of_its_branches():
    tasks = [task("c1"), task("c2", ("c1", "true")), task("x", ("c2", "true")),
             task("y", ("c2", "false"))]
    final, _, _ = simulate(tasks, outcomes={"c1": "false"})
    assert final == dict(c1=OK, c2=EX, x=EX, y=EX)


def test_true_and_false_edges_from_the_same_condition():
    tasks = [task("cond"), task("either", ("cond", "true"), ("cond", "false"),
                                run_if=R.AT_LEAST_ONE_SUCCESS),
             task("both", ("cond", "true"), ("cond", "false"))]
    final, _, _ = simulate(tasks, outcomes={"cond": "false"})
    # one edge SUCCESS, one EXCLUDED: excluded counts as success
    assert final == dict(cond=OK, either=OK, both=OK)


# ---------------------------------------------------------------------------------------------
# Disabled tasks


def test_disabled_root_is_skipped_and_its_only_dependent_is_disabled_too():
    planner = Planner(JobGraph([task("a", disabled=True), task("b", "a"), task("c")]))
    assert planner.start() == Step(["c"], {"a": DIS, "b": DIS})
    planner.finish("c", S.SUCCESS)
    assert planner.job_result() == S.SUCCESS


@pytest.mark.parametrize("tasks, expected", [
    # a disabled parent does not satisfy ALL_SUCCESS: the dependent is disabled for this run
    ([task("a", disabled=True), task("c"), task("b", "a", "c")], dict(a=DIS, c=OK, b=DIS)),
    # ... but AT_LEAST_ONE_SUCCESS runs on the other parent's success
    ([task("a", disabled=True), task("c"), task("b", "a", "c", run_if=R.AT_LEAST_ONE_SUCCESS)],
     dict(a=DIS, c=OK, b=OK)),
    # ALL_DONE: a disabled parent counts as done
    ([task("a", disabled=True), task("b", "a", run_if=R.ALL_DONE)], dict(a=DIS, b=OK)),
    # a disabled task in the middle of a chain: it does not wait for (or fail with) its upstream
    ([task("a"), task("b", "a", disabled=True), task("c", "b")], dict(a=OK, b=DIS, c=DIS)),
    ([task("a", disabled=True), task("b", "a", disabled=True)], dict(a=DIS, b=DIS)),
])
def test_disabled_tasks(tasks, expected):
    final, job, executed = simulate(tasks)
    assert final == expected
    assert not any(k in executed for k, st in expected.items() if st in (DIS, EX))
    assert job == S.SUCCESS


def test_disabled_task_below_a_failure_stays_disabled():
    final, job, _ = simulate([task("a"), task("b", "a", disabled=True), task("c", "a")],
                             results={"a": S.FAILED})
    assert final == dict(a=S.FAILED, b=DIS, c=UF)
    assert job == S.FAILED


# ---------------------------------------------------------------------------------------------
# Leaf-based job result: the restaurant job

RESTAURANT = [
    task("ingest"), task("silver", "ingest"), task("gold", "silver"), task("validate", "gold"),
    task("check", "validate"),
    task("publish", ("check", "true")), task("quarantine", ("check", "false")),
    task("cleanup", "publish", "quarantine", run_if=R.ALL_DONE),
    task("alert", "ingest", "silver", "gold", "validate", run_if=R.AT_LEAST_ONE_FAILED),
]


def restaurant_states(**over):
    base = dict(ingest=OK, silver=OK, gold=OK, validate=OK, check=OK, publish=OK, quarantine=EX,
                cleanup=OK, alert=EX)
    base.update(over)
    return base


@pytest.mark.parametrize("results, outcome, expected, job", [
    ({}, "true", restaurant_states(), S.SUCCESS),
    ({}, "false", restaurant_states(publish=EX, quarantine=OK), S.SUCCESS),
    (dict(gold=S.FAILED), None,
     restaurant_states(gold=S.FAILED, validate=UF, check=UF, publish=UF, quarantine=UF, alert=OK),
     S.SUCCESS_WITH_FAILURES),
    (dict(ingest=S.FAILED, alert=S.FAILED), None,
     restaurant_states(ingest=S.FAILED, silver=UF, gold=UF, validate=UF, check=UF, publish=UF,
                       quarantine=UF, alert=S.FAILED),
     S.FAILED),
    (dict(quarantine=S.FAILED), "false", restaurant_states(publish=EX, quarantine=S.FAILED),
     S.SUCCESS_WITH_FAILURES),
    (dict(publish=S.FAILED, cleanup=S.FAILED), "true",
     restaurant_states(publish=S.FAILED, cleanup=S.FAILED), S.FAILED),
    (dict(check=S.FAILED), None,
     restaurant_states(check=S.FAILED, publish=UF, quarantine=UF), S.SUCCESS_WITH_FAILURES),
    # a cancel is not a failure for AT_LEAST_ONE_FAILED
    (dict(validate=S.CANCELED), None,
     restaurant_states(validate=S.CANCELED, check=UC, publish=UC, quarantine=UC),
     S.SUCCESS_WITH_FAILURES),
    (dict(cleanup=S.CANCELED), "true", restaurant_states(cleanup=S.CANCELED), S.CANCELED),
])
def test_restaurant(results, outcome, expected, job):
    final, job_result, executed = simulate(RESTAURANT, results, {"check": outcome})
    assert final == expected
    assert job_result == job
    assert executed.index("ingest") == 0


def test_leaves():
    assert JobGraph(RESTAURANT).leaves == frozenset({"cleanup", "alert"})


def test_only_excluded_or_disabled_tasks_is_success():
    graph = JobGraph([task("a", disabled=True), task("b", disabled=True)])
    planner = Planner(graph)
    planner.start()
    assert planner.finished and planner.job_result() == S.SUCCESS


# ---------------------------------------------------------------------------------------------
# Planner errors and cancel


def test_planner_errors():
    planner = Planner(JobGraph(CHAIN))
    with pytest.raises(ValueError, match="call start"):
        planner.finish("a", S.SUCCESS)
    planner.start()
    with pytest.raises(ValueError, match="already started"):
        planner.start()
    with pytest.raises(ValueError, match="unknown task 'zz'"):
        planner.finish("zz", S.SUCCESS)
    planner.finish("a", S.SUCCESS)
    with pytest.raises(ValueError, match=r"task 'a' has already finished \(SUCCESS\)"):
        planner.finish("a", S.FAILED)
    with pytest.raises(ValueError, match="unfinished tasks: b, c"):
        planner.job_result()


def test_cancel_marks_tasks_not_started():
    planner = Planner(JobGraph(DIAMOND + [task("e")]))
    assert planner.start().ready == ["a", "e"]
    assert planner.finish("a", S.SUCCESS).ready == ["b", "c"]
    assert planner.cancel() == Step([], {"d": S.CANCELED})
    assert planner.running == frozenset({"b", "c", "e"})
    assert planner.finish("b", S.CANCELED) == Step()
    planner.finish("c", S.SUCCESS)
    planner.finish("e", S.CANCELED)
    assert planner.finished
    assert planner.job_result() == S.CANCELED


def test_finish_accepts_strings_and_records_outcomes():
    planner = Planner(JobGraph([task("c"), task("x", ("c", "true"))]))
    planner.start()
    assert planner.finish("c", "SUCCESS", True) == Step(["x"], {})
    assert planner.outcomes == {"c": "true"}
    planner.finish("x", "FAILED")
    assert planner.results == {"c": S.SUCCESS, "x": S.FAILED}
    assert planner.job_result() == S.FAILED


# ---------------------------------------------------------------------------------------------
# Repair


@pytest.mark.parametrize("results, kwargs, expected", [
    (dict(a=OK, b=S.FAILED, c=UF), dict(rerun_all_failed=True), {"b", "c"}),
    (dict(a=S.TIMEDOUT, b=UF, c=UF), dict(rerun_all_failed=True), {"a", "b", "c"}),
    (dict(a=OK, b=S.CANCELED, c=UC), dict(rerun_all_failed=True), {"b", "c"}),
    (dict(a=OK, b=OK, c=OK), dict(rerun_all_failed=True), set()),
    (dict(a=OK, b=OK, c=OK), dict(rerun_tasks=["a"]), {"a"}),
    (dict(a=OK, b=OK, c=OK), dict(rerun_tasks=["a"], rerun_dependent_tasks=True), {"a", "b", "c"}),
    (dict(a=OK, b=OK, c=EX), dict(rerun_tasks=["a"]), {"a", "c"}),
    (dict(a=OK, b=S.FAILED, c=UF), dict(rerun_tasks=["c"]), {"c"}),
    (dict(a=OK, b=OK), dict(rerun_tasks=["b"]), {"b", "c"}),  # c never ran (added later)
    (dict(a=OK, b=S.FAILED, c=UF), dict(rerun_all_failed=True, rerun_dependent_tasks=True), {"b", "c"}),
])
def test_repair_selection_chain(results, kwargs, expected):
    assert repair_selection(JobGraph(CHAIN), results, **kwargs) == expected


def test_repair_selection_restaurant():
    graph = JobGraph(RESTAURANT)
    failed = restaurant_states(gold=S.FAILED, validate=UF, check=UF, publish=UF, quarantine=UF,
                               alert=OK)
    assert repair_selection(graph, failed, rerun_all_failed=True) == {
        "gold", "validate", "check", "publish", "quarantine"}
    # cleanup and alert succeeded: pulled in only on request
    assert repair_selection(graph, failed, rerun_all_failed=True, rerun_dependent_tasks=True) == {
        "gold", "validate", "check", "publish", "quarantine", "cleanup", "alert"}
    ok = restaurant_states()
    # the excluded branch is pulled in: the condition may go the other way this time
    assert repair_selection(graph, ok, rerun_tasks=["check"]) == {"check", "quarantine"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "exactly one of rerun_tasks and rerun_all_failed_tasks"),
    (dict(rerun_tasks=["a"], rerun_all_failed=True), "exactly one of"),
    (dict(rerun_tasks=["a", "nope", "zz"]), "rerun_tasks names unknown tasks: 'nope', 'zz'"),
    (dict(rerun_tasks=[]), "rerun_tasks is empty"),
])
def test_repair_selection_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        repair_selection(JobGraph(CHAIN), dict(a=OK, b=OK, c=OK), **kwargs)


def repair(tasks, results, outcomes=None, rerun_results=None, rerun_outcomes=None, **kwargs):
    """Select, build ``done`` as documented in nbjobs.plan, and run the repair to the end."""
    graph = JobGraph(tasks)
    outcomes = outcomes or {}
    selection = repair_selection(graph, results, **kwargs)
    done = {k: (results[k], outcomes.get(k)) for k in graph.tasks if k not in selection}
    final, job, executed = simulate(graph, rerun_results, rerun_outcomes, done=done)
    return selection, final, job, executed


def test_repair_reruns_failed_and_their_dependents():
    selection, final, job, executed = repair(CHAIN, dict(a=OK, b=S.FAILED, c=UF),
                                             rerun_all_failed=True)
    assert executed == ["b", "c"]
    assert final == dict(a=OK, b=OK, c=OK) and job == S.SUCCESS


def test_repair_that_fails_again():
    _, final, job, executed = repair(DIAMOND, dict(a=OK, b=S.FAILED, c=OK, d=UF),
                                     rerun_results={"b": S.FAILED}, rerun_all_failed=True)
    assert executed == ["b"]
    assert final == dict(a=OK, b=S.FAILED, c=OK, d=UF) and job == S.FAILED


def test_repair_of_a_task_whose_upstream_still_failed_is_skipped_again():
    _, final, _, executed = repair(CHAIN, dict(a=OK, b=S.FAILED, c=UF), rerun_tasks=["c"])
    assert executed == []
    assert final["c"] == UF


def test_repair_keeps_condition_outcomes():
    prev = restaurant_states(publish=EX, quarantine=S.FAILED)
    selection, final, job, executed = repair(RESTAURANT, prev, outcomes={"check": "false"},
                                             rerun_all_failed=True)
    assert selection == {"quarantine"}
    assert executed == ["quarantine"]
    assert final == restaurant_states(publish=EX, quarantine=OK) and job == S.SUCCESS


def test_repair_rerunning_the_condition_can_flip_the_branch():
    prev = restaurant_states(publish=EX, quarantine=OK)
    _, final, job, executed = repair(RESTAURANT, prev, outcomes={"check": "false"},
                                     rerun_outcomes={"check": "true"}, rerun_tasks=["check"])
    assert executed == ["check", "publish"]  # publish (was excluded) was pulled in and now runs
    assert final["publish"] == OK and final["quarantine"] == OK  # quarantine keeps its result
    assert job == S.SUCCESS


def test_done_tasks_outside_the_graph_are_ignored():
    planner = Planner(JobGraph([task("a")]), done={"gone": (S.FAILED, None)})
    assert planner.start() == Step(["a"], {})
    planner.finish("a", S.SUCCESS)
    assert planner.results == {"a": S.SUCCESS} and planner.job_result() == S.SUCCESS


# ---------------------------------------------------------------------------------------------
# Graph


def test_graph_queries():
    graph = JobGraph(RESTAURANT)
    assert graph.dependents("ingest") == ("silver", "alert")
    assert graph.dependents("cleanup") == ()
    assert graph.upstream("publish") == frozenset({"ingest", "silver", "gold", "validate", "check"})
    assert graph.upstream("ingest") == frozenset()
    assert graph.downstream("validate") == frozenset({"check", "publish", "quarantine", "cleanup",
                                                      "alert"})
    assert graph.downstream(["publish", "quarantine"]) == frozenset({"cleanup"})
    order = graph.topological_order()
    assert sorted(order) == sorted(graph.tasks)
    for t in RESTAURANT:
        for d in t.depends_on:
            assert order.index(d.task_key) < order.index(t.task_key)
    assert len(graph) == 9 and "gold" in graph and "nope" not in graph


def test_duplicate_edges_are_counted_once_per_edge():
    graph = JobGraph([task("a"), task("b", "a", "a")])
    assert graph.dependents("a") == ("b",)
    final, _, _ = simulate(graph)
    assert final == dict(a=OK, b=OK)


@pytest.mark.parametrize("deps, cycle", [
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
    ({"a": ["a"]}, ["a", "a"]),
    ({"x": [], "a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
    ({"a": ["b", "c"], "b": ["c"], "c": []}, None),
    ({"a": ["missing"]}, None),
    ({}, None),
])
def test_find_cycle(deps, cycle):
    assert find_cycle(deps) == cycle


def test_cycle_message():
    with pytest.raises(ValueError, match=r"^dependency cycle: a -> b -> a$"):
        JobGraph([task("a", "b"), task("b", "a"), task("c")])


def test_graph_errors():
    with pytest.raises(ValueError, match="task 'b' depends on unknown task 'x'"):
        JobGraph([task("a"), task("b", "x")])
    with pytest.raises(ValueError, match="duplicate task_key 'a'"):
        JobGraph([task("a"), task("a")])


# ---------------------------------------------------------------------------------------------
# 10,000 tasks: linear work (each task decided exactly once, no recursion)

N = 10_000


@pytest.fixture
def decide_calls(monkeypatch):
    calls = []
    real = plan_module.decide

    def counting(run_if, edges):
        calls.append(len(edges))
        return real(run_if, edges)

    monkeypatch.setattr(plan_module, "decide", counting)
    return calls


def test_ten_thousand_task_chain(decide_calls):
    tasks = [task("t0")] + [task(f"t{i}", f"t{i - 1}") for i in range(1, N)]
    graph = JobGraph(tasks)
    assert graph.topological_order()[-1] == f"t{N - 1}"
    assert len(graph.upstream(f"t{N - 1}")) == N - 1
    final, job, executed = simulate(graph)
    assert len(executed) == N and executed[-1] == f"t{N - 1}"
    assert job == S.SUCCESS
    assert len(decide_calls) == N  # each task decided once
    assert sum(decide_calls) == N - 1  # each edge looked at once


def test_ten_thousand_task_chain_failing_at_the_top_cascades(decide_calls):
    tasks = [task("t0")] + [task(f"t{i}", f"t{i - 1}") for i in range(1, N)]
    planner = Planner(JobGraph(tasks))
    assert planner.start().ready == ["t0"]
    step = planner.finish("t0", S.FAILED)
    assert step.ready == [] and len(step.skipped) == N - 1
    assert set(step.skipped.values()) == {UF}
    assert planner.finished and planner.job_result() == S.FAILED
    assert len(decide_calls) == N and sum(decide_calls) == N - 1


def test_ten_thousand_task_fan_out_fan_in(decide_calls):
    mids = [f"m{i}" for i in range(N)]
    tasks = [task("root")] + [task(m, "root") for m in mids] + [task("sink", *mids, run_if=R.ALL_DONE)]
    final, job, executed = simulate(tasks, results={"m4242": S.FAILED})
    assert len(executed) == N + 2 and executed[-1] == "sink"
    assert final["m4242"] == S.FAILED and final["sink"] == OK
    assert job == S.SUCCESS_WITH_FAILURES
    assert len(decide_calls) == N + 2
    assert sum(decide_calls) == 2 * N  # root→mids and mids→sink, once each


def test_ten_thousand_task_cycle_is_found_without_recursion():
    deps = {f"t{i}": [f"t{(i + 1) % N}"] for i in range(N)}
    cycle = find_cycle(deps)
    assert cycle[0] == cycle[-1] == "t0" and len(cycle) == N + 1


# ---------------------------------------------------------------------------------------------
# retries, run-now `only`, for-each iterations reused by a repair

def P(key, *deps):
    return PlanTask(key, tuple(D(d) for d in deps))


GRAPH = JobGraph([P("a"), P("b", "a"), P("c", "b"), P("d", "a"), P("e")])


@pytest.mark.parametrize("policy, attempt, result, started, now, expected", [
    (RetryPolicy(), 0, S.FAILED, 0, 0, None),                                   # max_retries 0: never
    (RetryPolicy(max_retries=2), 0, S.FAILED, 0, 0, 0.0),                       # retry at once
    (RetryPolicy(max_retries=2), 1, S.FAILED, 0, 0, 0.0),
    (RetryPolicy(max_retries=2), 2, S.FAILED, 0, 0, None),                      # attempts 0, 1, 2 ran
    (RetryPolicy(max_retries=-1), 500, S.FAILED, 0, 0, 0.0),                    # forever
    (RetryPolicy(max_retries=3), 0, S.SUCCESS, 0, 0, None),
    (RetryPolicy(max_retries=3), 0, S.CANCELED, 0, 0, None),                    # a cancel is final
    (RetryPolicy(max_retries=3), 0, S.UPSTREAM_FAILED, 0, 0, None),
    (RetryPolicy(max_retries=3), 0, S.TIMEDOUT, 0, 0, None),                    # retry_on_timeout off
    (RetryPolicy(max_retries=3, retry_on_timeout=True), 0, S.TIMEDOUT, 0, 0, 0.0),
    (RetryPolicy(max_retries=3, retryable=False), 0, S.FAILED, 0, 0, None),     # condition tasks
    # the interval counts from the START of the failed attempt
    (RetryPolicy(max_retries=1, min_retry_interval_millis=5000), 0, S.FAILED, 10_000, 12_000, 3.0),
    (RetryPolicy(max_retries=1, min_retry_interval_millis=5000), 0, S.FAILED, 10_000, 16_000, 0.0),
])
def test_retry_delay(policy, attempt, result, started, now, expected):
    assert retry_delay(policy, attempt_number=attempt, result=result, started_ms=started, now_ms=now) == expected


@pytest.mark.parametrize("only, expected", [
    (["b"], {"b"}),
    (["+b"], {"a", "b"}),
    (["b+"], {"b", "c"}),
    (["+b+"], {"a", "b", "c"}),
    (["a+", "e"], {"a", "b", "c", "d", "e"}),
    ([" c ", "d"], {"c", "d"}),
])
def test_select_only(only, expected):
    assert select_only(GRAPH, only) == expected


def test_select_only_errors_name_the_task():
    with pytest.raises(ValueError, match=r"only: 'B' is not a task of this job \(did you mean 'b'\?\)"):
        select_only(GRAPH, ["B"])
    with pytest.raises(ValueError, match="only is empty"):
        select_only(GRAPH, [])


@pytest.mark.parametrize("previous, inputs, succeeded, expected", [
    ({0: ("a", S.SUCCESS), 1: ("b", S.FAILED), 2: ("c", S.SUCCESS)}, ["a", "b", "c"], False, {0, 2}),
    ({0: ("a", S.SUCCESS), 1: ("b", S.FAILED)}, ["a", "b"], True, set()),          # rerun on purpose: all
    ({0: ("a", S.SUCCESS), 1: ("b", S.SUCCESS)}, ["x", "b"], False, {1}),           # input changed at 0
    ({0: ("a", S.SUCCESS), 5: ("z", S.SUCCESS)}, ["a"], False, {0}),                # fewer inputs now
    ({0: ({"k": 1}, S.SUCCESS), 1: ({"k": 2}, S.CANCELED)}, [{"k": 1}, {"k": 2}], False, {0}),
    ({0: ("a", S.TIMEDOUT)}, ["a"], False, set()),
])
def test_iterations_to_reuse(previous, inputs, succeeded, expected):
    assert iterations_to_reuse(previous, inputs, previous_succeeded=succeeded) == expected
