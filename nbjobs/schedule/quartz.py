"""Quartz cron expressions (what a Jobs `schedule.quartz_cron_expression` is): parse, match, next fire times.

Syntax and semantics follow Quartz's `CronExpression` (http://www.quartz-scheduler.org/api/2.3.0/org/quartz/CronExpression.html
and the CronTrigger tutorial): `seconds minutes hours day-of-month month day-of-week [year]`; day-of-week
1-7 = SUN-SAT; names (JAN-DEC, SUN-SAT) case-insensitive; `*`, `?` (exactly one of day-of-month and
day-of-week), ranges (a range whose end is below its start wraps, as Quartz's `addToSet`), lists, steps
(`a/n`, `*/n`, `/n`, `a-b/n`), `L` and `L-n` (last day of the month, n days before it), `nW` and `LW`
(nearest weekday, never crossing the month), in day-of-week `L` (= 7, Saturday), `nL` (last n-day of the
month) and `n#k` (k-th n-day). Year 1970-2099.

Daylight saving, as Quartz's FAQ documents it (http://www.quartz-scheduler.org/documentation/faq.html,
"daylight savings"): fire times are wall-clock times of the zone. A wall-clock time that does not exist on
a spring-forward day is skipped ("if you have a CronTrigger that fires every day at 2:15 am, then on the
day of the beginning of daylight savings time the trigger will be skipped"); a wall-clock time that occurs
twice on a fall-back day fires once, at its first occurrence, and the repeated hour fires nothing.
"""
from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

__all__ = ["CronError", "QuartzCron", "parse", "zone", "next_fire_times"]

MONTHS = {name: i for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
DAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}
MAX_YEAR = 2099

# name, min, max, names, the modulus Quartz wraps a reversed range with
FIELDS = (("seconds", 0, 59, None, 60), ("minutes", 0, 59, None, 60), ("hours", 0, 23, None, 24),
          ("day-of-month", 1, 31, None, 31), ("month", 1, 12, MONTHS, 12), ("day-of-week", 1, 7, DAYS, 7),
          ("year", 1970, MAX_YEAR, None, None))


class CronError(ValueError):
    """An invalid expression; `part` is the offending field text, `field` its name."""

    def __init__(self, message: str, *, field: str | None = None, part: str | None = None) -> None:
        super().__init__(message)
        self.field, self.part = field, part


@dataclass(frozen=True)
class DaySpec:
    """Day-of-month rules: a set of days, or last-day / weekday rules."""
    days: frozenset[int] = frozenset()
    last_offset: int | None = None  # L, L-n
    weekday_of: int | None = None   # nW: nearest weekday to day n
    last_weekday: bool = False       # LW (and L-nW: last_offset with this flag)
    any: bool = False                # '?'


@dataclass(frozen=True)
class WeekSpec:
    days: frozenset[int] = frozenset()  # 1-7, SUN-SAT
    last_of: int | None = None          # nL
    nth: tuple[int, int] | None = None  # n#k
    any: bool = False


@dataclass(frozen=True)
class QuartzCron:
    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    dom: DaySpec
    months: tuple[int, ...]
    dow: WeekSpec
    years: tuple[int, ...]

    # -- matching --------------------------------------------------------------------------
    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        return _days_in(self, year, month)

    def next_local(self, t: datetime) -> datetime | None:
        """The first naive wall-clock time >= t (naive) that matches, or None (after the last year)."""
        t = t.replace(microsecond=0) + (timedelta(seconds=1) if t.microsecond else timedelta())
        while True:
            if t.year > self.years[-1]:
                return None
            if t.year not in self.years:
                nxt = _first_at_least(self.years, t.year)
                if nxt is None:
                    return None
                t = datetime(nxt, 1, 1)
                continue
            if t.month not in self.months:
                m = _first_at_least(self.months, t.month)
                t = datetime(t.year, m, 1) if m else datetime(t.year + 1, 1, 1)
                continue
            days = self.days_in(t.year, t.month)
            d = _first_at_least(days, t.day)
            if d is None:
                t = _next_month(t)
                continue
            if d != t.day:
                t = datetime(t.year, t.month, d)
            h = _first_at_least(self.hours, t.hour)
            if h is None:
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if h != t.hour:
                t = t.replace(hour=h, minute=0, second=0)
            m = _first_at_least(self.minutes, t.minute)
            if m is None:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if m != t.minute:
                t = t.replace(minute=m, second=0)
            s = _first_at_least(self.seconds, t.second)
            if s is None:
                t = t.replace(second=0) + timedelta(minutes=1)
                continue
            return t.replace(second=s)

    def fire_times(self, tz: tzinfo, after: datetime) -> Iterator[datetime]:
        """Fire times (aware, in `tz`) strictly after the aware instant `after`, in order (Quartz DST rules)."""
        if after.tzinfo is None:
            raise ValueError("after must be timezone-aware")
        after = after.astimezone(timezone.utc)
        local = after.astimezone(tz).replace(tzinfo=None)
        candidate = self.next_local(local + timedelta(seconds=1) if not after.microsecond
                                    else local.replace(microsecond=0) + timedelta(seconds=1))
        while candidate is not None:
            instant = _instant(candidate, tz)
            if instant is not None and instant > after:
                yield instant.astimezone(tz)
            candidate = self.next_local(candidate + timedelta(seconds=1))


def _instant(naive: datetime, tz: tzinfo) -> datetime | None:
    """The instant of a wall-clock time: None in a gap, the first occurrence in an overlap."""
    first = naive.replace(tzinfo=tz, fold=0)
    back = first.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None)
    if back != naive:
        return None  # does not exist (spring forward)
    return first.astimezone(timezone.utc)


def _first_at_least(values: tuple[int, ...], v: int) -> int | None:
    for x in values:
        if x >= v:
            return x
    return None


def _next_month(t: datetime) -> datetime:
    return datetime(t.year + 1, 1, 1) if t.month == 12 else datetime(t.year, t.month + 1, 1)


def _weekday(year: int, month: int, day: int) -> int:
    """Quartz day-of-week (1 = SUN .. 7 = SAT)."""
    return (calendar.weekday(year, month, day) + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int:
    wd = _weekday(year, month, day)
    if wd == 7:  # Saturday: the Friday before, or Monday the 3rd when the 1st is a Saturday
        return 3 if day == 1 else day - 1
    if wd == 1:  # Sunday: the Monday after, or the Friday before when it is the last day
        return day - 2 if day == last else day + 1
    return day


@functools.lru_cache(maxsize=4096)
def _days_in(cron: QuartzCron, year: int, month: int) -> tuple[int, ...]:
    last = calendar.monthrange(year, month)[1]
    dom, dow = cron.dom, cron.dow
    if not dom.any:
        if dom.last_offset is not None:
            day = last - dom.last_offset
            if day < 1:
                return ()
            return (_nearest_weekday(year, month, day, last) if dom.last_weekday else day,)
        if dom.weekday_of is not None:
            if dom.weekday_of > last:
                return ()
            return (_nearest_weekday(year, month, dom.weekday_of, last),)
        return tuple(d for d in sorted(dom.days) if d <= last)
    first_wd = _weekday(year, month, 1)
    if dow.last_of is not None:
        day = last - (_weekday(year, month, last) - dow.last_of) % 7
        return (day,)
    if dow.nth is not None:
        want, k = dow.nth
        day = 1 + (want - first_wd) % 7 + 7 * (k - 1)
        return (day,) if day <= last else ()
    return tuple(d for d in range(1, last + 1) if _weekday(year, month, d) in dow.days)


# -- parsing ----------------------------------------------------------------------------------
_NUM = r"(\d+|[A-Z]{3})"


def _value(text: str, index: int, part: str) -> int:
    name, lo, hi, names, _ = FIELDS[index]
    if text.isdigit():
        v = int(text)
    elif names and text in names:
        v = names[text]
    else:
        allowed = f" or {next(iter(names))}-{list(names)[-1]}" if names else ""
        raise CronError(f"{name} field {part!r}: {text!r} is not a number {lo}-{hi}{allowed}",
                        field=name, part=part)
    if not lo <= v <= hi:
        raise CronError(f"{name} field {part!r}: {v} is outside {lo}-{hi}", field=name, part=part)
    return v


def _set(part: str, index: int) -> frozenset[int]:
    """A list of values, ranges and steps (no L/W/#) as a set, as Quartz's addToSet builds it."""
    name, lo, hi, _, modulus = FIELDS[index]
    out: set[int] = set()
    for item in part.split(","):
        if not item:
            raise CronError(f"{name} field {part!r}: an empty list item", field=name, part=part)
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name} field {part!r}: '/' must be followed by a positive integer",
                                field=name, part=part)
            step = int(step_text)
            if step > hi - lo + 1 and index != 6:
                raise CronError(f"{name} field {part!r}: the increment {step} is larger than the field's "
                                f"range {lo}-{hi}", field=name, part=part)
        if base in ("*", ""):
            start, stop = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start, stop = _value(a, index, part), _value(b, index, part)
        else:
            start = _value(base, index, part)
            stop = hi if slash else start
        if stop < start:  # a wrapping range (22-2, FRI-MON), as Quartz's addToSet
            if modulus is None:
                raise CronError(f"{name} field {part!r}: the start year must not be after the end year",
                                field=name, part=part)
            stop += modulus
        for i in range(start, stop + 1, step):
            if modulus is not None and i > hi:
                i %= modulus
                if i == 0 and lo == 1:
                    i = modulus
            out.add(i)
    return frozenset(out)


def _dom(part: str) -> DaySpec:
    if part == "?":
        return DaySpec(any=True)
    if part.startswith("L"):
        m = re.fullmatch(r"L(?:-(\d+))?(W)?", part)
        if not m:
            raise CronError(f"day-of-month field {part!r}: use L, L-n, LW or L-nW; 'L' cannot be combined "
                            "with other days", field="day-of-month", part=part)
        offset = int(m.group(1) or 0)
        if offset > 30:
            raise CronError(f"day-of-month field {part!r}: the offset from the last day must be at most 30",
                            field="day-of-month", part=part)
        return DaySpec(last_offset=offset, last_weekday=bool(m.group(2)))
    if part.endswith("W"):
        if not part[:-1].isdigit():
            raise CronError(f"day-of-month field {part!r}: 'W' follows one day number (15W), not a list or "
                            "range", field="day-of-month", part=part)
        return DaySpec(weekday_of=_value(part[:-1], 3, part))
    if "L" in part or "W" in part or "#" in part:
        raise CronError(f"day-of-month field {part!r}: 'L' and 'W' cannot be combined with other days and "
                        "'#' belongs to day-of-week", field="day-of-month", part=part)
    return DaySpec(days=_set(part, 3))


def _dow(part: str) -> WeekSpec:
    if part == "?":
        return WeekSpec(any=True)
    if part == "L":
        return WeekSpec(days=frozenset({7}))
    if "#" in part:
        m = re.fullmatch(_NUM + r"#(\d+)", part)
        if not m:
            raise CronError(f"day-of-week field {part!r}: '#' takes one day and a number 1-5 (6#3 = the third "
                            "Friday), not a list or range", field="day-of-week", part=part)
        k = int(m.group(2))
        if not 1 <= k <= 5:
            raise CronError(f"day-of-week field {part!r}: the number after '#' must be 1-5",
                            field="day-of-week", part=part)
        return WeekSpec(nth=(_value(m.group(1), 5, part), k))
    if part.endswith("L"):
        if not re.fullmatch(_NUM + "L", part):
            raise CronError(f"day-of-week field {part!r}: 'L' follows one day (6L = the last Friday), not a "
                            "list or range", field="day-of-week", part=part)
        return WeekSpec(last_of=_value(part[:-1], 5, part))
    if "L" in part or "W" in part.replace("WED", ""):
        raise CronError(f"day-of-week field {part!r}: 'L' and 'W' cannot be used here that way",
                        field="day-of-week", part=part)
    return WeekSpec(days=_set(part, 5))


@functools.lru_cache(maxsize=1024)
def parse(expression: str) -> QuartzCron:
    """Parse a Quartz cron expression; `CronError` names the field and the offending part."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError("empty expression; Quartz cron has 6 or 7 fields: seconds minutes hours "
                        "day-of-month month day-of-week [year], e.g. '0 15 10 ? * MON-FRI'")
    parts = expression.upper().split()
    if len(parts) not in (6, 7):
        hint = (" (Unix cron has 5 fields without seconds: put a seconds field first and '?' in "
                "day-of-month or day-of-week)") if len(parts) == 5 else ""
        raise CronError(f"{expression!r} has {len(parts)} fields; Quartz cron has 6 or 7: seconds minutes hours "
                        f"day-of-month month day-of-week [year]{hint}", part=expression)
    for index, part in enumerate(parts):
        if "?" in part and (index not in (3, 5) or part != "?"):
            raise CronError(f"{FIELDS[index][0]} field {part!r}: '?' is allowed only alone, in day-of-month or "
                            "day-of-week", field=FIELDS[index][0], part=part)
    dom_any, dow_any = parts[3] == "?", parts[5] == "?"
    if dom_any == dow_any:
        which = "both are '?'" if dom_any else f"day-of-month is {parts[3]!r} and day-of-week is {parts[5]!r}"
        raise CronError(f"exactly one of day-of-month and day-of-week must be '?' ({which}), e.g. "
                        "'0 0 12 ? * MON' or '0 0 12 1 * ?'", field="day-of-month" if not dom_any else
                        "day-of-week", part=f"{parts[3]} {parts[4]} {parts[5]}")
    for index in (0, 1, 2, 4, 6):
        if index < len(parts) and re.search(r"[LW#]", parts[index].replace("JUL", "").replace("JUN", "")):
            raise CronError(f"{FIELDS[index][0]} field {parts[index]!r}: 'L', 'W' and '#' are allowed only in "
                            "day-of-month and day-of-week", field=FIELDS[index][0], part=parts[index])
    years = _set(parts[6], 6) if len(parts) == 7 else frozenset(range(1970, MAX_YEAR + 1))

    def ordered(values: frozenset[int], index: int) -> tuple[int, ...]:
        if not values:
            raise CronError(f"{FIELDS[index][0]} field {parts[index]!r} matches nothing",
                            field=FIELDS[index][0], part=parts[index])
        return tuple(sorted(values))
    return QuartzCron(expression=expression, seconds=ordered(_set(parts[0], 0), 0),
                      minutes=ordered(_set(parts[1], 1), 1), hours=ordered(_set(parts[2], 2), 2),
                      dom=_dom(parts[3]), months=ordered(_set(parts[4], 4), 4), dow=_dow(parts[5]),
                      years=tuple(sorted(years)))


@functools.lru_cache(maxsize=256)
def zone(timezone_id: str) -> ZoneInfo:
    """A Java time-zone id as a ZoneInfo (Java's ids are the IANA names; `UTC`, `GMT` too)."""
    if not isinstance(timezone_id, str) or not timezone_id.strip():
        raise CronError("empty time zone id; use a Java time-zone id such as Europe/Paris or UTC",
                        part=str(timezone_id))
    try:
        return ZoneInfo(timezone_id.strip())
    except (ZoneInfoNotFoundError, ValueError):
        lower = timezone_id.strip().lower()
        close = sorted(z for z in available_timezones() if lower in z.lower())[:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else " such as Europe/Paris, America/New_York or UTC"
        raise CronError(f"{timezone_id!r} is not a known time-zone id; use a Java/IANA id{hint}",
                        part=timezone_id) from None


# Databricks runs a schedule at most once every 10 seconds, whatever the seconds field says.
MIN_SECONDS_BETWEEN_RUNS = 10


def next_fire_times(expression: str, timezone_id: str, after: datetime, count: int, *,
                    min_gap: float = MIN_SECONDS_BETWEEN_RUNS) -> list[datetime]:
    """Up to `count` fire times after `after` (aware), in the schedule's zone, at least `min_gap` s apart
    (fewer when the expression ends, e.g. a year field in the past)."""
    cron, tz = parse(expression), zone(timezone_id)
    out: list[datetime] = []
    for t in cron.fire_times(tz, after):
        if out and (t - out[-1]).total_seconds() < min_gap:
            continue
        out.append(t)
        if len(out) >= count:
            break
    return out
