"""Refit periods: the cron interval (or fixed-length interval) that contains a moment.

A period is identified by its start, in whole epoch seconds (UTC). Every replica computes the same period for
the same moment, with no shared state, which is what the per-period lock and "done" marker key on. Cron
expressions are read in UTC so that replicas in different time zones agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bayesopt.cron import CronError, parse_cron

#: First look-back when searching for the cron fire time at or before a moment; doubled until one is found.
_FIRST_LOOKBACK = timedelta(hours=2)
#: A cron expression that fires less than once in this long is refused here; the spec already refuses those that
#: fire less than once a year (``bayesopt.cron.MAX_GAP_DAYS``).
_MAX_LOOKBACK = timedelta(days=800)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in epoch seconds."""

    start: float
    end: float

    @property
    def id(self) -> int:
        """The key of this period in lock and marker names."""
        return int(self.start)

    @property
    def length(self) -> float:
        return self.end - self.start

    def label(self) -> str:
        return datetime.fromtimestamp(self.start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Schedule:
    """When an experiment is refitted: its spec's cron expression, or (accelerated runs, tests) a fixed interval.

    ``period_seconds`` overrides ``cron``: periods are then ``[k * p, (k + 1) * p)`` since the epoch, so replicas
    started at different moments still agree on the boundaries.
    """

    cron: str = "0 * * * *"
    period_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.period_seconds is not None and (not isinstance(self.period_seconds, int) or self.period_seconds < 1):
            raise ValueError(f"The value of `period_seconds` should be a positive integer, got {self.period_seconds!r}.")
        if self.period_seconds is None:
            self.trigger()  # a bad expression fails here, naming itself

    def trigger(self) -> BaseTrigger:
        """The APScheduler trigger that fires at the start of every period."""
        if self.period_seconds is not None:
            return IntervalTrigger(seconds=self.period_seconds, start_date=_EPOCH, timezone=UTC)
        try:
            fields = parse_cron(self.cron).trigger_fields()  # crontab meaning, checked as the spec checks it
        except CronError as exc:
            raise ValueError(f"The cron expression {self.cron!r} is not valid: {'; '.join(exc.problems)}") from None
        return CronTrigger(**fields, timezone=UTC)

    def period(self, now: float) -> Period:
        """The period that contains ``now`` (epoch seconds)."""
        if self.period_seconds is not None:
            p = self.period_seconds
            start = math.floor(now / p) * p
            return Period(float(start), float(start + p))
        return _cron_period(self.trigger(), datetime.fromtimestamp(now, UTC))


def _cron_period(trigger: BaseTrigger, now: datetime) -> Period:
    lookback = _FIRST_LOOKBACK
    while True:
        fire = trigger.get_next_fire_time(None, now - lookback)
        if fire is not None and fire <= now:
            break
        lookback *= 2
        if lookback > _MAX_LOOKBACK:
            raise ValueError(f"cron trigger {trigger} does not fire within {_MAX_LOOKBACK.days} days before {now}")
    while True:
        following = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        if following is None or following > now:
            end = following if following is not None else fire + lookback
            return Period(fire.timestamp(), end.timestamp())
        fire = following
