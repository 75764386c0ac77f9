"""The HTTP API over real HTTP: happy paths, every documented 4xx, admin actions, ops endpoints."""

from __future__ import annotations

import math
import re
import time

import pytest
import requests

from param_store import ExperimentState, ParamStore
from serving.cache import LOAD_LOCK_STRIPES
from tests.factories import make_rows, spec_dict
from tests.serving.conftest import launch, publish

T0 = 1_700_000_000.0


def error_of(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "problems"} and error["problems"]
    return error


def test_one_member_gets_values_arm_version_propensity_and_flags(store: ParamStore, live) -> None:
    dist = launch(store, "feed", created_at=T0)
    doc = requests.get(f"{live.base_url}/v1/experiments/feed/params", params={"member_id": "42"}, timeout=5).json()
    arm = dist.arm(doc["arm_id"])
    assert doc == {
        "experiment": "feed", "member_id": "42", "version": 1, "arm_id": arm.arm_id, "values": dict(arm.values),
        "propensity": pytest.approx(arm.weight), "in_experiment": True, "on_control": arm.arm_id == "control",
    }


def test_batch_answers_in_request_order_and_integer_ids_read_as_strings(store: ParamStore, live) -> None:
    launch(store, "feed")
    r = requests.post(f"{live.base_url}/v1/experiments/feed/params/batch", json={"member_ids": ["7", 7, "x"]}, timeout=5)
    doc = r.json()
    assert [a["member_id"] for a in doc["assignments"]] == ["7", "7", "x"]
    assert doc["assignments"][0] == doc["assignments"][1]
    single = requests.get(f"{live.base_url}/v1/experiments/feed/params", params={"member_id": "x"}, timeout=5).json()
    assert single["arm_id"] == doc["assignments"][2]["arm_id"] and single["version"] == doc["version"]


@pytest.mark.parametrize(
    ("path", "query", "status", "code", "names"),
    [
        ("/v1/experiments/nope/params", {"member_id": "1"}, 404, "experiment_not_found", "nope"),
        ("/v1/experiments/feed/params", {}, 400, "invalid_member_id", "member_id: is required"),
        ("/v1/experiments/feed/params", {"member_id": ""}, 400, "invalid_member_id", "member_id: must not be empty"),
        ("/v1/experiments/feed/params", {"member_id": "x" * 257}, 400, "invalid_member_id", "the limit is 256"),
        ("/v1/experiments/feed/params", {"member_id": "1", "at": "soon"}, 400, "bad_request", "at:"),
        ("/v1/experiments/feed/params", {"member_id": "1", "at": "nan"}, 400, "bad_request", "at:"),
        ("/v1/nothing/here", {}, 404, "not_found", "not found"),
    ],
)
def test_bad_single_requests_get_a_4xx_naming_the_problem(store: ParamStore, live, path, query, status, code, names) -> None:
    launch(store, "feed")
    error = error_of(requests.get(live.base_url + path, params=query, timeout=5), status)
    assert error["code"] == code
    assert names in error["message"]


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [
        (b"{not json", 400, "invalid_json", "not valid JSON"),
        (b"", 400, "invalid_json", "empty"),
        (b"[1, 2]", 400, "invalid_json", "must be a JSON object"),
        (b'{"member_ids": []}', 400, "bad_request", "member_ids"),
        (b'{"member_ids": "m1"}', 400, "bad_request", "member_ids"),
        (b'{"member_ids": ["ok", null, true]}', 400, "invalid_member_id", "member_ids[1]"),
    ],
)
def test_bad_batch_requests_get_a_4xx_naming_the_problem(store: ParamStore, live, body, status, code, names) -> None:
    launch(store, "feed")
    r = requests.post(f"{live.base_url}/v1/experiments/feed/params/batch", data=body, timeout=5)
    error = error_of(r, status)
    assert error["code"] == code
    assert names in error["message"] + " ".join(error["problems"])


def test_a_batch_over_the_limit_is_refused(store: ParamStore, live) -> None:
    launch(store, "feed")
    r = requests.post(f"{live.base_url}/v1/experiments/feed/params/batch", json={"member_ids": [str(i) for i in range(10_001)]}, timeout=5)
    error = error_of(r, 413)
    assert error["code"] == "batch_too_large" and "10001 ids exceed the limit of 10000" in error["message"]


def test_a_body_over_the_byte_limit_is_refused(store: ParamStore, serve) -> None:
    launch(store, "feed")
    live = serve(max_body_bytes=1000)
    r = requests.post(f"{live.base_url}/v1/experiments/feed/params/batch", json={"member_ids": ["x" * 100] * 20}, timeout=5)
    assert error_of(r, 413)["code"] == "request_entity_too_large"


def test_observations_of_every_row_form_are_stored(store: ParamStore, live) -> None:
    launch(store, "feed")
    rows = [
        *make_rows(1, "arm1", "sessions", count=10, total=3.0),
        {"version": 1, "arm_id": "control", "metric": "applies", "count": 100, "mean": 0.25, "std_error": 0.04},
        {"version": 1, "arm_id": "arm2", "metric": "sessions", "value": 1.0},
    ]
    r = requests.post(f"{live.base_url}/v1/experiments/feed/observations", json={"rows": rows}, timeout=5)
    assert r.status_code == 201 and r.json() == {"experiment": "feed", "accepted": 3, "duplicate": False, "batch_id": None}
    table = store.observations("feed").set_index(["arm_id", "metric", "source"])
    assert table.loc[("arm1", "sessions", "online"), "sum"] == 3.0
    assert table.loc[("control", "applies", "online"), "count"] == 100
    assert table.loc[("arm2", "sessions", "online"), "count"] == 1


BAD_ROWS = [
    ({"version": 1, "arm_id": "arm9", "metric": "sessions", "count": 5, "sum": 1, "sum_sq": 1}, 422, "observations_rejected", "arm_id 'arm9'"),
    ({"version": 9, "arm_id": "arm1", "metric": "sessions", "count": 5, "sum": 1, "sum_sq": 1}, 422, "observations_rejected", "version 9"),
    ({"version": 1, "arm_id": "arm1", "metric": "clicks", "count": 5, "sum": 1, "sum_sq": 1}, 422, "observations_rejected", "metric 'clicks'"),
    ({"version": 1, "arm_id": "arm1", "metric": "sessions", "count": math.nan, "sum": 1, "sum_sq": 1}, 422, "invalid_observations", "rows[1].count: must be finite"),
    ({"version": 1, "arm_id": "arm1", "metric": "sessions", "count": -3, "sum": 1, "sum_sq": 1}, 422, "invalid_observations", "rows[1].count: must be positive"),
    ({"version": 1, "arm_id": "arm1", "metric": "sessions", "count": 4, "mean": 0.5, "std_error": -1}, 422, "invalid_observations", "rows[1].std_error"),
    ({"version": 1, "arm_id": "arm1", "metric": "sessions", "value": math.inf}, 422, "invalid_observations", "rows[1].value"),
]


@pytest.mark.parametrize(("bad", "status", "code", "names"), BAD_ROWS)
def test_a_batch_with_one_bad_row_is_refused_whole(store: ParamStore, live, bad, status, code, names) -> None:
    launch(store, "feed")
    store.add_observations("feed", make_rows(1, "arm1", "sessions"))
    before = store.observations("feed")
    rows = [*make_rows(1, "control", "sessions", count=50, total=20.0), bad]
    # NaN and Infinity are not JSON, but Python (and many rankers) write them; the row check names them.
    body = requests.models.complexjson.dumps({"rows": rows})
    r = requests.post(f"{live.base_url}/v1/experiments/feed/observations", data=body, timeout=5)
    error = error_of(r, status)
    assert error["code"] == code
    assert any(names in p for p in error["problems"]), error["problems"]
    assert store.observations("feed").equals(before), "a refused batch must leave no partial trace"


def sim_row(i: int, **overrides) -> dict:
    row = {"source": "simulation", "run": "replay-1", "parameters": {"x1": 0.01 * i, "x2": 1.0}, "metric": "sessions",
           "count": 1000, "mean": 0.3, "std_error": 0.01}
    return {**row, **overrides}


def test_simulator_rows_are_stored_by_run_and_setting_or_refused_whole(store: ParamStore, live) -> None:
    launch(store, "feed")
    url = f"{live.base_url}/v1/experiments/feed/observations"
    batch = {"rows": [sim_row(i) for i in range(50)], "batch_id": "replay-1-part-1"}
    r = requests.post(url, json=batch, timeout=5)
    assert r.status_code == 201 and r.json() == {"experiment": "feed", "accepted": 50, "duplicate": False,
                                                 "batch_id": "replay-1-part-1"}
    retried = requests.post(url, json=batch, timeout=5)  # a client that lost the reply sends it again
    assert retried.status_code == 200 and retried.json()["duplicate"] is True
    sim = store.simulator_observations("feed")
    assert len(sim) == 50 and set(sim["run"]) == {"replay-1"} and sim["count"].sum() == 50_000
    assert store.observations("feed").empty, "simulator rows are not per-version statistics"

    bad = [sim_row(0), sim_row(1, parameters={"x1": 5.0, "x2": 1.0}), sim_row(2, metric="clicks")]
    error = error_of(requests.post(url, json={"rows": bad}, timeout=5), 422)
    assert any("rows[1].parameters.x1: 5.0 is outside the bounds [0, 2]" in p for p in error["problems"]), error
    assert any(p.startswith("rows[2].metric: not a metric of 'feed'") for p in error["problems"]), error
    mixed = [sim_row(0), *make_rows(1, "arm1", "sessions")]
    assert "all source=simulation or all online" in error_of(requests.post(url, json={"rows": mixed}, timeout=5), 422)["message"]
    assert store.simulator_observations("feed").equals(sim) and store.observations("feed").empty


def test_observations_need_a_rows_list_and_a_known_experiment(store: ParamStore, live) -> None:
    launch(store, "feed")
    r = requests.post(f"{live.base_url}/v1/experiments/feed/observations", json={"row": []}, timeout=5)
    assert error_of(r, 422)["problems"] == ["row: unknown field; a batch has batch_id, rows"]
    r = requests.post(f"{live.base_url}/v1/experiments/feed/observations", json={"rows": 5}, timeout=5)
    assert "rows: must be a list" in error_of(r, 422)["message"]
    r = requests.post(f"{live.base_url}/v1/experiments/ghost/observations", json={"rows": make_rows(1, "arm1", "sessions")}, timeout=5)
    assert error_of(r, 404)["code"] == "experiment_not_found"


def test_list_and_status_include_recent_refit_runs(store: ParamStore, live) -> None:
    launch(store, "feed")
    launch(store, "jobs")
    store.record_run("feed", {"experiment": "feed", "status": "published", "version": 2})
    listed = requests.get(f"{live.base_url}/v1/experiments", timeout=5).json()["experiments"]
    assert [e["name"] for e in listed] == ["feed", "jobs"] and listed[0]["state"] == "running"
    status = requests.get(f"{live.base_url}/v1/experiments/feed", timeout=5).json()
    assert status["state"] == "running" and status["current_version"] == 1
    assert status["recent_runs"] == [{"experiment": "feed", "status": "published", "version": 2}]
    assert status["history"][0]["version"] == 1 and status["spec"]["name"] == "feed"
    assert status["serving"]["mode"] == "epoch"


def test_admin_launch_pause_resume_rollback_end(store: ParamStore, live) -> None:
    base = f"{live.base_url}/v1/experiments"
    r = requests.post(base, json=spec_dict("ads"), timeout=30)
    assert r.status_code == 201 and r.json()["version"] == 1
    assert error_of(requests.post(base, json=spec_dict("ads"), timeout=30), 409)["code"] == "experiment_exists"
    bad_spec = error_of(requests.post(base, json=spec_dict("ads2", control={"x1": 99.0, "x2": 1.0}), timeout=30), 422)
    assert bad_spec["code"] == "invalid_spec" and any("control.x1" in p for p in bad_spec["problems"])
    member = {"member_id": "m1"}
    assert requests.get(f"{base}/ads/params", params=member, timeout=5).json()["in_experiment"] is True

    assert requests.post(f"{base}/ads/pause", timeout=5).json() == {"experiment": "ads", "state": "paused"}
    paused = requests.get(f"{base}/ads/params", params=member, timeout=5).json()
    assert paused["arm_id"] == "control" and paused["in_experiment"] is False and paused["propensity"] == 1.0
    error = error_of(requests.post(f"{base}/ads/pause", timeout=5), 409)
    assert error["code"] == "invalid_transition" and "allowed: ended, running" in error["message"]
    assert requests.post(f"{base}/ads/resume", timeout=5).json()["state"] == "running"

    publish(store, "ads", [0.5, 0.5], created_at=time.time())
    r = requests.post(f"{base}/ads/rollback", json={"version": 1}, timeout=5)
    assert r.json() == {"experiment": "ads", "version": 3, "source_version": 1}
    assert requests.get(f"{base}/ads/params", params=member, timeout=5).json()["version"] == 3
    assert error_of(requests.post(f"{base}/ads/rollback", json={"version": 42}, timeout=5), 404)["code"] == "version_not_found"
    assert "version:" in error_of(requests.post(f"{base}/ads/rollback", json={}, timeout=5), 400)["message"]
    assert requests.post(f"{base}/ads/end", timeout=5).json()["state"] == "ended"
    assert error_of(requests.post(f"{base}/ghost/pause", timeout=5), 404)["code"] == "experiment_not_found"


def test_admin_token_is_enforced_when_configured(store: ParamStore, serve) -> None:
    launch(store, "feed")
    live = serve(admin_token="s3cret")
    url = f"{live.base_url}/v1/experiments/feed/pause"
    assert error_of(requests.post(url, timeout=5), 401)["code"] == "unauthorized"
    assert error_of(requests.post(url, headers={"Authorization": "Bearer wrong"}, timeout=5), 401)
    assert requests.post(url, headers={"Authorization": "Bearer s3cret"}, timeout=5).status_code == 200
    assert requests.get(f"{live.base_url}/v1/experiments/feed/params", params={"member_id": "1"}, timeout=5).status_code == 200


def test_cache_follows_publishes_and_state_changes_made_elsewhere(store: ParamStore, live) -> None:
    launch(store, "feed", created_at=T0)
    url = f"{live.base_url}/v1/experiments/feed/params"
    assert requests.get(url, params={"member_id": "1"}, timeout=5).json()["version"] == 1
    publish(store, "feed", [0.5, 0.5], created_at=time.time() - 1)
    store.transition("feed", ExperimentState.PAUSED)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        doc = requests.get(url, params={"member_id": "1"}, timeout=5).json()
        if doc["version"] == 2 and not doc["in_experiment"]:
            break
        time.sleep(0.05)
    assert doc["version"] == 2 and doc["in_experiment"] is False


def test_requests_are_served_from_memory_without_redis_round_trips(store: ParamStore, serve, redis_server) -> None:
    launch(store, "feed")
    live = serve(poll_interval_s=60.0)
    session = requests.Session()
    url = f"{live.base_url}/v1/experiments/feed/params"
    session.get(url, params={"member_id": "warm"}, timeout=5)
    info = redis_server.client().info
    before = info("stats")["total_commands_processed"]
    for i in range(300):
        assert session.get(url, params={"member_id": str(i)}, timeout=5).status_code == 200
    after = info("stats")["total_commands_processed"]
    assert after - before < 10, f"{after - before} Redis commands for 300 requests"


def test_distribution_endpoint_serves_the_snapshot_with_an_etag(store: ParamStore, live) -> None:
    dist = launch(store, "feed")
    r = requests.get(f"{live.base_url}/v1/experiments/feed/distribution", timeout=5)
    doc = r.json()
    assert doc["distribution"]["arms"] == dist.to_dict()["arms"] and doc["current_version"] == 1
    assert doc["mode"] == "epoch" and doc["state"] == "running" and len(doc["versions"]) == 1
    again = requests.get(f"{live.base_url}/v1/experiments/feed/distribution", headers={"If-None-Match": r.headers["ETag"]}, timeout=5)
    assert again.status_code == 304 and not again.content


def test_health_readiness_and_metrics(store: ParamStore, live) -> None:
    launch(store, "feed")
    assert requests.get(f"{live.base_url}/v1/health", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{live.base_url}/v1/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"] == {"cache_warm": True, "store_reachable": True}
    assert ready.json()["status"] == "ready" and ready.json()["alarms"] == []
    requests.get(f"{live.base_url}/v1/experiments/feed/params", params={"member_id": "1"}, timeout=5)
    text = requests.get(f"{live.base_url}/metrics", timeout=5).text
    assert 'bayesopt_http_requests_total{endpoint="api.params",method="GET",status="200"} 1.0' in text
    assert 'bayesopt_assignments_total{experiment="feed"' in text
    assert 'bayesopt_cache_version{experiment="feed"} 1.0' in text


def test_openapi_document_covers_every_route(live) -> None:
    doc = requests.get(f"{live.base_url}/v1/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"]
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in live.app.url_map.iter_rules() if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    refs = re.findall(r'"#/components/schemas/(\w+)"', requests.get(f"{live.base_url}/v1/openapi.json", timeout=5).text)
    assert set(refs) <= set(doc["components"]["schemas"])


def test_a_wrong_method_gets_405_json_with_allow(store: ParamStore, live) -> None:
    launch(store)
    r = requests.delete(f"{live.base_url}/v1/experiments/feed/params", timeout=5)
    assert r.status_code == 405 and r.headers["Content-Type"].startswith("application/json")
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET"}
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_unknown_experiment_names_cannot_grow_a_worker(store: ParamStore, serve) -> None:
    live = serve(negative_ttl_s=60.0, max_unknown_names=200)
    client = live.app.test_client()
    for i in range(1000):
        assert client.get(f"/v1/experiments/ghost{i}/params?member_id=1").status_code == 404
    sizes = live.ctx.cache.sizes()
    assert 0 < sizes["unknown_names"] <= 200 and sizes["load_locks"] == LOAD_LOCK_STRIPES
    assert sizes["snapshots"] == 0


def test_the_fast_path_answers_exactly_as_the_flask_route(store: ParamStore, live) -> None:
    launch(store, "feed", [0.2, 0.1, 0.3, 0.15, 0.25])
    url = f"{live.base_url}/v1/experiments/feed/params"
    for member in ("1", "m-42", "x" * 256):
        fast = requests.get(f"{url}?member_id={member}", timeout=5)  # served by serving.api.fast_params
        routed = requests.get(f"{url}?member_id={member}&trace=1", timeout=5)  # not plain: through Flask
        assert fast.status_code == routed.status_code == 200
        assert fast.content == routed.content and fast.headers["Content-Type"] == routed.headers["Content-Type"]
    assert requests.get(f"{url}?member_id=", timeout=5).status_code == 400
    assert requests.get(f"{url}?member_id={'x' * 257}", timeout=5).status_code == 400
    assert requests.get(f"{live.base_url}/v1/experiments/ghost/params?member_id=1", timeout=5).status_code == 404
