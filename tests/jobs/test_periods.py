"""Refit periods: every replica must compute the same period for the same moment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobs.periods import Schedule


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_hourly_cron_period_contains_now_and_starts_at_the_top_of_the_hour() -> None:
    period = Schedule("0 * * * *").period(ts(2024, 1, 1, 10, 30))
    assert (period.start, period.end) == (ts(2024, 1, 1, 10), ts(2024, 1, 1, 11))
    assert period.id == int(ts(2024, 1, 1, 10))
    assert period.label() == "2024-01-01T10:00:00Z"


def test_a_fire_time_opens_its_own_period() -> None:
    assert Schedule().period(ts(2024, 1, 1, 10)).start == ts(2024, 1, 1, 10)
    assert Schedule().period(ts(2024, 1, 1, 10) - 0.001).start == ts(2024, 1, 1, 9)


@pytest.mark.parametrize(
    ("cron", "start"),
    [
        ("0 0 * * 1", (2024, 1, 1)),  # Monday in crontab numbering (APScheduler 3 alone would read Tuesday)
        ("0 0 * * 0", (2023, 12, 31)),  # Sunday
        ("0 0 * * 7", (2023, 12, 31)),  # Sunday again
        ("0 0 * * 1-5", (2024, 1, 1)),
        ("0 9,17 * * *", (2024, 1, 1, 9)),
    ],
)
def test_cron_weekdays_follow_crontab_numbering(cron: str, start: tuple[int, ...]) -> None:
    assert Schedule(cron).period(ts(2024, 1, 1, 10, 30)).start == ts(*start)  # 2024-01-01 is a Monday


def test_fixed_periods_align_to_the_epoch_so_replicas_agree() -> None:
    period = Schedule(period_seconds=7).period(100.5)
    assert (period.start, period.end) == (98.0, 105.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cron": "not a cron"}, "The cron expression 'not a cron' is not valid"),
    ({"cron": "0 * * * 9"}, "day of week '9' is out of range"),
    ({"period_seconds": 0}, "The value of `period_seconds` should be a positive integer"),
])
def test_bad_schedules_name_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)
