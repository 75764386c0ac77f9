"""Five-field crontab expressions, parsed and checked in full. Light: standard library only.

The spec validates ``refit.cron`` with :func:`cron_problems`, and the scheduler (:mod:`jobs.periods`) builds
its APScheduler trigger from :meth:`CronSchedule.trigger_fields`, so an expression the spec accepts is one the
scheduler fires on, with the crontab meaning.

Grammar of each field: a comma-separated list of items; an item is ``*``, ``N``, ``N-M``, ``*/S``, ``N-M/S``
or ``N/S`` (``N`` to the field's maximum in steps of ``S``). Months and weekdays may be written as three-letter
English names (``jan``, ``mon``; any case). Weekdays run 0-7 with 0 and 7 both Sunday, as in crontab.
Extensions (``L``, ``W``, ``#``, ``?``, ``@hourly``) are refused.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

from bayesopt.errors import ValidationError

#: A refit schedule must fire at least once in this many days. The scheduler looks back for the last fire time
#: over at most about 680 days (``jobs.periods``), so an expression like ``0 0 29 2 *`` (leap days only) would
#: be accepted and then never scheduled.
MAX_GAP_DAYS = 366
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
FORMAT = "minute hour day-of-month month day-of-week, e.g. '0 * * * *' for the top of every hour"
#: 28 years from a leap year: every (weekday, date) combination of 1901-2099 occurs in it.
_CYCLE = (dt.date(2000, 1, 1), dt.date(2028, 1, 1))
_ITEM = re.compile(r"(?P<span>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?")


class CronError(ValidationError):
    """A cron expression is malformed; ``problems`` names each bad field."""

    def __init__(self, problems: list[str] | str) -> None:
        super().__init__(problems, what="cron expression")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0  # the number of names[0]

    def value(self, token: str) -> int | None:
        if token.isdigit():
            return int(token)
        lowered = token.lower()
        return self.names.index(lowered) + self.first_name if lowered in self.names else None


FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, MONTHS, 1),
    _Field("day of week", 0, 7, WEEKDAYS, 0),
)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed expression: the values each field allows (weekdays 0-6 from Sunday, 7 folded into 0)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    def trigger_fields(self) -> dict[str, str]:
        """Keyword arguments for APScheduler 3's ``CronTrigger`` with the crontab meaning.

        Values are spelled out as lists (weekdays as names: APScheduler numbers them from Monday), so the
        trigger never re-reads the original syntax.
        """
        def spell(values: frozenset[int], field: _Field) -> str:
            full = set(range(field.low, field.high + 1)) - ({7} if field.names is WEEKDAYS else set())
            return "*" if set(values) == full else ",".join(str(v) for v in sorted(values))

        minute, hour, day, month, weekday = FIELDS
        weekdays = "*" if len(self.weekdays) == 7 else ",".join(WEEKDAYS[d] for d in sorted(self.weekdays))
        return {"minute": spell(self.minutes, minute), "hour": spell(self.hours, hour), "day": spell(self.days, day),
                "month": spell(self.months, month), "day_of_week": weekdays}


def parse_cron(text: str) -> CronSchedule:
    """Parse a five-field crontab expression; raise :class:`CronError` naming every bad field."""
    schedule, problems = _parse(text)
    if problems:
        raise CronError(problems)
    assert schedule is not None
    return schedule


def cron_problems(text: object) -> list[str]:
    """Every problem of ``text`` as a cron expression (empty when it is valid and fires at least once a year)."""
    if not isinstance(text, str):
        return [f"must be a string ({FORMAT}), got {text!r}"]
    return list(_parse(text)[1])


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> tuple[CronSchedule | None, tuple[str, ...]]:
    parts = text.split()
    if len(parts) != 5:
        return None, (f"must be a 5-field cron expression ({FORMAT}), got {text!r}",)
    problems: list[str] = []
    sets = [_field_values(token, field, problems) for token, field in zip(parts, FIELDS, strict=True)]
    if problems:
        return None, tuple(problems)
    minutes, hours, days, months, weekdays = sets
    weekdays = frozenset(d % 7 for d in weekdays)
    if not parts[2].startswith("*") and not parts[4].startswith("*"):
        return None, (
            f"restrict the day of month ({parts[2]!r}) or the day of week ({parts[4]!r}), not both: crontab fires "
            "when either matches, the scheduler only when both do; put '*' in one of them",
        )
    rare = _frequency_problem(days, months, weekdays)
    if rare:
        return None, (rare,)
    return CronSchedule(text, minutes, hours, days, months, weekdays), ()


def _field_values(token: str, field: _Field, problems: list[str]) -> frozenset[int]:
    values: set[int] = set()
    for item in token.split(","):
        span = _item_span(item, field, problems)
        if span is not None:
            values.update(range(*span))
    return frozenset(values)


def _item_span(item: str, field: _Field, problems: list[str]) -> tuple[int, int, int] | None:
    """``(first, last + 1, step)`` of one list item, or None after appending its problem."""
    match = _ITEM.fullmatch(item)
    if match is None:
        problems.append(f"{field.name} {item!r} is not a value, range, list or step (like 5, 1-5, 1,3 or */15)")
        return None
    span, step_text = match["span"], match["step"]
    if span == "*":
        first, last = field.low, (6 if field.names is WEEKDAYS else field.high)
    else:
        words = span.split("-")
        ends = [n for n in (field.value(w) for w in words) if n is not None]
        if len(ends) < len(words):
            word = next(w for w in words if field.value(w) is None)
            kind = f"a number or a name ({', '.join(field.names)})" if field.names else "a number"
            problems.append(f"{field.name} {word!r} is not {kind}")
            return None
        first = ends[0]
        last = ends[1] if len(ends) == 2 else (field.high if step_text else first)
        if not (field.low <= first <= field.high and field.low <= last <= field.high):
            note = " (0 and 7 are Sunday)" if field.names is WEEKDAYS else ""
            problems.append(f"{field.name} {item!r} is out of range {field.low}-{field.high}{note}")
            return None
        if first > last:
            problems.append(f"{field.name} range {span!r} runs backwards; write the smaller value first")
            return None
    step = int(step_text) if step_text else 1
    if step_text and not 1 <= step <= last - first:
        problems.append(f"{field.name} step in {item!r} must be between 1 and {last - first}, got {step}")
        return None
    return first, last + 1, step


def _frequency_problem(days: frozenset[int], months: frozenset[int], weekdays: frozenset[int]) -> str | None:
    """Why the schedule fires less than once every :data:`MAX_GAP_DAYS` days, or None when it does not."""
    if len(weekdays) == 7 and min(days) <= 28:
        return None  # every chosen month has that day: at most a year between fires
    start, end = _CYCLE
    fire = [
        n for n in range(start.toordinal(), end.toordinal())
        if (d := dt.date.fromordinal(n)).day in days and d.month in months and d.isoweekday() % 7 in weekdays
    ]
    if not fire:
        return f"never fires: day(s) of month {_spell_days(days)} never fall in month(s) {_spell_months(months)}"
    cycle = end.toordinal() - start.toordinal()
    gap = max(b - a for a, b in zip(fire, [*fire[1:], fire[0] + cycle], strict=True))
    if gap > MAX_GAP_DAYS:
        return f"fires less than once a year (up to {gap} days apart), too rarely for a refit schedule"
    return None


def _spell_days(days: frozenset[int]) -> str:
    return ",".join(str(d) for d in sorted(days))


def _spell_months(months: frozenset[int]) -> str:
    return ",".join(MONTHS[m - 1] for m in sorted(months))
