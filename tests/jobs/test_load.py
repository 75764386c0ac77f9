"""Checks of stored statistics before fitting, and the data fingerprint."""

from __future__ import annotations

import math

import pandas as pd

from jobs.load import MAX_LISTED_PROBLEMS, data_hash, data_problems
from tests.factories import make_spec


def stats(**overrides: float) -> pd.DataFrame:
    row = {"version": 1, "arm_id": "control", "metric": "sessions", "source": "online", "count": 10.0, "sum": 3.0, "sum_sq": 3.0}
    return pd.DataFrame([{**row, **overrides}])


def test_sound_statistics_have_no_problems() -> None:
    assert data_problems(stats()) == []


def test_nan_negative_and_zero_counts_are_named() -> None:
    assert data_problems(stats(count=math.nan)) == [
        "version 1, arm control, metric sessions, source online: count is nan (must be a positive finite number)"
    ]
    assert "count is -4.0" in data_problems(stats(count=-4.0))[0]
    assert "count is 0.0" in data_problems(stats(count=0.0))[0]


def test_non_finite_sums_and_negative_variances_are_named() -> None:
    assert "sum inf and sum_sq 3.0 must be finite" in data_problems(stats(sum=math.inf))[0]
    assert "a negative variance" in data_problems(stats(sum_sq=0.1))[0]


def test_long_problem_lists_are_summarised() -> None:
    frame = pd.concat([stats(count=-1.0, arm_id=f"a{i}") for i in range(30)], ignore_index=True)
    problems = data_problems(frame)
    assert len(problems) == MAX_LISTED_PROBLEMS + 1
    assert problems[-1] == "... and 10 more rows with problems"


def test_the_data_hash_follows_spec_and_data() -> None:
    spec = make_spec()
    assert data_hash(spec, stats()) == data_hash(spec, stats())
    assert data_hash(spec, stats()) != data_hash(spec, stats(count=11.0))
    assert data_hash(spec, stats()) != data_hash(make_spec(description="changed"), stats())
