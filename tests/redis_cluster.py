"""A real three-master Redis Cluster for the tests, from the same redis-server binary as the embedded store.

Three ``redis-server --cluster-enabled yes`` processes on free loopback ports, joined with ``CLUSTER MEET`` and
given a third of the 16,384 hash slots each with ``CLUSTER ADDSLOTS``; ready once every node reports
``cluster_state:ok``. No replicas: the contract under test is slot placement, not failover.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from param_store.embedded import find_redis_server

SLOTS = 16384
MASTERS = 3
READY_TIMEOUT_S = 30.0


def _free_port() -> int:
    """A loopback port whose cluster-bus port (port + 10000) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 < 65536:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


class RedisClusterProcesses:
    """``with RedisClusterProcesses() as cluster:`` -> ``cluster.url`` (``redis+cluster://127.0.0.1:PORT``)."""

    def __init__(self, masters: int = MASTERS) -> None:
        self.masters = masters
        self.dir = Path(tempfile.mkdtemp(prefix="bayesopt-cluster-"))
        self.ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def node(self, i: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.ports[i], socket_timeout=5)

    def start(self) -> RedisClusterProcesses:
        for _ in range(self.masters):
            port = _free_port()
            node_dir = self.dir / str(port)
            node_dir.mkdir()
            self._procs.append(subprocess.Popen(
                [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(node_dir / "nodes.conf"), "--dir", str(node_dir),
                 "--appendonly", "no", "--save", "", "--logfile", str(node_dir / "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            self.ports.append(port)
        self._wait(lambda: all(self._answers(i) for i in range(self.masters)), "nodes to start")
        per_node = SLOTS // self.masters
        for i in range(self.masters):
            first, last = i * per_node, SLOTS - 1 if i == self.masters - 1 else (i + 1) * per_node - 1
            self.node(i).execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
        for i in range(1, self.masters):
            self.node(0).execute_command("CLUSTER MEET", "127.0.0.1", self.ports[i])
        self._wait(lambda: all(self._cluster_ok(i) for i in range(self.masters)), "cluster_state:ok")
        return self

    def _answers(self, i: int) -> bool:
        try:
            return bool(self.node(i).ping())
        except redis.RedisError:
            return False

    def _cluster_ok(self, i: int) -> bool:
        info = self.node(i).execute_command("CLUSTER INFO")  # redis-py parses it into a dict
        return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == self.masters

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self._procs):
                raise RuntimeError(f"a cluster node exited; see the logs under {self.dir}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"the Redis Cluster did not come up ({what}) within {READY_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        for p in self._procs:
            p.terminate()
        for p in self._procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisClusterProcesses:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
