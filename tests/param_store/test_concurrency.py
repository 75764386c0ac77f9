"""Concurrency against a real server, with separate processes: publishers and readers, increments, a killed publisher."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from typing import Any

from param_store import ParamStore, VersionConflictError
from param_store.embedded import EmbeddedRedis
from tests.factories import make_distribution, make_spec

WRITERS = 8
READERS = 8
PUBLISHES_PER_WRITER = 15
#: Spreads the publishes over about a second, inside the readers' window however fast the machine is.
PUBLISH_PAUSE_S = 0.04
#: Readers stop when the writers are done; this only bounds a run whose writers hang.
READ_SECONDS_MAX = 120.0
INCREMENTERS = 8
INCREMENTS_EACH = 200

CTX = mp.get_context("spawn")  # fresh interpreters: nothing shared but the server


def _store(socket_path: str, namespace: str) -> ParamStore:
    import redis

    return ParamStore(redis.Redis(unix_socket_path=socket_path), namespace=namespace)


def _writer(socket_path: str, namespace: str, seed: int) -> None:
    store = _store(socket_path, namespace)
    spec = store.load_spec("feed")
    for i in range(PUBLISHES_PER_WRITER):
        time.sleep(PUBLISH_PAUSE_S)
        version = store.next_version("feed")
        share = 0.1 + 0.8 * ((seed * 31 + i) % 10) / 10  # content differs per publish
        dist = make_distribution(spec, version, weights=[0.2, share * 0.8, 0.8 - share * 0.8])
        store.write_version(dist)
        try:
            store.activate("feed", version)
        except VersionConflictError:
            pass  # another writer activated a newer version first: ours stays in the archive only


def _reader(socket_path: str, namespace: str, stop: Any, out: mp.Queue) -> None:
    store = _store(socket_path, namespace)
    spec = store.load_spec("feed")
    seen, problems = [], []
    seen.append(store.current("feed").version)
    out.put(("ready", None, None))
    deadline = time.monotonic() + READ_SECONDS_MAX
    while not stop.is_set() and time.monotonic() < deadline:
        dist = store.current("feed")  # parses and validates the whole record
        problems += dist.problems(spec)
        seen.append(dist.version)
    out.put(("done", seen, problems))


def test_concurrent_publishers_and_readers_see_whole_versions_in_order(redis_server: EmbeddedRedis, store: ParamStore) -> None:
    spec = make_spec()
    store.create_experiment(spec)
    store.publish(make_distribution(spec, store.next_version("feed")))
    queue: mp.Queue = CTX.Queue()
    sock, ns = str(redis_server.socket_path), store.namespace
    stop = CTX.Event()  # readers read until every writer is done, however slowly the writers start
    readers = [CTX.Process(target=_reader, args=(sock, ns, stop, queue)) for _ in range(READERS)]
    writers = [CTX.Process(target=_writer, args=(sock, ns, s)) for s in range(WRITERS)]
    for p in readers:
        p.start()
    assert all(queue.get(timeout=60)[0] == "ready" for _ in readers)  # writers start once every reader reads
    for p in writers:
        p.start()
    for p in writers:
        p.join(120)
        assert p.exitcode == 0
    stop.set()
    results = [queue.get(timeout=60)[1:] for _ in readers]  # drain before joining, or a reader blocks on exit
    for p in readers:
        p.join(60)
        assert p.exitcode == 0
    final = store.current_version("feed")
    for seen, problems in results:
        assert problems == []
        assert all(a <= b for a, b in zip(seen, seen[1:], strict=False)), "a reader saw the version go backwards"
        assert len(seen) > 10
    history = [v for v, _ in store.history("feed")]
    assert history == sorted(history) and len(set(history)) == len(history)
    assert final == history[-1] and final <= 1 + WRITERS * PUBLISHES_PER_WRITER
    assert any(len(set(seen)) > 1 for seen, _ in results), "readers never overlapped a publish"


def _incrementer(socket_path: str, namespace: str) -> None:
    store = _store(socket_path, namespace)
    for _ in range(INCREMENTS_EACH):
        store.add_observations("feed", [
            {"version": 1, "arm_id": "arm1", "metric": "sessions", "count": 3, "sum": 2, "sum_sq": 2},
            {"version": 1, "arm_id": "control", "metric": "applies", "value": 1.0},
        ])


def test_concurrent_increments_sum_exactly(redis_server: EmbeddedRedis, store: ParamStore) -> None:
    spec = make_spec()
    store.create_experiment(spec)
    store.publish(make_distribution(spec, store.next_version("feed")))
    procs = [CTX.Process(target=_incrementer, args=(str(redis_server.socket_path), store.namespace)) for _ in range(INCREMENTERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    frame = store.observations("feed").set_index(["arm_id", "metric"])
    n = INCREMENTERS * INCREMENTS_EACH
    assert tuple(frame.loc[("arm1", "sessions"), ["count", "sum", "sum_sq"]]) == (3.0 * n, 2.0 * n, 2.0 * n)
    assert tuple(frame.loc[("control", "applies"), ["count", "sum", "sum_sq"]]) == (1.0 * n, 1.0 * n, 1.0 * n)


def _publisher_killed_before_activate(socket_path: str, namespace: str) -> None:
    store = _store(socket_path, namespace)
    spec = store.load_spec("feed")
    store.write_version(make_distribution(spec, store.next_version("feed"), weights=[0.3, 0.3, 0.4]))
    os.kill(os.getpid(), signal.SIGKILL)  # dies between writing the version and moving the pointer


def test_publisher_killed_between_write_and_activate_leaves_current(redis_server: EmbeddedRedis, store: ParamStore) -> None:
    spec = make_spec()
    store.create_experiment(spec)
    v1 = store.publish(make_distribution(spec, store.next_version("feed")))
    proc = CTX.Process(target=_publisher_killed_before_activate, args=(str(redis_server.socket_path), store.namespace))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    assert store.current("feed") == v1
    assert [v for v, _ in store.history("feed")] == [1]
    # the orphan stays unreferenced; the next publisher gets a fresh number and moves on
    v3 = store.publish(make_distribution(spec, store.next_version("feed")))
    assert v3.version == 3 and store.current_version("feed") == 3
