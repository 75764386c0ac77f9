"""The refit job with simulator data: used for the metrics the spec names, ignored for the others, reported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jobs.cli import main
from jobs.refit import RefitOptions, refit_experiment
from jobs.runs import RunStatus
from param_store import EmbeddedRedis, ParamStore
from tests.jobs.helpers import POLICY, launch, observe, truth

NOW = 1_900_000_000.0


def simulator_rows(n: int, metric: str, seed: int = 0) -> list[dict]:
    """A shifted copy of the test world's truth at ``n`` random settings."""
    rng = np.random.default_rng(seed)
    rows = []
    for x1, x2 in zip(rng.uniform(0, 2, n), np.exp(rng.uniform(np.log(0.01), np.log(10), n)), strict=True):
        values = {"x1": float(x1), "x2": float(x2)}
        rows.append({"run": "replay-1", "parameters": values, "metric": metric, "count": 1000,
                     "mean": truth(metric, values) + 0.02, "std_error": 0.005})
    return rows


def test_simulator_rows_inform_the_named_metric_only_and_the_choice_is_reported(
    store: ParamStore, redis_server: EmbeddedRedis, namespace: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    launch(store, simulator_metrics=["sessions"])
    observe(store, "feed")
    store.add_simulator_observations("feed", simulator_rows(80, "sessions") + simulator_rows(30, "applies", seed=1))
    record = refit_experiment(redis_server.url, namespace, "feed", now=NOW, policy=POLICY,
                              options=RefitOptions(activation_delay_s=0.0, lock_ttl_s=30.0))
    assert record.status is RunStatus.PUBLISHED
    diagnostics = store.current("feed").diagnostics
    sessions = diagnostics["models"]["sessions"]["simulator"]
    assert sessions["simulator_rows"] == 80 and sessions["simulator_runs"] == ["replay-1"]
    # the launch design has 4 arms besides control: too few to cross-validate the simulator against
    assert sessions["model"] == "online" and sessions["reason"].startswith("only 4 online arms")
    assert 0.0 <= sessions["correlation"] <= 1.0 and set(sessions["bias"]) == {"offset", "effect_scale"}
    assert "simulator" not in diagnostics["models"]["applies"]
    assert diagnostics["rows_ignored"]["simulation_rows"] == 30

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("BAYESOPT_NAMESPACE", namespace)
    assert main(["status", "feed"]) == 0
    out = capsys.readouterr().out
    assert "simulator:" in out and "sessions: online model (only 4 online arms" in out and "80 simulator rows" in out
    assert main(["status", "feed", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["distribution"]["diagnostics"]["models"]["sessions"]["simulator"]["model"] == "online"
