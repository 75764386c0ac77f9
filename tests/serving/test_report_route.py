"""``GET /v1/experiments/{name}/report`` and ``bayesopt report`` on a day of the closed loop stored in the real
store: the same document as :func:`bayesopt.report.impact_report`, and no model code or numpy loaded to serve it."""

from __future__ import annotations

import json

import requests

from bayesopt.report import impact_report
from jobs.cli import main
from param_store import EmbeddedRedis, ExperimentState, ParamStore
from tests.report_world import SPEC, run_loop
from tests.test_import_boundaries import HEAVY, loaded_after


def store_loop(store: ParamStore, seed: int = 0):
    run = run_loop(seed)
    store.create_experiment(SPEC)
    for act in run.activations:
        store.next_version(SPEC.name)
        store.write_version(act.distribution)
        store.activate(SPEC.name, act.distribution.version, at=act.activated_at)
    store.transition(SPEC.name, ExperimentState.RUNNING)
    store.add_observations(SPEC.name, [s for s in run.stats if s.count > 0])
    return run


def test_the_report_route_serves_the_stratified_report(store: ParamStore, live) -> None:
    run = store_loop(store)
    body = requests.get(f"{live.base_url}/v1/experiments/impact/report", params={"confidence": "0.9"}, timeout=10).json()
    expected = impact_report(SPEC, run.activations, [s for s in run.stats if s.count > 0], confidence=0.9)
    assert body == {"state": "running", "current_version": 24, **json.loads(json.dumps(expected))}
    bad = requests.get(f"{live.base_url}/v1/experiments/impact/report", params={"confidence": "95"}, timeout=10)
    assert bad.status_code == 400 and "confidence" in bad.json()["error"]["message"]
    assert requests.get(f"{live.base_url}/v1/experiments/nope/report", timeout=10).status_code == 404


def test_the_cli_prints_the_report(store: ParamStore, redis_server: EmbeddedRedis, monkeypatch, capsys) -> None:
    store_loop(store)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("BAYESOPT_NAMESPACE", store.namespace)
    assert main(["report", "impact"]) == 0
    text = capsys.readouterr().out
    assert "served mix against control" in text and "sample ratio" in text and "v24" in text
    assert main(["report", "impact", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sample_ratio"]["ok"] is True
    assert main(["report", "impact", "--confidence", "2"]) == 2


def test_serving_a_report_loads_no_model_code(store: ParamStore, redis_server: EmbeddedRedis) -> None:
    store_loop(store)
    code = f"""
from serving import ServingConfig, create_app
app = create_app(ServingConfig(redis_url={redis_server.url!r}, namespace={store.namespace!r}))
assert app.test_client().get("/v1/experiments/impact/report").status_code == 200
"""
    loaded = loaded_after(code)
    assert not loaded & (HEAVY | {"numpy", "pandas"}), sorted(loaded & (HEAVY | {"numpy", "pandas"}))
