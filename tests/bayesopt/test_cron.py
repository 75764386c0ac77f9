"""The one cron parser: what the spec accepts is what the scheduler fires on, with the crontab meaning."""

from __future__ import annotations

import pytest

from bayesopt import BayesoptError
from bayesopt.cron import CronError, cron_problems, parse_cron


@pytest.mark.parametrize(
    ("cron", "fields"),
    [
        ("0 * * * *", {"minute": "0", "hour": "*", "day": "*", "month": "*", "day_of_week": "*"}),
        ("*/20 9-11 * * *", {"minute": "0,20,40", "hour": "9,10,11", "day": "*", "month": "*", "day_of_week": "*"}),
        ("0 0 * * 1", {"minute": "0", "hour": "0", "day": "*", "month": "*", "day_of_week": "mon"}),
        ("0 0 * * 0,7", {"minute": "0", "hour": "0", "day": "*", "month": "*", "day_of_week": "sun"}),
        ("0 0 * * 5-7", {"minute": "0", "hour": "0", "day": "*", "month": "*", "day_of_week": "sun,fri,sat"}),
        ("0 0 1 Jan-Jun/2 *", {"minute": "0", "hour": "0", "day": "1", "month": "1,3,5", "day_of_week": "*"}),
        ("30 6 15/5 * *", {"minute": "30", "hour": "6", "day": "15,20,25,30", "month": "*", "day_of_week": "*"}),
    ],
)
def test_trigger_fields_spell_out_the_crontab_meaning(cron: str, fields: dict) -> None:
    assert cron_problems(cron) == [] and parse_cron(cron).trigger_fields() == fields


def test_problems_come_back_together_and_the_error_is_a_validation_error() -> None:
    with pytest.raises(CronError) as err:
        parse_cron("99 25 * * *")
    assert err.value.problems == ["minute '99' is out of range 0-59", "hour '25' is out of range 0-23"]
    assert isinstance(err.value, BayesoptError) and isinstance(err.value, ValueError)
    assert cron_problems(5) == ["must be a string (minute hour day-of-month month day-of-week, e.g. '0 * * * *' "
                                "for the top of every hour), got 5"]
