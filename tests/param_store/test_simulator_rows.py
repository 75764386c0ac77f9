"""Simulator rows through the store and the bulk loader: keyed by run and setting, validated, all or nothing."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from bayesopt.errors import ObservationValidationError
from jobs.cli import main
from param_store import EmbeddedRedis, ParamStore
from tests.jobs.helpers import launch


def sim_frame(n: int, *, run: str = "replay-1", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"run": run, "metric": "sessions", "x1": rng.uniform(0, 2, n), "x.x2": rng.uniform(0.01, 10, n),
                         "count": 500, "mean": rng.uniform(0.2, 0.4, n), "std_error": 0.02})


def test_rows_add_up_per_run_and_setting(store: ParamStore) -> None:
    launch(store)
    row = {"run": "day-1", "parameters": {"x1": 0.5, "x2": 2.0}, "metric": "applies", "count": 10, "sum": 3, "sum_sq": 3}
    assert store.add_simulator_observations("feed", [row, row, {**row, "run": "day-2"}]).accepted == 3
    sim = store.simulator_observations("feed").set_index("run")
    assert list(sim.columns) == ["metric", "count", "sum", "sum_sq", "x.x1", "x.x2"]
    assert sim.loc["day-1", "count"] == 20 and sim.loc["day-2", "sum"] == 3
    assert sim.loc["day-1", "x.x1"] == 0.5 and sim.loc["day-1", "x.x2"] == 2.0


@pytest.mark.parametrize(("change", "problem"), [
    ({"run": "no spaces"}, "rows[1].run: must name the simulator run"),
    ({"parameters": {"x1": 0.5}}, "rows[1].parameters.x2: must be a finite number, got None"),
    ({"parameters": {"x1": 0.5, "x2": 1.0, "x9": 1.0}}, "rows[1].parameters: unknown parameter(s) ['x9']"),
    ({"sum": 12, "sum_sq": 15}, "rows[1]: metric 'applies' is a rate"),
    ({"count": -1}, "rows[1].count: must be positive"),
    ({"source": "online"}, "rows[1].source: must be 'simulation'"),
])
def test_one_bad_row_refuses_the_batch(store: ParamStore, change: dict, problem: str) -> None:
    launch(store)
    good = {"run": "day-1", "parameters": {"x1": 0.5, "x2": 2.0}, "metric": "applies", "count": 10, "sum": 3, "sum_sq": 3}
    with pytest.raises(ObservationValidationError) as info:
        store.add_simulator_observations("feed", [good, {**good, **change}])
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems
    assert store.simulator_observations("feed").empty


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, redis_server: EmbeddedRedis, namespace: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("BAYESOPT_NAMESPACE", namespace)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_bulk_loader_stores_thousands_of_rows_in_one_transaction(store: ParamStore, cli_env, tmp_path, capsys, suffix) -> None:
    launch(store)
    path = tmp_path / f"sim{suffix}"
    frame = sim_frame(5000)
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    start = time.perf_counter()
    assert main(["observations", "load", str(path), "--experiment", "feed", "--source", "simulation"]) == 0
    elapsed = time.perf_counter() - start
    assert "stored 5000 simulation row(s)" in capsys.readouterr().out
    sim = store.simulator_observations("feed")
    assert len(sim) == 5000 and sim["count"].sum() == 5000 * 500
    assert elapsed < 30.0, f"5,000 rows took {elapsed:.1f} s"  # validation and one transaction take ~2 s idle


def test_the_bulk_loader_refuses_a_file_with_one_bad_row_naming_row_and_field(store: ParamStore, cli_env, tmp_path, capsys) -> None:
    launch(store)
    frame = sim_frame(100)
    frame.loc[37, "x1"] = 7.5
    path = tmp_path / "sim.csv"
    frame.to_csv(path, index=False)
    assert main(["observations", "load", str(path), "--experiment", "feed", "--source", "simulation"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bayesopt: error: rows[37].parameters.x1: 7.5 is outside the bounds [0, 2]"]
    assert store.simulator_observations("feed").empty
    assert main(["observations", "load", str(tmp_path / "none.csv"), "--experiment", "feed", "--source", "simulation"]) == 2
    assert "cannot be read" in capsys.readouterr().err
