"""Pure control-flow decisions: retries, run-now `only`, for-each reuse, inputs and stats (no kernels)."""
from __future__ import annotations

import pytest

from nbjobs.plan import Dependency, JobGraph, PlanTask, RetryPolicy, iterations_to_reuse, retry_delay, select_only
from nbjobs.states import ResultState as S
from nbjobs.tasks.for_each import MAX_ITERATIONS, ForEachInputError, concurrency_of, parse_inputs, stats, summary


def P(key, *deps):
    return PlanTask(key, tuple(Dependency(d) for d in deps))


# -- retries -------------------------------------------------------------------------------------

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


# -- run-now only ----------------------------------------------------------------------------------

GRAPH = JobGraph([P("a"), P("b", "a"), P("c", "b"), P("d", "a"), P("e")])


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


# -- for-each reuse on repair --------------------------------------------------------------------

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


# -- for-each inputs and stats -------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ('["a", "b"]', ["a", "b"]),
    ("[1, 2, 3]", [1, 2, 3]),
    ("['a','b','c']", ["a", "b", "c"]),          # single quotes, as the Databricks docs show
    ('[{"x": 1}]', [{"x": 1}]),
    (["already", "a", "list"], ["already", "a", "list"]),   # a task value keeps its type
    ("[]", []),
])
def test_parse_inputs(value, expected):
    assert parse_inputs(value, "{{tasks.t.values.v}}") == expected


def test_parse_inputs_errors_say_what_was_given_and_the_limit():
    with pytest.raises(ForEachInputError, match=r"'\{\{job.parameters.regions\}\}' resolved to 'north', "
                                                r"which is not a JSON array"):
        parse_inputs("north", "{{job.parameters.regions}}")
    with pytest.raises(ForEachInputError, match=r"'\{\"a\": 1\}' is not a JSON array"):
        parse_inputs('{"a": 1}', '{"a": 1}')
    with pytest.raises(ForEachInputError, match=r"has 5,001 elements; the limit is 5,000 iterations"):
        parse_inputs(list(range(MAX_ITERATIONS + 1)), "{{tasks.t.values.v}}")
    assert len(parse_inputs(list(range(MAX_ITERATIONS)), "x")) == MAX_ITERATIONS


def test_concurrency_default_and_bounds():
    assert (concurrency_of(None), concurrency_of(7), concurrency_of(1000)) == (1, 7, 100)


def test_stats_and_summary():
    rows = [
        dict(life_cycle_state="TERMINATED", result_state="SUCCESS", iteration_index=0, input="a"),
        dict(life_cycle_state="TERMINATED", result_state="FAILED", error="ValueError: bad a", iteration_index=1,
             input="b"),
        dict(life_cycle_state="TERMINATED", result_state="FAILED", error="ValueError: bad a", iteration_index=2,
             input="c"),
        dict(life_cycle_state="RUNNING", result_state=None, iteration_index=3, input="d"),
        dict(life_cycle_state="WAITING_FOR_RETRY", result_state=None, iteration_index=4, input="e"),
        dict(life_cycle_state="PENDING", result_state=None, iteration_index=5, input="f"),
    ]
    out = stats(rows)
    assert out["task_run_stats"] == {"total_iterations": 6, "scheduled_iterations": 1, "active_iterations": 2,
                                     "completed_iterations": 3, "succeeded_iterations": 1, "failed_iterations": 2}
    assert out["error_message_stats"] == [{"error_message": "ValueError: bad a", "count": 2,
                                           "termination_category": "RUN_EXECUTION_ERROR"}]
    assert summary(rows[:3]) == ("2 of 3 iterations did not succeed; iteration 1 (b): ValueError: bad a "
                                 "(and 1 more)")
    assert summary(rows[:1]) is None
    from databricks.sdk.service.jobs import ForEachStats
    assert ForEachStats.from_dict(out).task_run_stats.failed_iterations == 2
