"""Checks of stored statistics before any model reads them (they live next to the observation records)."""

from __future__ import annotations

import math

import pandas as pd

from bayesopt.observation_table import MAX_LISTED_PROBLEMS, stats_problems


def stats(**overrides: float) -> pd.DataFrame:
    row = {"version": 1, "arm_id": "control", "metric": "sessions", "source": "online", "count": 10.0, "sum": 3.0, "sum_sq": 3.0}
    return pd.DataFrame([{**row, **overrides}])


def test_sound_statistics_have_no_problems() -> None:
    assert stats_problems(stats()) == []
    assert stats_problems(stats().iloc[:0]) == []


def test_nan_negative_and_zero_counts_are_named() -> None:
    assert stats_problems(stats(count=math.nan)) == [
        "version 1, arm control, metric sessions, source online: count is nan (must be a positive finite number)"
    ]
    assert "count is -4.0" in stats_problems(stats(count=-4.0))[0]
    assert "count is 0.0" in stats_problems(stats(count=0.0))[0]


def test_non_finite_sums_and_negative_variances_are_named() -> None:
    assert "sum inf and sum_sq 3.0 must be finite" in stats_problems(stats(sum=math.inf))[0]
    assert "a negative variance" in stats_problems(stats(sum_sq=0.1))[0]


def test_long_problem_lists_are_summarised() -> None:
    frame = pd.concat([stats(count=-1.0, arm_id=f"a{i}") for i in range(30)], ignore_index=True)
    problems = stats_problems(frame)
    assert len(problems) == MAX_LISTED_PROBLEMS + 1
    assert problems[-1] == "... and 10 more rows with problems"
