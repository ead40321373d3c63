"""Condition (if/else) tasks: compare two resolved operands (reference §2.1)."""
from __future__ import annotations

import math
from typing import Any

from ..refs import RefContext, is_reference_only, render_value, resolve, value_of
from ..states import ConditionOp
from .registry import TaskKind

_NUMERIC = {
    ConditionOp.GREATER_THAN: lambda a, b: a > b,
    ConditionOp.GREATER_THAN_OR_EQUAL: lambda a, b: a >= b,
    ConditionOp.LESS_THAN: lambda a, b: a < b,
    ConditionOp.LESS_THAN_OR_EQUAL: lambda a, b: a <= b,
}


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
