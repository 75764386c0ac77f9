"""Across processes: ``bayesopt serve`` under gunicorn, and the no-torch import contract."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict

from param_store import EmbeddedRedis, ParamStore
from serving import ServingClient
from tests.serving.conftest import launch, member_ids
from tests.serving.procs import start_serve, stop, wait_ready

T0 = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_servers(redis_server: EmbeddedRedis, namespace: str, store: ParamStore, tmp_path: Path) -> Iterator[list[str]]:
    """Two ``bayesopt serve`` processes on the same store: two workers, then one."""
    launch(store, "feed", [0.2, 0.1, 0.3, 0.15, 0.25], created_at=T0)
    procs = [start_serve(redis_server.url, namespace, workers, tmp_path) for workers in (2, 1)]
    try:
        for proc, url in procs:
            wait_ready(proc, url)
        yield [url for _, url in procs]
    finally:
        for proc, _ in procs:
            stop(proc)


@pytest.mark.slow
def test_same_member_same_arm_from_separate_worker_processes(two_servers: list[str], tmp_path: Path) -> None:
    first, second = (ServingClient(url) for url in two_servers)
    ids = member_ids(5000, "p")
    at = T0 + 60
    assert first.params_batch("feed", ids, at=at) == second.params_batch("feed", ids, at=at)
    # Single requests over fresh connections, 8 at a time, so that both of the first server's workers accept some.
    def compare(member: str) -> bool:
        fresh = ServingClient(two_servers[0], session=requests.Session())
        try:
            return fresh.params("feed", member, at=at) == second.params("feed", member, at=at)
        finally:
            fresh.session.close()

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(compare, ids[:200]))
    deadline = time.monotonic() + 5  # each worker flushes its counts once per second
    while (total := params_total(two_servers[0])) < 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert total == 200, "metrics of both workers are aggregated"
    port = two_servers[0].rsplit(":", 1)[1]
    per_worker = [params_requests(path) for path in (tmp_path / f"metrics-{port}").glob("counter_*.db")]
    assert sorted(per_worker)[-2] > 0, f"both workers of the first server answered ({per_worker})"


def params_total(url: str) -> float:
    """Successful single-member requests in the /metrics of one server (all its workers)."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    prefix = 'bayesopt_http_requests_total{endpoint="api.params",method="GET",status="200"}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def params_requests(path: Path) -> float:
    """Successful single-member requests recorded in one worker's multiprocess metrics file."""
    return sum(
        value for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
        if "bayesopt_http_requests_total" in key and '"api.params"' in key and '"200"' in key
    )


def test_importing_serving_never_loads_torch() -> None:
    code = (
        "import sys, serving, serving.app, serving.client, serving.cache, serving.assignment, serving.wsgi, "
        "jobs.commands.serve; from serving import create_app, ServingClient; "
        "bad = sorted(m for m in ('torch', 'botorch', 'gpytorch', 'ax') if m in sys.modules); "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"importing serving loaded {result.stdout.strip()} {result.stderr[-500:]}"
