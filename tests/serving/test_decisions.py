"""Decide and ship over HTTP and the CLI: pin one arm for everyone, freeze, ship with the report kept beside it."""

from __future__ import annotations

import json
import time

import requests

from jobs.cli import main
from jobs.refit import RefitOptions, refit_experiment
from param_store import EmbeddedRedis, ParamStore
from tests.report_world import SPEC
from tests.serving.test_report_route import store_loop

TOKEN = {"Authorization": "Bearer s3cret"}


def members_get(base: str, ids: list[str]) -> set[str]:
    body = requests.post(f"{base}/v1/experiments/impact/params/batch", json={"member_ids": ids, "at": time.time()},
                         timeout=10).json()
    return {a["arm_id"] for a in body["assignments"]}


def test_pin_freeze_and_ship_over_http(store: ParamStore, serve, redis_server: EmbeddedRedis) -> None:
    store_loop(store)
    live = serve(admin_token="s3cret")
    base = f"{live.base_url}/v1/experiments/impact"
    assert requests.post(f"{base}/pin", json={"arm_id": "a2"}, timeout=10).status_code == 401
    bad = requests.post(f"{base}/pin", json={"arm_id": "nope"}, headers=TOKEN, timeout=10)
    assert bad.status_code == 404 and "never served" in bad.json()["error"]["message"]
    pinned = requests.post(f"{base}/pin", json={"arm_id": "a2", "reason": "best so far"}, headers=TOKEN, timeout=10)
    assert pinned.status_code == 200 and pinned.json()["frozen"] is True
    dist = store.current("impact")
    assert [(a.arm_id, a.weight) for a in dist.arms] == [("a2", 1.0)]
    assert dist.diagnostics["override"]["reason"] == "best so far" and dist.diagnostics["override"]["from_version"] == 24
    assert members_get(live.base_url, [f"m{i}" for i in range(200)]) == {"a2"}  # everyone
    record = refit_experiment(redis_server.url, store.namespace, "impact", options=RefitOptions(period_seconds=3600))
    assert record.status.value == "skipped" and record.reason.value == "frozen"
    assert requests.post(f"{base}/unfreeze", headers=TOKEN, timeout=10).json()["frozen"] is False
    assert requests.post(f"{base}/freeze", headers=TOKEN, timeout=10).json() == {
        "experiment": "impact", "frozen": True, "current_version": dist.version}

    shipped = requests.post(f"{base}/ship", json={"arm_id": "a1", "reason": "a2 costs too much"}, headers=TOKEN, timeout=10)
    assert shipped.status_code == 200 and shipped.json()["state"] == "ended"
    assert store.state("impact").value == "ended"
    decision = requests.get(f"{base}/shipped", timeout=10).json()
    assert decision["arm_id"] == "a1" and decision["reason"] == "a2 costs too much"
    assert len(decision["report"]["windows"]) == 25  # the day and the pinned version the decision was made on
    assert decision["report"]["combined"]["arms"]["a1"]["metrics"]["conversion"]["lift"]["value"] is not None
    live.ctx.cache.load("impact", trigger="test")
    assert members_get(live.base_url, [f"m{i}" for i in range(200)]) == {"a1"}  # ended: the shipped arm for all
    again = requests.post(f"{base}/ship", json={"arm_id": "a1"}, headers=TOKEN, timeout=10)
    assert again.status_code == 409


def test_the_cli_pins_freezes_and_ships(store: ParamStore, redis_server: EmbeddedRedis, monkeypatch, capsys) -> None:
    store_loop(store)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("BAYESOPT_NAMESPACE", store.namespace)
    assert main(["freeze", "impact", "--reason", "holiday"]) == 0
    assert store.frozen("impact")["reason"] == "holiday"
    assert main(["unfreeze", "impact"]) == 0 and store.frozen("impact") is None
    capsys.readouterr()
    assert main(["pin", "impact", "a3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arm_id"] == "a3"
    assert main(["ship", "impact", "missing"]) == 2
    assert main(["ship", "impact", "a2", "--reason", "clear winner"]) == 0
    assert "shipped a2" in capsys.readouterr().out
    assert store.shipped("impact")["report"]["experiment"] == SPEC.name
    assert main(["ship", "impact", "a2"]) == 2  # ended is final
