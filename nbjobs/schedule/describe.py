"""A Quartz cron expression in words: "at 10:15 on the last Friday of every month, Europe/Paris".

Built from the parsed fields (`quartz.parse`), so it says what the expression does, not what it looks like.
"""
from __future__ import annotations

from .quartz import MAX_YEAR, QuartzCron, parse

DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")
ORDINALS = ("first", "second", "third", "fourth", "fifth")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _runs(values: tuple[int, ...]) -> list[tuple[int, int]]:
    """Consecutive values as (first, last) pairs."""
    out: list[tuple[int, int]] = []
    for v in values:
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _step(values: tuple[int, ...], lo: int, hi: int) -> int | None:
    """n when `values` is lo, lo+n, lo+2n, ... up to hi (an every-n pattern), else None."""
    if len(values) < 2 or values[0] != lo:
        return None
    n = values[1] - values[0]
    return n if values == tuple(range(lo, hi + 1, n)) else None


def _time(cron: QuartzCron) -> str:
    s, m, h = cron.seconds, cron.minutes, cron.hours
    if len(s) == 1 and len(m) == 1 and len(h) <= 6:
        sec = f":{s[0]:02d}" if s[0] else ""
        return "at " + _join([f"{hour:02d}:{m[0]:02d}{sec}" for hour in h])
    parts = []
    if len(s) == 60:
        parts.append("every second")
    elif _step(s, 0, 59):
        parts.append(f"every {_step(s, 0, 59)} seconds")
    elif s != (0,):
        parts.append(f"at second {_join([str(x) for x in s])}")
    if len(m) == 60:
        parts.append("every minute" if s == (0,) else "")
    elif _step(m, 0, 59):
        parts.append(f"every {_step(m, 0, 59)} minutes")
    else:
        parts.append(f"at minute {_join([str(x) for x in m])}" if len(m) > 1 or s != (0,) or len(h) == 24
                     else "")
        if len(m) == 1 and s == (0,) and len(h) == 24:
            parts[-1] = f"at minute {m[0]} of every hour"
    if len(h) < 24:
        if _step(h, 0, 23):
            parts.append(f"every {_step(h, 0, 23)} hours")
        else:
            spans = [f"{a:02d}:00-{b:02d}:59" if a != b else f"{a:02d}:00-{a:02d}:59" for a, b in _runs(h)]
            parts.append("between " + _join(spans))
    return " ".join(p for p in parts if p) or "every second"


def _days(cron: QuartzCron) -> str:
    dom, dow = cron.dom, cron.dow
    if not dom.any:
        if dom.last_offset is not None:
            base = "the last day" if dom.last_offset == 0 else \
                f"{dom.last_offset} day{'s' if dom.last_offset > 1 else ''} before the last day"
            if dom.last_weekday:
                return f"on the weekday nearest {base}" if dom.last_offset else "on the last weekday"
            return f"on {base}" if dom.last_offset == 0 else base
        if dom.weekday_of is not None:
            return f"on the weekday nearest the {_ordinal(dom.weekday_of)}"
        if len(dom.days) == 31:
            return ""
        return "on the " + _join([_ordinal(d) for d in sorted(dom.days)])
    if dow.last_of is not None:
        return f"on the last {DAY_NAMES[dow.last_of - 1]}"
    if dow.nth is not None:
        return f"on the {ORDINALS[dow.nth[1] - 1]} {DAY_NAMES[dow.nth[0] - 1]}"
    if len(dow.days) == 7:
        return ""
    spans = [DAY_NAMES[a - 1] if a == b else f"{DAY_NAMES[a - 1]} to {DAY_NAMES[b - 1]}"
             for a, b in _runs(tuple(sorted(dow.days)))]
    return "on " + _join(spans)


def describe(expression: str, timezone_id: str | None = None) -> str:
    """The expression in words, with the time zone (raises `CronError` for an invalid one)."""
    cron = parse(expression)
    days, months = _days(cron), cron.months
    weekly = cron.dom.any and cron.dow.nth is None and cron.dow.last_of is None
    if len(months) == 12:
        month_text = "" if (weekly or not days) else " of every month"
    else:
        names = _join([MONTH_NAMES[m - 1] for m in months])
        month_text = f" in {names}" if (weekly or not days) else f" of {names}"
    text = _time(cron) + (f" {days}" if days else "") + month_text
    if not days and len(cron.hours) < 24:
        text = _time(cron) + " every day" + month_text
    years = cron.years
    if years != tuple(range(1970, MAX_YEAR + 1)):
        spans = [str(a) if a == b else f"{a}-{b}" for a, b in _runs(years)]
        text += " in " + _join(spans)
    return f"{text}, {timezone_id}" if timezone_id else text
