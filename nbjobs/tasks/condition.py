"""Condition (if/else) tasks (`condition_task`, databricks-sdk `jobs.ConditionTask`): compare two
resolved operands; the outcome ("true"/"false") is what `depends_on[].outcome` tests."""
from __future__ import annotations

import difflib
import math
from typing import Any

from ..refs import ReferenceResolutionError, RefContext, is_reference_only, render_value, resolve, value_of
from ..states import ConditionOp, ResultState
from .api_model import ApiModel, Text, as_text
from .registry import Outcome, TaskKind, TaskRun

_NUMERIC = {
    ConditionOp.GREATER_THAN: lambda a, b: a > b,
    ConditionOp.GREATER_THAN_OR_EQUAL: lambda a, b: a >= b,
    ConditionOp.LESS_THAN: lambda a, b: a < b,
    ConditionOp.LESS_THAN_OR_EQUAL: lambda a, b: a <= b,
}
_OPS = [str(v) for v in ConditionOp]


class ConditionTask(ApiModel):
    op: Text | None = None  # checked by validation (the six ConditionOp values)
    left: Text | None = None
    right: Text | None = None


class ConditionError(ValueError):
    """The condition could not be evaluated; the condition task fails with this message."""


def operand(text: str, ctx: RefContext, side: str) -> str:
    """Resolve one operand to text. A task value that is a list or object makes the condition fail."""
    if is_reference_only(text):
        raw: Any = value_of(text, ctx)
        if isinstance(raw, (list, dict)):
            raise ConditionError(
                f"condition_task.{side}: {text.strip()} is a {type(raw).__name__} ({render_value(raw)[:80]}); "
                "conditions compare only numbers, strings and booleans")
        return render_value(raw)
    return resolve(text, ctx)


def evaluate(op: str, left: str, right: str) -> bool:
    """Compare resolved operands: string equality for ==/!=, numeric ordering otherwise."""
    op = ConditionOp(op)
    if op is ConditionOp.EQUAL_TO:
        return left == right
    if op is ConditionOp.NOT_EQUAL:
        return left != right
    numbers = []
    for side, value in (("left", left), ("right", right)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if math.isnan(number):
            raise ConditionError(
                f"{op.value} compares numbers, but the {side} operand is {value!r}, which is not a number. "
                "Use EQUAL_TO/NOT_EQUAL for text, or make the operand numeric")
        numbers.append(number)
    return _NUMERIC[op](*numbers)


class ConditionKind(TaskKind):
    field = "condition_task"
    name = "condition"
    label = "Condition (if/else)"
    retryable = False
    needs_compute = False
    instant = True
    has_outcome = True
    model = ConditionTask

    def validate(self, payload, path, check, *, upstream, nested):
        op = as_text(payload.get("op"))
        if op is None:
            check.add(f"{path}.op", "a value is required", "use one of " + ", ".join(_OPS))
        elif op not in _OPS:
            close = difflib.get_close_matches(str(op).upper(), _OPS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            check.add(f"{path}.op", f"'{op}' is not a condition op{hint}", "use one of " + ", ".join(_OPS))
        for side in ("left", "right"):
            if payload.get(side) is None:
                check.add(f"{path}.{side}", "a value is required",
                          f"give the {side} operand: a literal or a {{{{...}}}} reference")
            else:
                check.refs(payload.get(side), f"{path}.{side}", upstream=upstream, in_for_each=nested)

    async def run(self, run: TaskRun) -> Outcome:
        """Evaluated inline (never suspends): no slot, no thread."""
        cond, ctx = run.task.condition_task, run.refs
        try:
            left = operand(cond.left, ctx, "left")
            right = operand(cond.right, ctx, "right")
            resolved = {"condition_task": {"left": left, "right": right}}
            outcome = "true" if evaluate(cond.op, left, right) else "false"
        except (ConditionError, ReferenceResolutionError) as exc:
            return Outcome(ResultState.FAILED, dict(error=str(exc)))
        return Outcome(ResultState.SUCCESS, dict(resolved_values=resolved), outcome=outcome)

    def run_json(self, out: dict, row: dict, iterations) -> None:
        if row.get("condition_outcome") is not None:
            out["condition_task"] = {**out["condition_task"], "outcome": row["condition_outcome"]}
