"""A serving app whose Redis goes away: cached reads keep working, writes answer 503 ``store_unavailable``."""

from __future__ import annotations

import requests

from param_store import EmbeddedRedis, ParamStore
from tests.factories import make_rows
from tests.serving.conftest import launch

HTTP_TIMEOUT_S = 30


def test_a_lost_store_is_503_store_unavailable_and_not_ready(serve, namespace: str) -> None:
    server = EmbeddedRedis().start()  # this test's own server, which it stops
    try:
        with ParamStore.from_url(server.url, namespace=namespace) as store:
            launch(store, "feed")
        live = serve(redis_url=server.url)
        params = f"{live.base_url}/v1/experiments/feed/params"
        assert requests.get(params, params={"member_id": "1"}, timeout=HTTP_TIMEOUT_S).status_code == 200
    finally:
        server.stop()

    assert requests.get(params, params={"member_id": "1"}, timeout=HTTP_TIMEOUT_S).status_code == 200  # from memory
    posted = requests.post(f"{live.base_url}/v1/experiments/feed/observations",
                           json={"rows": make_rows(1, "control", "sessions")}, timeout=HTTP_TIMEOUT_S)
    assert posted.status_code == 503
    error = posted.json()["error"]
    assert error["code"] == "store_unavailable" and "the Redis store is unavailable" in error["message"]
    ready = requests.get(f"{live.base_url}/v1/ready", timeout=HTTP_TIMEOUT_S)
    assert ready.status_code == 503 and ready.json()["checks"]["redis"] is False
