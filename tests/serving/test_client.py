"""The Python client: local draws equal the server's, retries follow the policy, admin calls round-trip."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from param_store import ParamStore
from serving import RetryPolicy, ServingClient, ServingHTTPError, ServingUnavailableClientError
from tests.factories import make_rows, spec_dict
from tests.serving.conftest import launch, member_ids, publish

T0 = 1_700_000_000.0
FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.01)


def agree(live, name: str, ids: list[str], times: list[float]) -> int:
    """Compare local and server answers for every id at every time; return how many were compared."""
    client = live.client()
    local = client.local(name, refresh_s=0)
    compared = 0
    for at in times:
        served = client.params_batch(name, ids, at=at)
        assert local.assign_many(ids, at=at) == served
        for member in ids[:50]:
            assert local.assign(member, at=at) == client.params(name, member, at=at)
        compared += len(ids)
    return compared


def test_local_draws_equal_the_servers_in_epoch_mode(store: ParamStore, live) -> None:
    launch(store, "feed", [0.2, 0.1, 0.3, 0.15, 0.25], created_at=T0, traffic={"experiment_share": 0.5, "control_share": 0.2})
    publish(store, "feed", [0.3, 0.7], created_at=T0 + 3600)
    times = [T0 + 1, T0 + 3599.5, T0 + 3600, T0 + 7300, time.time()]
    assert agree(live, "feed", member_ids(3000, "e"), times) == 15_000


def test_local_draws_equal_the_servers_in_coupled_mode(store: ParamStore, serve) -> None:
    launch(store, "feed", [0.2, 0.3, 0.5], created_at=T0)
    for i, weights in enumerate([[0.3, 0.3, 0.2, 0.2], [0.25, 0.05, 0.7], [0.4, 0.6]], start=1):
        publish(store, "feed", weights, created_at=T0 + 3600 * i)
    live = serve(modes={"feed": "coupled"}, coupling_horizon=3)
    times = [T0 + 1 + 3600 * i for i in range(4)]
    assert agree(live, "feed", member_ids(3000, "c"), times) == 12_000


def test_local_assigner_follows_new_versions_and_keeps_its_snapshot_when_the_server_is_gone(store: ParamStore, live) -> None:
    launch(store, "feed", created_at=T0)
    client = live.client(retry=RetryPolicy(attempts=1))
    local = client.local("feed", refresh_s=0)
    assert local.assign("m1").version == 1
    snapshot, etag = client.snapshot("feed")
    assert client.snapshot("feed", etag=etag) == (None, etag)  # unchanged: a 304, no body
    publish(store, "feed", [0.5, 0.5], created_at=time.time() - 1)
    deadline = time.monotonic() + 3
    while local.assign("m1").version != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert local.assign("m1").version == 2
    client.base_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there any more
    assert local.assign("m1").version == 2


def test_client_admin_and_observation_calls_round_trip(store: ParamStore, live) -> None:
    client = live.client()
    assert client.launch(spec_dict("ads"))["version"] == 1
    assert [e["name"] for e in client.experiments()] == ["ads"]
    assert client.distribution("ads")["version"] == 1
    assert client.post_observations("ads", make_rows(1, "control", "sessions")) == 1
    assert client.pause("ads") == "paused" and client.resume("ads") == "running"
    assert client.rollback("ads", 1) == 2
    assert client.status("ads")["current_version"] == 2
    assert client.end("ads") == "ended"
    assert client.ready()
    with pytest.raises(ServingHTTPError) as info:
        client.post_observations("ads", make_rows(1, "arm404", "sessions"))
    assert info.value.status == 422 and info.value.code == "observations_rejected"
    assert any("arm404" in p for p in info.value.problems)


# -- retries against a deliberately flaky server -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def flaky() -> Iterator[tuple[str, dict[str, int]]]:
    """A server whose params endpoint fails twice with 503, whose observations and launch endpoints always 503."""
    hits: dict[str, Any] = {"params": 0, "observations": 0, "bad": 0, "launch": 0, "keys": set()}
    app = Flask("flaky")

    @app.get("/v1/experiments/<name>/params")
    def params(name: str):
        hits["params"] += 1
        if hits["params"] <= 2:
            return jsonify(error={"code": "unavailable", "message": "warming up", "problems": []}), 503
        return jsonify(experiment=name, member_id="1", version=1, arm_id="control", values={}, propensity=1.0,
                       in_experiment=False, on_control=True)

    @app.post("/v1/experiments/<name>/observations")
    def observations(name: str):
        hits["observations"] += 1
        hits["keys"].add(request.headers.get("Idempotency-Key"))
        return jsonify(error={"code": "store_unavailable", "message": "redis down", "problems": []}), 503

    @app.post("/v1/experiments")
    def launch():
        hits["launch"] += 1
        return jsonify(error={"code": "store_unavailable", "message": "redis down", "problems": []}), 503

    @app.post("/v1/experiments/<name>/params/batch")
    def bad(name: str):
        hits["bad"] += 1
        return jsonify(error={"code": "bad_request", "message": "member_ids: nope", "problems": ["member_ids: nope"]}), 400

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", hits
    server.shutdown()
    thread.join(5)


def test_reads_are_retried_on_5xx(flaky) -> None:
    url, hits = flaky
    assert ServingClient(url, retry=FAST_RETRY).params("feed", 1).arm_id == "control"
    assert hits["params"] == 3


def test_observation_batches_are_retried_under_one_idempotency_key_and_4xx_never(flaky) -> None:
    url, hits = flaky
    client = ServingClient(url, retry=FAST_RETRY)
    with pytest.raises(ServingUnavailableClientError, match="after 3 attempts"):
        client.post_observations("feed", make_rows(1, "control", "sessions"))
    assert hits["observations"] == FAST_RETRY.attempts and len(hits["keys"]) == 1 and None not in hits["keys"]
    with pytest.raises(ServingHTTPError) as info:  # launches (no idempotency key) are never retried once sent
        client.launch({"name": "x"})
    assert info.value.status == 503 and hits["launch"] == 1
    with pytest.raises(ServingHTTPError) as info:
        client.params_batch("feed", ["1"])
    assert info.value.code == "bad_request" and info.value.problems == ["member_ids: nope"] and hits["bad"] == 1


def test_retries_are_bounded_when_nothing_listens() -> None:
    client = ServingClient(f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(attempts=3, backoff_s=0.05))
    started = time.monotonic()
    with pytest.raises(ServingUnavailableClientError, match="after 3 attempts"):
        client.params("feed", "1")
    with pytest.raises(ServingUnavailableClientError, match="after 3 attempts"):  # refused: provably never sent
        client.post_observations("feed", make_rows(1, "control", "sessions"))
    assert time.monotonic() - started < 2.0
