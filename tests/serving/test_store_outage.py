"""A serving app whose Redis goes away: parameters keep coming from memory (marked stale), writes answer 503
``store_unavailable`` without naming the server, and readiness stays 200 with the store as a detail."""

from __future__ import annotations

import time

import requests

from param_store import EmbeddedRedis, ParamStore
from tests.factories import make_rows
from tests.serving.conftest import TEST_POLL_INTERVAL_S, launch

HTTP_TIMEOUT_S = 30


def test_a_lost_store_keeps_params_marks_them_stale_and_503s_writes_without_internals(serve, namespace: str) -> None:
    server = EmbeddedRedis().start()  # this test's own server, which it stops
    try:
        with ParamStore.from_url(server.url, namespace=namespace) as store:
            launch(store, "feed")
        live = serve(redis_url=server.url)
        params = f"{live.base_url}/v1/experiments/feed/params"
        fresh = requests.get(params, params={"member_id": "1"}, timeout=HTTP_TIMEOUT_S)
        assert fresh.status_code == 200 and "Bayesopt-Stale" not in fresh.headers
    finally:
        server.stop()

    deadline = time.monotonic() + 10 * TEST_POLL_INTERVAL_S + 5
    while (r := requests.get(params, params={"member_id": "1"}, timeout=HTTP_TIMEOUT_S)).headers.get("Bayesopt-Stale") is None:
        assert r.status_code == 200 and time.monotonic() < deadline, "the refresher never noticed the lost store"
        time.sleep(0.05)
    assert r.status_code == 200 and r.json() == fresh.json()  # the same answer, from memory
    assert r.headers["Bayesopt-Stale"].startswith("store_unavailable; age=")
    posted = requests.post(f"{live.base_url}/v1/experiments/feed/observations",
                           json={"rows": make_rows(1, "control", "sessions")}, timeout=HTTP_TIMEOUT_S)
    assert posted.status_code == 503
    error = posted.json()["error"]
    assert error == {"code": "store_unavailable", "message": "the parameter store is unavailable; retry later",
                     "problems": ["the parameter store is unavailable; retry later"]}
    assert str(server.state_dir) not in posted.text and "redis.sock" not in posted.text
    ready = requests.get(f"{live.base_url}/v1/ready", timeout=HTTP_TIMEOUT_S)
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded" and ready.json()["store"]["state"] == "unreachable"
    assert requests.get(f"{live.base_url}/v1/health", timeout=HTTP_TIMEOUT_S).json() == {"status": "ok"}
    unknown = requests.get(f"{live.base_url}/v1/experiments/other/params", params={"member_id": "1"}, timeout=HTTP_TIMEOUT_S)
    assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "store_unavailable"
