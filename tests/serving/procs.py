"""Running ``bayesopt serve`` as a real gunicorn process for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from simulations.bench_serving import terminate

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(redis_url: str, namespace: str, workers: int, tmp: Path, *extra: str,
                env: dict[str, str] | None = None, stderr: int | None = subprocess.PIPE) -> tuple[subprocess.Popen, str]:
    port = free_port()
    metrics_dir = tmp / f"metrics-{port}"
    metrics_dir.mkdir()
    environ = {**os.environ, "REDIS_URL": redis_url, "BAYESOPT_NAMESPACE": namespace, "BAYESOPT_HOME": str(tmp),
               "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **(env or {})}
    cmd = [sys.executable, "-m", "jobs.cli", "serve", "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
           "--poll-interval", "0.5", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=stderr)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise AssertionError(f"bayesopt serve exited with {proc.returncode}: {detail}")
        try:
            if requests.get(f"{url}/v1/ready", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a worker still importing
            pass
        time.sleep(0.1)
    raise AssertionError("bayesopt serve did not become ready")


def stop(proc: subprocess.Popen) -> None:
    terminate(proc, timeout_s=15)
