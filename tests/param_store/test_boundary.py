"""The store's closed boundary on a real server: lost servers, ping/close, leases, and the reads callers need."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from param_store import (
    DEFAULT_NAMESPACE,
    EmbeddedRedis,
    ExperimentState,
    Keys,
    ParamStore,
    StoreError,
    StoreUnavailableError,
)
from param_store.connection import RETRY, SOCKET_TIMEOUT_S
from tests.factories import make_distribution, make_spec

#: Short enough that the tests are quick, long enough that three heartbeats fit on a loaded 2-core machine.
LEASE_TTL_S = 1.0
#: A client timeout for a server that stops answering, far below the production one.
SHORT_TIMEOUT_S = 0.3
#: How long a closed connection may take to leave the server's client list.
DISCONNECT_WAIT_S = 5.0
POLL_S = 0.02


@pytest.fixture(autouse=True)
def no_heartbeat_outlives_its_test():
    """A lease left running would keep renewing its lock (and talking to Redis) for the rest of the session."""
    yield
    assert not [t.name for t in threading.enumerate() if t.name.startswith("lease:")]


@pytest.fixture
def private_server():
    """A redis-server of this test alone, which the test may stop or freeze."""
    server = EmbeddedRedis().start()
    yield server
    server.stop()


def test_from_url_uses_the_client_settings_of_make_client() -> None:
    store = ParamStore.from_url("unix:///nonexistent/redis.sock")
    kwargs = store._redis.connection_pool.connection_kwargs  # this package's own test may look inside
    assert store._redis.get_retry() is RETRY and kwargs["socket_timeout"] == SOCKET_TIMEOUT_S
    assert store.namespace == DEFAULT_NAMESPACE == Keys().namespace == "bo"


def test_a_stopped_server_raises_store_unavailable(private_server: EmbeddedRedis) -> None:
    store = ParamStore.from_url(private_server.url, namespace="gone")
    store.create_experiment(make_spec())
    lease = store.lease("feed", "refit", ttl_s=LEASE_TTL_S)
    assert store.ping()
    private_server.stop()

    with pytest.raises(StoreUnavailableError, match=r"the Redis store is unavailable \(ConnectionError: ") as err:
        store.load_spec("feed")
    assert isinstance(err.value, ConnectionError) and isinstance(err.value, StoreError)
    assert isinstance(err.value.__cause__, redis.ConnectionError)
    with pytest.raises(StoreUnavailableError):
        store.publish(make_distribution(make_spec(), 1))  # nested store calls translate once
    with pytest.raises(StoreUnavailableError):
        lease.acquire()
    assert store.ping() is False


def test_a_server_that_stops_answering_times_out_as_unavailable(private_server: EmbeddedRedis) -> None:
    client = private_server.client(socket_timeout=SHORT_TIMEOUT_S, retry=Retry(NoBackoff(), retries=0))
    store = ParamStore(client, namespace="frozen")
    store.create_experiment(make_spec())
    pid = int(client.info("server")["process_id"])
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailableError) as err:
            store.state("feed")
        assert isinstance(err.value.__cause__, redis.TimeoutError)
    finally:
        os.kill(pid, signal.SIGCONT)


def _connections_named(client: redis.Redis, name: str) -> int:
    return sum(1 for c in client.client_list() if c.get("name") == name)


def test_ping_and_close(redis_server: EmbeddedRedis, raw_redis: redis.Redis, namespace: str) -> None:
    name = f"close-{namespace}"
    store = ParamStore(redis_server.client(client_name=name), namespace=namespace)
    assert store.ping() is True
    assert _connections_named(raw_redis, name) == 1
    store.close()
    deadline = time.monotonic() + DISCONNECT_WAIT_S
    while _connections_named(raw_redis, name) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert _connections_named(raw_redis, name) == 0

    with ParamStore(redis_server.client(client_name=name), namespace=namespace) as scoped:
        assert scoped.ping() and _connections_named(raw_redis, name) == 1
    deadline = time.monotonic() + DISCONNECT_WAIT_S
    while _connections_named(raw_redis, name) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert _connections_named(raw_redis, name) == 0


def test_namespace_is_read_only(store: ParamStore, namespace: str) -> None:
    assert store.namespace == namespace
    with pytest.raises(AttributeError):
        store.namespace = "other"  # type: ignore[misc]


def test_a_held_lease_outlives_its_ttl_and_excludes_others(store: ParamStore, raw_redis: redis.Redis, raw_keys: Keys) -> None:
    key = raw_keys.lock("feed", "refit:1")
    first = store.lease("feed", "refit:1", ttl_s=LEASE_TTL_S)
    assert first.acquire()
    time.sleep(2.5 * LEASE_TTL_S)  # the heartbeat keeps renewing it
    assert raw_redis.pttl(key) > 0
    assert not store.lease("feed", "refit:1", ttl_s=LEASE_TTL_S).acquire()
    other = store.lease("feed", "refit:2", ttl_s=LEASE_TTL_S)
    assert other.acquire() and other.release()  # another purpose, another lock
    assert first.still_held()
    assert first.release() and not raw_redis.exists(key)
    assert first.still_held() is False
    later = store.lease("feed", "refit:1", ttl_s=LEASE_TTL_S)
    assert later.acquire() and later.release()


def test_a_lost_lease_says_so_and_leaves_the_new_holder_alone(store: ParamStore, raw_redis: redis.Redis, raw_keys: Keys) -> None:
    key = raw_keys.lock("feed", "refit")
    lease = store.lease("feed", "refit", ttl_s=LEASE_TTL_S)
    assert lease.acquire()
    raw_redis.set(key, "someone-else", px=30_000)  # as if ours expired during a stall and another run took it
    assert not lease.still_held()
    assert not lease.release()
    assert raw_redis.get(key) == b"someone-else"


def test_a_lease_releases_on_exit_and_is_used_once(store: ParamStore, raw_redis: redis.Redis, raw_keys: Keys) -> None:
    key = raw_keys.lock("feed", "refit")
    with store.lease("feed", "refit", ttl_s=LEASE_TTL_S) as lease:
        assert not lease.still_held()  # entering does not acquire
        assert lease.acquire() and raw_redis.exists(key)
    assert not raw_redis.exists(key)
    with pytest.raises(RuntimeError, match="acquired already"):
        lease.acquire()
    assert store.lease("feed", "refit", ttl_s=LEASE_TTL_S).release() is False  # never acquired: nothing to do
    with pytest.raises(ValueError, match="ttl_s"):
        store.lease("feed", "refit", ttl_s=0)


def test_states_and_specs_and_current_versions_in_one_read(store: ParamStore) -> None:
    spec = make_spec("feed")
    store.create_experiment(spec)
    store.create_experiment(make_spec("other"))
    store.publish(make_distribution(spec, store.next_version("feed")))
    got = store.states_and_specs(["feed", "missing", "other", "feed"])
    assert list(got) == ["feed", "missing", "other"]
    assert got["feed"] == (ExperimentState.DRAFT, spec) and got["missing"] is None
    assert got["other"][1].name == "other"
    assert store.current_versions(["feed", "other", "missing"]) == {"feed": 1, "other": None, "missing": None}
    assert store.states_and_specs([]) == {} and store.current_versions([]) == {}


def test_clear_model_state(store: ParamStore) -> None:
    spec = make_spec("feed")
    store.create_experiment(spec)
    store.save_model_state("feed", 1, {"lengthscale": [1.0]})
    assert store.load_model_state("feed")["version"] == 1
    assert store.clear_model_state("feed", "never-fitted") == 1
    assert store.load_model_state("feed") is None
    assert store.clear_model_state() == 0
