"""Who may write (the token matrix over every write the OpenAPI document lists) and bad input over real HTTP:
deep JSON, truncated, oversized and chunked bodies get 4xx, never a 5xx or a truncated body processed."""

from __future__ import annotations

import http.client
import logging
import socket

import pytest
import requests

from param_store import ParamStore
from serving.openapi import openapi_document
from tests.factories import make_rows, spec_dict
from tests.serving.conftest import launch

ADMIN, INGEST = "admin-secret-token", "ingest-secret-token"
BEARER = {"admin": {"Authorization": f"Bearer {ADMIN}"}, "ingest": {"Authorization": f"Bearer {INGEST}"}}
#: A body the route would accept (so that only the token decides), by (method, path template).
BODIES = {
    ("post", "/v1/experiments"): spec_dict("ads"),
    ("post", "/v1/experiments/{name}/rollback"): {"version": 1},
    ("post", "/v1/experiments/{name}/observations"): {"rows": make_rows(1, "control", "sessions")},
}
DEEP = b"[" * 100_000 + b"]" * 100_000
SMALL_LIMIT = 4096


def writes(live) -> list[tuple[str, str, str]]:
    """(method, path template, scope) of every operation the served OpenAPI document marks as needing a token."""
    doc = openapi_document(live.ctx.config)
    out = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for requirement in op.get("security", []):
                out.append((method, path, next(iter(requirement)).removesuffix("Token")))
    return sorted(out)


def test_every_write_refuses_a_missing_wrong_or_wrongly_scoped_token(store: ParamStore, serve, caplog) -> None:
    launch(store, "feed")
    live = serve(admin_token=ADMIN, ingest_token=INGEST)
    table = writes(live)
    unguarded = {(m, p) for p, ops in openapi_document(live.ctx.config)["paths"].items() for m in ops
                 if m != "get"} - {(m, p) for m, p, _ in table}
    assert unguarded == {("post", "/v1/experiments/{name}/params/batch")}, "a write without a scope"
    assert {scope for *_, scope in table} == {"admin", "ingest"} and len(table) >= 7
    for method, path, scope in table:
        url = live.base_url + path.replace("{name}", "feed")
        body = BODIES.get((method, path))
        other = "ingest" if scope == "admin" else "admin"
        for headers, status in (({}, 401), ({"Authorization": "Bearer nope"}, 401),
                                ({"Authorization": ADMIN}, 401), (BEARER[other], 403)):
            r = requests.request(method, url, json=body, headers=headers, timeout=10)
            assert r.status_code == status, (method, path, headers, r.text)
            assert r.json()["error"]["code"] == ("forbidden" if status == 403 else "unauthorized")
    assert store.state("feed").value == "running" and store.current_version("feed") == 1
    assert store.observations("feed").empty and store.list_experiments() == ["feed"]
    with caplog.at_level(logging.INFO, logger="bayesopt.audit"):
        r = requests.post(f"{live.base_url}/v1/experiments/feed/pause", headers=BEARER["admin"], timeout=10)
        assert r.status_code == 200
        r = requests.post(f"{live.base_url}/v1/experiments/feed/observations", headers=BEARER["ingest"],
                          json=BODIES[("post", "/v1/experiments/{name}/observations")], timeout=10)
        assert r.status_code == 201
    audit = [rec.getMessage() for rec in caplog.records if rec.name == "bayesopt.audit"]
    assert len(audit) == 1 and "who=admin what=POST /v1/experiments/feed/pause" in audit[0] and "result=200" in audit[0]


def test_a_scope_without_its_own_token_is_closed_once_any_token_is_set(store: ParamStore, serve) -> None:
    launch(store, "feed")
    live = serve(admin_token=ADMIN)
    r = requests.post(f"{live.base_url}/v1/experiments/feed/observations", json={"rows": make_rows(1, "control", "sessions")},
                      headers=BEARER["admin"], timeout=10)
    assert r.status_code == 403
    r = requests.post(f"{live.base_url}/v1/experiments/feed/observations", json={"rows": make_rows(1, "control", "sessions")},
                      timeout=10)
    assert r.status_code == 401 and "BAYESOPT_INGEST_TOKEN" in r.json()["error"]["message"]


def test_a_retried_batch_over_http_is_stored_once(store: ParamStore, live) -> None:
    launch(store, "feed")
    url = f"{live.base_url}/v1/experiments/feed/observations"
    body = {"rows": make_rows(1, "control", "sessions", count=10, total=3.0)}
    first = requests.post(url, json=body, headers={"Idempotency-Key": "k1"}, timeout=10)
    again = requests.post(url, json={**body, "batch_id": "k1"}, timeout=10)
    assert (first.status_code, again.status_code) == (201, 200) and again.json()["duplicate"] is True
    assert store.observations("feed")["count"].sum() == 10.0
    clash = requests.post(url, json={**body, "batch_id": "k2"}, headers={"Idempotency-Key": "k1"}, timeout=10)
    assert clash.status_code == 422 and "differs from the Idempotency-Key header" in clash.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/experiments", "/v1/experiments/feed/params/batch", "/v1/experiments/feed/observations"])
def test_json_nested_100000_deep_is_a_400(store: ParamStore, live, path: str) -> None:
    launch(store, "feed")
    r = requests.post(live.base_url + path, data=DEEP, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text[:300]


def test_oversized_bodies_are_413_with_a_length_and_when_chunked(store: ParamStore, serve) -> None:
    launch(store, "feed")
    live = serve(max_body_bytes=SMALL_LIMIT)
    rows = {"rows": make_rows(1, "control", "sessions") * 200}
    url = f"{live.base_url}/v1/experiments/feed/observations"
    assert requests.post(url, json=rows, timeout=10).status_code == 413
    payload = requests.models.complexjson.dumps(rows).encode()
    chunks = (payload[i : i + 1000] for i in range(0, len(payload), 1000))  # a generator: requests sends it chunked
    r = requests.post(url, data=chunks, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413, r.text[:300]
    assert store.observations("feed").empty, "an oversized chunked body must be refused, not truncated and stored"
    small = requests.models.complexjson.dumps({"rows": make_rows(1, "control", "sessions")}).encode()
    r = requests.post(url, data=iter([small[:10], small[10:]]), headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 201 and store.observations("feed")["count"].sum() == 10.0


def test_a_truncated_body_is_a_400_and_stores_nothing(store: ParamStore, live) -> None:
    launch(store, "feed")
    host, port = live.base_url.removeprefix("http://").split(":")
    body = requests.models.complexjson.dumps({"rows": make_rows(1, "control", "sessions")}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/experiments/feed/observations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body) + 50}\r\n\r\n".encode() + body)
        s.shutdown(socket.SHUT_WR)  # the client goes away 50 bytes short
        response = http.client.HTTPResponse(s)
        response.begin()
        assert response.status == 400, response.read()[:300]
    assert store.observations("feed").empty
