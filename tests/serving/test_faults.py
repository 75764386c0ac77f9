"""Faults on real processes: ``bayesopt serve --workers 2`` under steady load while its redis-server is killed
and restarted, hung (SIGSTOP) past the client timeouts, restarted empty, and while slow clients hold connections.

Every parameter request must succeed throughout, and every acknowledged observation batch must be in the store
exactly once afterwards (the ingest thread retries each batch under one idempotency key until acknowledged).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from param_store import EmbeddedRedis, ParamStore
from tests.serving.conftest import launch
from tests.serving.procs import start_serve, stop, wait_ready

#: Longer than serving's Redis timeouts (1 s read, 0.5 s connect, one retry), so requests that touched Redis would fail.
HANG_S = 4.0
#: The refresher must mark responses stale within this long of a hang starting (timeouts plus a poll, loaded CPU).
NOTICE_S = 20.0
OUTAGE_S = 2.0
RECOVER_S = 2.0
LOAD_THREADS = 2
HTTP_TIMEOUT_S = 10.0


@dataclass
class Load:
    """Parameter readers and one observation writer against ``url`` until stopped."""

    url: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stale: int = 0
    acknowledged: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        self._threads = [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(LOAD_THREADS)]
        self._threads.append(threading.Thread(target=self._ingest, daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _read(self, i: int) -> None:
        session = requests.Session()  # keep-alive, as rankers do
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                r = session.get(f"{self.url}/v1/experiments/feed/params", params={"member_id": f"{i}-{n}"}, timeout=HTTP_TIMEOUT_S)
                if r.status_code == 200 and r.json()["experiment"] == "feed":
                    self.ok += 1
                    self.stale += "Bayesopt-Stale" in r.headers
                else:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
            except requests.RequestException as exc:
                self.failures.append(repr(exc))

    def _ingest(self) -> None:
        session = requests.Session()
        row = {"version": 1, "arm_id": "control", "metric": "sessions", "value": 1.0}
        while not self._stop.is_set():
            key = uuid.uuid4().hex
            while not self._stop.is_set():  # the same batch, under the same key, until the server acknowledges it
                try:
                    r = session.post(f"{self.url}/v1/experiments/feed/observations", json={"rows": [row]},
                                     headers={"Idempotency-Key": key}, timeout=HTTP_TIMEOUT_S)
                    if r.status_code in (200, 201):
                        self.acknowledged += 1
                        break
                    if r.status_code != 503:
                        self.failures.append(f"observations: {r.status_code} {r.text[:200]}")
                except requests.RequestException:
                    pass
                time.sleep(0.1)
            time.sleep(0.05)


@dataclass
class Rig:
    url: str
    redis_dir: Path
    namespace: str
    redis: EmbeddedRedis

    def restart_redis(self, *, empty: bool = False) -> None:
        """SIGKILL the server, wait, start a new one on the same directory (its append-only file, or nothing)."""
        pid = self.redis.pid
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        time.sleep(OUTAGE_S)
        if empty:
            for name in ("appendonlydir", "appendonly.aof", "dump.rdb"):
                shutil.rmtree(self.redis_dir / name, ignore_errors=True)
                (self.redis_dir / name).unlink(missing_ok=True)
        self.redis = EmbeddedRedis(self.redis_dir, persist=True).start()
        assert self.redis.fresh is empty

    def store(self) -> ParamStore:
        return ParamStore.from_url(self.redis.url, namespace=self.namespace)

    def stored_count(self) -> float:
        with self.store() as store:
            frame = store.observations("feed")
        return float(frame["count"].sum())


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("faults")
    redis_dir = tmp / "redis"
    redis = EmbeddedRedis(redis_dir, persist=True).start()
    namespace = "faults" + uuid.uuid4().hex[:8]
    with ParamStore.from_url(redis.url, namespace=namespace) as store:
        launch(store, "feed", [0.2, 0.1, 0.3, 0.15, 0.25], created_at=time.time() - 60)
    proc, url = start_serve(redis.url, namespace, 2, tmp, stderr=None)
    rig = Rig(url, redis_dir, namespace, redis)
    try:
        wait_ready(proc, url)
        yield rig
    finally:
        stop(proc)
        rig.redis.stop()


def run_through(rig: Rig, fault, load: Load | None = None) -> Load:
    load = (load or Load(rig.url)).start()
    time.sleep(1.0)
    fault()
    time.sleep(RECOVER_S)
    load.stop()
    return load


def test_redis_killed_and_restarted_under_load_costs_no_request_and_no_acknowledged_row(rig: Rig) -> None:
    before = rig.stored_count()
    load = run_through(rig, rig.restart_redis)
    assert load.failures == [] and load.ok > 100, (load.ok, load.failures[:5])
    assert load.acknowledged > 5
    assert rig.stored_count() == before + load.acknowledged  # all present, none twice


def test_redis_hung_past_the_client_timeouts_costs_no_request_and_no_acknowledged_row(rig: Rig) -> None:
    before = rig.stored_count()

    def hang() -> None:  # at least HANG_S, and until the service has noticed (bounded: it must notice)
        os.kill(rig.redis.pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            while time.monotonic() - started < HANG_S or (load.stale == 0 and time.monotonic() - started < NOTICE_S):
                time.sleep(0.1)
        finally:
            os.kill(rig.redis.pid, signal.SIGCONT)

    load = Load(rig.url)
    run_through(rig, hang, load)
    assert load.failures == [] and load.ok > 100, (load.ok, load.failures[:5])
    assert load.stale > 0, f"requests during a {NOTICE_S:.0f} s hang were never marked stale"
    assert rig.stored_count() == before + load.acknowledged


def test_two_slow_clients_do_not_starve_the_workers(rig: Rig) -> None:
    host, port = rig.url.removeprefix("http://").split(":")
    slow = []
    for _ in range(2):  # a body promised and never finished, and a connection that never sends a byte
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /v1/experiments/feed/observations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"row")
        slow.append(s)
        slow.append(socket.create_connection((host, int(port))))
    try:
        load = run_through(rig, lambda: time.sleep(3.0))
    finally:
        for s in slow:
            s.close()
    assert load.failures == [] and load.ok > 100, (load.ok, load.failures[:5])


def test_a_restart_that_comes_back_empty_keeps_serving_and_raises_an_alarm(rig: Rig) -> None:
    before = requests.get(f"{rig.url}/v1/experiments/feed/params", params={"member_id": "7"}, timeout=HTTP_TIMEOUT_S).json()
    load = run_through(rig, lambda: rig.restart_redis(empty=True))
    assert load.failures == [] and load.ok > 100, (load.ok, load.failures[:5])
    deadline = time.monotonic() + 10
    while True:  # both workers' refreshers (every 0.5 s) must have seen the empty store
        ready = requests.get(f"{rig.url}/v1/ready", timeout=HTTP_TIMEOUT_S)
        r = requests.get(f"{rig.url}/v1/experiments/feed/params", params={"member_id": "7"}, timeout=HTTP_TIMEOUT_S)
        if ready.json()["alarms"] and r.headers.get("Bayesopt-Stale", "").startswith("missing_from_store"):
            break
        assert time.monotonic() < deadline, (ready.json(), dict(r.headers))
        time.sleep(0.2)
    assert r.status_code == 200 and r.json() == before, "the held distribution is still served"
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["alarms"] == [{"experiment": "feed", "reason": "missing_from_store"}]
    metrics = requests.get(f"{rig.url}/metrics", timeout=HTTP_TIMEOUT_S).text
    assert 'bayesopt_cache_alarm{experiment="feed",reason="missing_from_store"} 1.0' in metrics
