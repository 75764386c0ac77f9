"""Serving fixtures: the real app over real HTTP (werkzeug's server in a thread) against the session's Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from bayesopt.distribution import ParameterDistribution
from param_store import EmbeddedRedis, ParamStore
from serving import ServingClient, ServingConfig, create_app
from serving.http import EXTENSION_KEY, ServingContext
from tests.factories import make_distribution, make_spec

#: Short, so tests that change state without a publish see it quickly.
TEST_POLL_INTERVAL_S = 0.2


@dataclass
class LiveServer:
    app: Flask
    base_url: str

    @property
    def ctx(self) -> ServingContext:
        return self.app.extensions[EXTENSION_KEY]

    def client(self, **kwargs: Any) -> ServingClient:
        return ServingClient(self.base_url, **kwargs)


@pytest.fixture
def serve(redis_server: EmbeddedRedis, namespace: str) -> Iterator[Callable[..., LiveServer]]:
    """``serve(**config_overrides)`` starts an app on 127.0.0.1 (free port) and stops it after the test."""
    started: list[tuple[Any, threading.Thread, ServingContext]] = []

    def start(**overrides: Any) -> LiveServer:
        options = {"redis_url": redis_server.url, "namespace": namespace, "poll_interval_s": TEST_POLL_INTERVAL_S, **overrides}
        config = ServingConfig(**options)
        app = create_app(config)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((server, thread, app.extensions[EXTENSION_KEY]))
        return LiveServer(app, f"http://127.0.0.1:{server.server_port}")

    yield start
    for server, thread, ctx in started:
        server.shutdown()
        thread.join(timeout=5)
        ctx.close()


@pytest.fixture
def live(serve: Callable[..., LiveServer]) -> LiveServer:
    """One server with the default config."""
    return serve()


def launch(store: ParamStore, name: str = "feed", weights: list[float] | None = None, *, created_at: float = 1_700_000_000.0,
           **spec_overrides: Any) -> ParameterDistribution:
    """Store a spec running with version 1 (``weights``, control first) in one atomic step.

    Atomic because a live server's refresher polls every 0.2 s: a spec stored in steps (draft, publish, then
    running) could be caught as a draft and served as control to everyone, then reloaded as running between
    two requests of the same test.
    """
    spec = make_spec(name, **spec_overrides)
    dist = make_distribution(spec, 1, weights=weights, created_at=created_at)
    store.launch(spec, dist)
    return dist


def publish(store: ParamStore, name: str, weights: list[float], *, created_at: float) -> ParameterDistribution:
    """Publish a further version with ``weights`` valid from ``created_at``."""
    spec = store.load_spec(name)
    dist = make_distribution(spec, store.next_version(name), weights=weights, created_at=created_at)
    return store.publish(dist)


def assign_all(client: ServingClient, name: str, member_ids: list[str], *, at: float, chunk: int = 10_000) -> list[Any]:
    """Assignments of many members through the batch endpoint, ``chunk`` ids per request."""
    out: list[Any] = []
    for i in range(0, len(member_ids), chunk):
        out.extend(client.params_batch(name, member_ids[i : i + chunk], at=at))
    return out


def member_ids(n: int, prefix: str = "m") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]
