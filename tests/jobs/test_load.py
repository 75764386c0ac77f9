"""The data fingerprint of a refit's inputs (the checks of stored statistics: tests/bayesopt/test_observation_table.py)."""

from __future__ import annotations

import pandas as pd

from jobs.load import data_hash
from tests.factories import make_spec


def stats(**overrides: float) -> pd.DataFrame:
    row = {"version": 1, "arm_id": "control", "metric": "sessions", "source": "online", "count": 10.0, "sum": 3.0, "sum_sq": 3.0}
    return pd.DataFrame([{**row, **overrides}])


def test_the_data_hash_follows_spec_and_data() -> None:
    spec = make_spec()
    assert data_hash(spec, stats()) == data_hash(spec, stats())
    assert data_hash(spec, stats()) != data_hash(spec, stats(count=11.0))
    assert data_hash(spec, stats()) != data_hash(make_spec(description="changed"), stats())
