"""Dynamic value references: parsing, definition-time problems, run-time resolution."""
from datetime import datetime, timedelta, timezone

import pytest

from nbjobs.refs import (
    MISSING,
    RefContext,
    ReferenceResolutionError,
    TaskRefState,
    find_references,
    is_reference_only,
    malformed_references,
    reference_problems,
    render_value,
    resolve,
    resolve_all,
    value_of,
)

pytestmark = pytest.mark.pure

UTC = timezone.utc
START = datetime(2026, 11, 22, 11, 5, 0, 123456, tzinfo=UTC)  # a Sunday
TRIGGER = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)            # a Monday


def make_ctx(**over) -> RefContext:
    base = dict(
        job_id=42, job_name="restaurant", run_id=1001, repair_count=2, start_time=START,
        trigger_type="PERIODIC", trigger_time=TRIGGER, file_arrival_location="/data/in",
        job_parameters={"env": "dev", "param$@": "odd", "tables": '["a","b"]'},
        task_key="report", task_run_id=2002, execution_count=3, notebook_path="/w/report.ipynb",
        tasks={
            "validate": TaskRefState(run_id=2001, result_state="SUCCESS", execution_count=1,
                                     notebook_path="/w/validate.ipynb",
                                     values={"score": 0.93, "ok": True, "rows": [1, 2, 3],
                                             "meta": {"a": 1, "b": "x"}, "none": None,
                                             "name": "gold", "count": 12}),
            "gold": TaskRefState(run_id=1999, result_state="FAILED", error_code="RunExecutionError",
                                 execution_count=2),
            "my-task": TaskRefState(run_id=7, result_state="SUCCESS", values={"k$": "v"}),
            "script": TaskRefState(run_id=8, result_state="SUCCESS"),
        },
        input={"a": {"b": "deep"}, "n": 5, "items": ["x", "y"]},
        workspace_id="123", workspace_url="http://127.0.0.1:8888",
        backfill_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    base.update(over)
    return RefContext(**base)


CTX = make_ctx()

# ---------------------------------------------------------------------------------------------
# Every reference of the table


@pytest.mark.parametrize("text, expected", [
    ("{{job.id}}", "42"),
    ("{{job.name}}", "restaurant"),
    ("{{job.run_id}}", "1001"),
    ("{{job.repair_count}}", "2"),
    ("{{job.start_time.iso_weekday}}", "7"),
    ("{{job.start_time.is_weekday}}", "false"),
    ("{{job.start_time.iso_date}}", "2026-11-22"),
    ("{{job.start_time.iso_datetime}}", "2026-11-22T11:05:00.123Z"),
    ("{{job.start_time.year}}", "2026"),
    ("{{job.start_time.month}}", "11"),
    ("{{job.start_time.day}}", "22"),
    ("{{job.start_time.hour}}", "11"),
    ("{{job.start_time.minute}}", "5"),
    ("{{job.start_time.second}}", "0"),
    ("{{job.start_time.timestamp_ms}}", "1795345500123"),
    ("{{job.parameters.env}}", "dev"),
    ("{{job.parameters.`param$@`}}", "odd"),
    ("{{job.parameters.tables}}", '["a","b"]'),
    ("{{job.trigger.type}}", "periodic"),
    ("{{job.trigger.time.iso_weekday}}", "1"),
    ("{{job.trigger.time.is_weekday}}", "true"),
    ("{{job.trigger.time.iso_datetime}}", "2026-11-23T08:00:00.000Z"),
    ("{{job.trigger.time.timestamp_ms}}", "1795420800000"),
    ("{{job.trigger.file_arrival.location}}", "/data/in"),
    ("{{task.name}}", "report"),
    ("{{task.run_id}}", "2002"),
    ("{{task.execution_count}}", "3"),
    ("{{task.notebook_path}}", "/w/report.ipynb"),
    ("{{tasks.validate.run_id}}", "2001"),
    ("{{tasks.validate.result_state}}", "success"),
    ("{{tasks.gold.result_state}}", "failed"),
    ("{{tasks.validate.error_code}}", ""),
    ("{{tasks.gold.error_code}}", "RunExecutionError"),
    ("{{tasks.validate.execution_count}}", "1"),
    ("{{tasks.gold.execution_count}}", "2"),
    ("{{tasks.validate.notebook_path}}", "/w/validate.ipynb"),
    ("{{tasks.validate.values.score}}", "0.93"),
    ("{{tasks.validate.values.count}}", "12"),
    ("{{tasks.validate.values.ok}}", "true"),
    ("{{tasks.validate.values.rows}}", "[1,2,3]"),
    ("{{tasks.validate.values.meta}}", '{"a":1,"b":"x"}'),
    ("{{tasks.validate.values.none}}", "null"),
    ("{{tasks.validate.values.name}}", "gold"),
    ("{{tasks.`my-task`.values.`k$`}}", "v"),
    ("{{workspace.id}}", "123"),
    ("{{workspace.url}}", "http://127.0.0.1:8888"),
    ("{{input}}", '{"a":{"b":"deep"},"n":5,"items":["x","y"]}'),
    ("{{input.n}}", "5"),
    ("{{input.a}}", '{"b":"deep"}'),
    ("{{input.a.b}}", "deep"),
    ("{{input.items.1}}", "y"),
    ("{{backfill.iso_date}}", "2026-01-02"),
    ("{{backfill.iso_datetime}}", "2026-01-02T03:04:05.000Z"),
    # deprecated aliases
    ("{{job_id}}", "42"),
    ("{{run_id}}", "2002"),
    ("{{parent_run_id}}", "1001"),
    ("{{task_key}}", "report"),
    ("{{start_date}}", "2026-11-22"),
    ("{{start_time}}", "1795345500123"),
    ("{{task_retry_count}}", "2"),
    # spacing and splicing
    ("{{ job.id }}", "42"),
    ("{{  job.parameters.env\t}}", "dev"),
    ("job_{{job.run_id}}", "job_1001"),
    ("{{job.name}}/{{job.start_time.year}}/{{task.name}}.csv", "restaurant/2026/report.csv"),
    ("{{{job.id}}}", "{42}"),
    ("no references", "no references"),
    ("", ""),
])
def test_resolve_table(text, expected):
    assert resolve(text, CTX) == expected


@pytest.mark.parametrize("trigger", ["one_time", "PERIODIC", "run_job_task", "file_arrival",
                                     "continuous", "table", "retry"])
def test_trigger_type_is_lower_case(trigger):
    assert resolve("{{job.trigger.type}}", make_ctx(trigger_type=trigger)) == trigger.lower()


def test_times_are_utc_even_from_another_zone():
    paris = START.astimezone(timezone(timedelta(hours=1)))
    ctx = make_ctx(start_time=paris)
    assert resolve("{{job.start_time.hour}} {{job.start_time.iso_datetime}}", ctx) == \
        "11 2026-11-22T11:05:00.123Z"


def test_trigger_time_falls_back_to_start_time():
    assert resolve("{{job.trigger.time.iso_date}}", make_ctx(trigger_time=None)) == "2026-11-22"


def test_missing_file_arrival_location_and_job_id_render_empty():
    ctx = make_ctx(file_arrival_location=None, job_id=None)
    assert resolve("[{{job.trigger.file_arrival.location}}|{{job.id}}]", ctx) == "[|]"


def test_first_execution_has_retry_count_zero():
    assert resolve("{{task_retry_count}}/{{task.execution_count}}", make_ctx(execution_count=1)) == "0/1"


# ---------------------------------------------------------------------------------------------
# Literal text: unknown namespaces and syntax errors


@pytest.mark.parametrize("text", [
    "{{my.value}}",
    "{{secrets.scope.key}}",
    "{{JOB.ID}}",
    "{{job_id.x}}",
    "{{oops",
    "{{my.value}",
    "{{job.id",
    "{job.id}",
    "{{ }}",
    "{{job..id}}",
    "{{.job.id}}",
    "{{job.id + 1}}",
    "{{job.id()}}",
    "{{tasks.my-task.values.x}}",
    "{{job.parameters.``}}",
    "}}{{",
])
def test_left_as_literal_text(text):
    assert resolve(text, CTX) == text
    assert reference_problems(text, job_parameters=[], task_keys=[]) == []


def test_literal_text_next_to_references():
    assert resolve("{{my.value}} and {{job.id}} and {{oops", CTX) == "{{my.value}} and 42 and {{oops"


def test_find_references():
    refs = find_references("a {{ tasks.`my-task`.values.`k$` }} b {{my.value}} {{job_id}}")
    assert [r.segments for r in refs] == [("tasks", "my-task", "values", "k$"), ("my", "value"),
                                          ("job_id",)]
    assert [r.known for r in refs] == [True, False, True]
    first = refs[0]
    assert first.raw == "{{ tasks.`my-task`.values.`k$` }}"
    assert "a {{ tasks.`my-task`.values.`k$` }} b"[first.start:first.end] == first.raw
    assert first.namespace == "tasks"


@pytest.mark.parametrize("text, expected", [
    ("{{job.id}}", True),
    ("  {{ tasks.a.values.k }} ", True),
    ("{{input}}", True),
    ("x{{job.id}}", False),
    ("{{job.id}}{{job.id}}", False),
    ("{{my.value}}", False),
    ("{{oops", False),
    ("", False),
])
def test_is_reference_only(text, expected):
    assert is_reference_only(text) is expected


# ---------------------------------------------------------------------------------------------
# Definition time

PARAMS = ["env", "tables", "param$@"]
KEYS = ["ingest", "validate", "gold", "my-task"]


@pytest.mark.parametrize("text, message", [
    ("{{job.naem}}",
     "{{job.naem}} is not a valid reference: job has id, name, run_id, repair_count, "
     "start_time.<arg>, parameters.<name>, trigger.type, trigger.time.<arg>, "
     "trigger.file_arrival.location"),
    ("{{job.notebook_url}}",
     "{{job.notebook_url}} is not a valid reference: job has id, name, run_id, repair_count, "
     "start_time.<arg>, parameters.<name>, trigger.type, trigger.time.<arg>, "
     "trigger.file_arrival.location"),
    ("{{ job.start_time.weekday }}",
     "{{ job.start_time.weekday }} is not a valid reference: job.start_time.<arg>: time arguments "
     "are iso_weekday, is_weekday, iso_date, iso_datetime, year, month, day, hour, minute, second, "
     "timestamp_ms"),
    ("{{job.start_time}}",
     "{{job.start_time}} is not a valid reference: job.start_time.<arg>: time arguments "
     "are iso_weekday, is_weekday, iso_date, iso_datetime, year, month, day, hour, minute, second, "
     "timestamp_ms"),
    ("{{job.trigger.time.date}}",
     "{{job.trigger.time.date}} is not a valid reference: job.trigger.time.<arg>: time arguments "
     "are iso_weekday, is_weekday, iso_date, iso_datetime, year, month, day, hour, minute, second, "
     "timestamp_ms"),
    ("{{backfill.date}}",
     "{{backfill.date}} is not a valid reference: backfill.<arg>: time arguments are iso_weekday, "
     "is_weekday, iso_date, iso_datetime, year, month, day, hour, minute, second, timestamp_ms"),
    ("{{job.parameters}}",
     "{{job.parameters}} is not a valid reference: use job.parameters.<name> (back-quote names "
     "with other characters than letters, digits and _: job.parameters.`my-param`)"),
    ("{{job.parameters.x}}",
     "{{job.parameters.x}} is not a valid reference: no job parameter named 'x'; the job's "
     "parameters are env, param$@, tables"),
    ("{{job.parameters.enx}}",
     "{{job.parameters.enx}} is not a valid reference: no job parameter named 'enx' "
     "(did you mean 'env'?)"),
    ("{{task.nam}}",
     "{{task.nam}} is not a valid reference: task has name, run_id, execution_count, notebook_path"),
    ("{{tasks.validate.result}}",
     "{{tasks.validate.result}} is not a valid reference: tasks.<task_key> has run_id, "
     "result_state, error_code, execution_count, notebook_path, values.<key>"),
    ("{{tasks.validate}}",
     "{{tasks.validate}} is not a valid reference: tasks.<task_key> has run_id, "
     "result_state, error_code, execution_count, notebook_path, values.<key>"),
    ("{{tasks.validate.values}}",
     "{{tasks.validate.values}} is not a valid reference: tasks.<task_key> has run_id, "
     "result_state, error_code, execution_count, notebook_path, values.<key>"),
    ("{{tasks.z.values.k}}",
     "{{tasks.z.values.k}} is not a valid reference: no task named 'z'"),
    ("{{tasks.validat.values.k}}",
     "{{tasks.validat.values.k}} is not a valid reference: no task named 'validat' "
     "(did you mean 'validate'?)"),
    ("{{tasks.my_task.run_id}}",
     "{{tasks.my_task.run_id}} is not a valid reference: no task named 'my_task' "
     "(did you mean 'my-task'?)"),
    ("{{workspace.name}}",
     "{{workspace.name}} is not a valid reference: workspace has id, url"),
    ("{{input}}",
     "{{input}} is not a valid reference: {{input}} is only available in the task nested in a "
     "for_each_task"),
    ("{{input.table}}",
     "{{input.table}} is not a valid reference: {{input}} is only available in the task nested in "
     "a for_each_task"),
])
def test_reference_problems(text, message):
    assert reference_problems(text, job_parameters=PARAMS, task_keys=KEYS) == [message]


def test_no_parameters_defined():
    assert reference_problems("{{job.parameters.x}}", job_parameters=[], task_keys=[]) == [
        "{{job.parameters.x}} is not a valid reference: no job parameter named 'x'; "
        "the job defines no parameters"]


def test_reference_must_be_upstream():
    problems = reference_problems("{{tasks.gold.values.k}} {{tasks.validate.result_state}}",
                                  job_parameters=PARAMS, task_keys=KEYS, upstream={"validate"})
    assert problems == ["{{tasks.gold.values.k}} is not a valid reference: task 'gold' is not "
                        "upstream of this task; add it to depends_on"]


def test_upstream_none_skips_the_upstream_check():
    assert reference_problems("{{tasks.gold.values.k}}", job_parameters=[], task_keys=KEYS) == []


def test_input_in_for_each_is_fine():
    assert reference_problems("{{input}} {{input.a.b}}", job_parameters=[], task_keys=[],
                              in_for_each=True) == []


def test_valid_text_has_no_problems():
    text = ("{{job.id}} {{job.parameters.`param$@`}} {{tasks.`my-task`.values.`k$`}} {{my.value}} "
            "{{task_retry_count}} {{job.trigger.file_arrival.location}} {{backfill.iso_date}} "
            "{{ workspace.url }} {{job.trigger.time.hour}}")
    assert reference_problems(text, job_parameters=PARAMS, task_keys=KEYS, upstream=KEYS) == []


def test_several_problems_each_once():
    problems = reference_problems("{{job.naem}} {{job.naem}} {{task.x}}", job_parameters=[],
                                  task_keys=[])
    assert len(problems) == 2
    assert problems[0].startswith("{{job.naem}} ")
    assert problems[1].startswith("{{task.x}} ")


def test_malformed_references_warns_about_missing_back_quotes():
    text = "{{tasks.my-task.values.x}} {{my.value-x}} {{job.parameters.a b}} {{tasks.`ok`.run_id}}"
    warnings = malformed_references(text)
    assert len(warnings) == 2
    assert warnings[0].startswith("{{tasks.my-task.values.x}} is not a valid reference and will be "
                                  "passed as literal text: back-quote identifiers")
    assert warnings[1].startswith("{{job.parameters.a b}} ")


# ---------------------------------------------------------------------------------------------
# Run time errors


@pytest.mark.parametrize("ctx_over, text, message", [
    ({}, "{{tasks.validate.values.score2}}",
     "{{tasks.validate.values.score2}}: task 'validate' did not set a task value 'score2'"),
    ({}, "{{tasks.gold.values.k}}",
     "{{tasks.gold.values.k}}: task 'gold' did not set a task value 'k' (its result is failed)"),
    ({}, "{{tasks.nope.values.k}}", "{{tasks.nope.values.k}}: task 'nope' has not run in this job run"),
    ({}, "{{tasks.nope.result_state}}",
     "{{tasks.nope.result_state}}: task 'nope' has not run in this job run"),
    ({"tasks": {"a": TaskRefState()}}, "{{tasks.a.result_state}}",
     "{{tasks.a.result_state}}: task 'a' has no result yet"),
    ({"tasks": {"a": TaskRefState()}}, "{{tasks.a.run_id}}",
     "{{tasks.a.run_id}}: the run id of task 'a' is not known for this run"),
    ({}, "{{tasks.script.notebook_path}}",
     "{{tasks.script.notebook_path}}: task 'script' is not a notebook task"),
    ({"notebook_path": None}, "{{task.notebook_path}}",
     "{{task.notebook_path}}: the current task is not a notebook task"),
    ({}, "{{job.parameters.nope}}", "{{job.parameters.nope}}: no job parameter named 'nope'"),
    ({"input": MISSING}, "{{input}}",
     "{{input}}: there is no for-each input here ({{input}} works only in the task nested in a "
     "for_each_task)"),
    ({}, "{{input.zzz}}",
     "{{input.zzz}}: the for-each input element has no key 'zzz' (element: "
     '{"a":{"b":"deep"},"n":5,"items":["x","y"]})'),
    ({}, "{{input.a.c}}",
     "{{input.a.c}}: the for-each input element.a has no key 'c' (element: "
     '{"a":{"b":"deep"},"n":5,"items":["x","y"]})'),
    ({"input": 5}, "{{input.a}}",
     "{{input.a}}: the for-each input element is not a JSON object, so it has no key 'a' (element: 5)"),
    ({"input": ["x"]}, "{{input.3}}",
     "{{input.3}}: the for-each input element has no item 3 (element: [\"x\"])"),
    ({"backfill_time": None}, "{{backfill.iso_date}}",
     "{{backfill.iso_date}}: this run is not a backfill run"),
    ({"start_time": None, "trigger_time": None}, "{{job.start_time.iso_date}}",
     "{{job.start_time.iso_date}}: the job start time is not known for this run"),
    ({"run_id": None}, "{{job.run_id}}", "{{job.run_id}}: the job run id is not known for this run"),
    ({}, "{{job.naem}}",
     "{{job.naem}} is not a valid reference: job has id, name, run_id, repair_count, "
     "start_time.<arg>, parameters.<name>, trigger.type, trigger.time.<arg>, "
     "trigger.file_arrival.location"),
])
def test_resolution_errors(ctx_over, text, message):
    with pytest.raises(ReferenceResolutionError) as info:
        resolve("prefix " + text, make_ctx(**ctx_over))
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_input_none_is_a_real_element():
    assert resolve("{{input}}", make_ctx(input=None)) == "null"


# ---------------------------------------------------------------------------------------------
# render_value, resolve_all, value_of


@pytest.mark.parametrize("value, text", [
    ("abc", "abc"),
    ("", ""),
    ('{"not": "parsed"}', '{"not": "parsed"}'),
    (True, "true"),
    (False, "false"),
    (None, "null"),
    (0, "0"),
    (12, "12"),
    (-3, "-3"),
    (0.5, "0.5"),
    (1e20, "1e+20"),
    ([1, "a", None, True], '[1,"a",null,true]'),
    ({"k": [1, 2], "é": "ü"}, '{"k":[1,2],"é":"ü"}'),
    ([], "[]"),
    ({}, "{}"),
])
def test_render_value(value, text):
    assert render_value(value) == text


def test_resolve_all_resolves_values_not_keys():
    obj = {"{{job.id}}": "{{job.id}}", "list": ["{{task.name}}", 3, None, {"x": "{{my.value}}"}],
           "n": 1.5, "t": ("{{job.run_id}}",)}
    assert resolve_all(obj, CTX) == {"{{job.id}}": "42",
                                     "list": ["report", 3, None, {"x": "{{my.value}}"}],
                                     "n": 1.5, "t": ("1001",)}
    assert obj["{{job.id}}"] == "{{job.id}}"  # not mutated


@pytest.mark.parametrize("text, expected", [
    ("{{tasks.validate.values.rows}}", [1, 2, 3]),
    (" {{tasks.validate.values.meta}} ", {"a": 1, "b": "x"}),
    ("{{tasks.validate.values.ok}}", True),
    ("{{tasks.validate.values.score}}", 0.93),
    ("{{tasks.validate.values.none}}", None),
    ("{{input}}", {"a": {"b": "deep"}, "n": 5, "items": ["x", "y"]}),
    ("{{input.items}}", ["x", "y"]),
    ("{{input.n}}", 5),
    ("{{job.id}}", "42"),
    ("{{job.parameters.tables}}", '["a","b"]'),
    ("score={{tasks.validate.values.score}}", "score=0.93"),
    ("{{my.value}}", "{{my.value}}"),
    ("[1,2]", "[1,2]"),
])
def test_value_of(text, expected):
    assert value_of(text, CTX) == expected


def test_value_of_raises_like_resolve():
    with pytest.raises(ReferenceResolutionError, match="did not set a task value 'zz'"):
        value_of("{{tasks.validate.values.zz}}", CTX)
