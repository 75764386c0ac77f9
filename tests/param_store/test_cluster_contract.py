"""The store's contract on a real three-master Redis Cluster: the ``{name}`` hash tags proven, not assumed.

Every test of ``test_store.py`` and ``test_atomic_writes.py`` (and the roll-up's store tests) runs again here on a cluster client (``REDIS_URL=redis+cluster://...``), and
the tests below spread experiments over all three masters: reads across experiments, the refit lease, pub/sub
announcements from any node, and a whole refit through the job on the cluster URL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from jobs.refit import RefitOptions, refit_experiment
from jobs.runs import Reason, RunStatus
from param_store import ParamStore, VersionWatcher, make_client
from tests.factories import make_distribution, make_spec
from tests.jobs import test_rollup
from tests.jobs.helpers import launch, observe
from tests.param_store import test_atomic_writes, test_store
from tests.redis_cluster import RedisClusterProcesses

# The single-server contract, collected again in this module, where `store` and `raw_redis` are the cluster's.
for _module in (test_store, test_atomic_writes):
    globals().update({name: fn for name, fn in vars(_module).items() if name.startswith("test_")})
# The roll-up's script moves rows between three keys of one experiment: its store-level tests run here too.
ROLL_UP_TESTS = ("test_pooling_after_a_roll_up_equals_pooling_every_row",
                 "test_a_second_roll_up_adds_to_the_first_and_a_late_batch_rebuilds_it",
                 "test_a_roll_up_changes_nothing_when_a_batch_landed_since_the_read")
globals().update({name: getattr(test_rollup, name) for name in ROLL_UP_TESTS})


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterProcesses]:
    with RedisClusterProcesses() as running:
        yield running


@pytest.fixture
def store(cluster: RedisClusterProcesses, namespace: str) -> Iterator[ParamStore]:
    with ParamStore(make_client(cluster.url), namespace=namespace) as opened:
        yield opened


@pytest.fixture
def raw_redis(cluster: RedisClusterProcesses) -> Iterator[RedisCluster]:
    client = make_client(cluster.url)
    yield client
    client.close()


def names_on_every_master(store: ParamStore, cluster: RedisClusterProcesses) -> list[str]:
    """One experiment name per master, found by asking the cluster where each name's keys would live."""
    client = make_client(cluster.url)
    by_node: dict[str, str] = {}
    for i in range(200):
        name = f"exp-{i}"
        node = client.get_node_from_key(f"{store.namespace}:{{{name}}}:spec")
        by_node.setdefault(node.name, name)
        if len(by_node) == cluster.masters:
            break
    client.close()
    assert len(by_node) == cluster.masters
    return sorted(by_node.values())


def test_the_client_is_a_cluster_client(store: ParamStore, raw_redis: RedisCluster) -> None:
    assert isinstance(raw_redis, RedisCluster) and len(raw_redis.get_primaries()) == 3


def test_reads_across_experiments_on_different_masters(store: ParamStore, cluster: RedisClusterProcesses) -> None:
    names = names_on_every_master(store, cluster)
    for i, name in enumerate(names):
        spec = make_spec(name)
        store.create_experiment(spec)
        for _ in range(i + 1):
            store.publish(make_distribution(spec, store.next_version(name)))
    assert store.list_experiments() == names
    assert store.current_versions([*names, "nobody"]) == {**{n: i + 1 for i, n in enumerate(names)}, "nobody": None}
    states = store.states_and_specs(names)
    assert [spec.name for _, spec in states.values()] == names
    assert store.clear_model_state(*names) == 0


def test_the_refit_lease_excludes_a_second_holder(store: ParamStore, cluster: RedisClusterProcesses) -> None:
    [name, *_] = names_on_every_master(store, cluster)
    store.create_experiment(make_spec(name))
    with store.lease(name, "refit:1", ttl_s=5.0) as first:
        assert first.acquire()
        with ParamStore(make_client(cluster.url), namespace=store.namespace) as other:
            with other.lease(name, "refit:1", ttl_s=5.0) as second:
                assert not second.acquire()


def test_announcements_reach_a_watcher_whichever_master_holds_the_experiment(
    store: ParamStore, cluster: RedisClusterProcesses
) -> None:
    names = names_on_every_master(store, cluster)
    heard: dict[str, int] = {}
    caught_up, all_heard = threading.Event(), threading.Event()

    def on_version(name: str, version: int) -> None:
        heard[name] = version
        if all(heard.get(n) == 1 for n in names):
            caught_up.set()
        if all(heard.get(n) == 2 for n in names):
            all_heard.set()

    for name in names:
        spec = make_spec(name)
        store.create_experiment(spec)
        store.publish(make_distribution(spec, store.next_version(name)))
    watcher = VersionWatcher(store, on_version, lambda: names, poll_interval_s=60.0).start()
    try:
        assert caught_up.wait(10), heard  # the catch-up poll runs once the subscription is up
        for name in names:
            store.publish(make_distribution(store.load_spec(name), store.next_version(name)))
        assert all_heard.wait(10), heard  # the poll interval is 60 s: pub/sub delivered every one
    finally:
        watcher.stop()


def test_a_refit_on_the_cluster_url_publishes_once_per_period(store: ParamStore, cluster: RedisClusterProcesses) -> None:
    launch(store, "feed")
    observe(store, "feed")
    options, due = RefitOptions(activation_delay_s=0.0, once_per_period=True), time.time()
    first = refit_experiment(cluster.url, store.namespace, "feed", policy="tests.jobs.helpers:StubPolicy",
                             options=options, period_time=due)
    again = refit_experiment(cluster.url, store.namespace, "feed", policy="tests.jobs.helpers:StubPolicy",
                             options=options, period_time=due)
    assert first.status is RunStatus.PUBLISHED and first.version == 2
    assert (again.status, again.reason) == (RunStatus.SKIPPED, Reason.DONE)
    assert store.current_version("feed") == 2 and store.runs("feed")[0]["version"] == 2
