"""Sustained-load benchmark: ``bayesopt bench load [--duration S] [--out PATH]`` (JSON on stdout and in ``--out``).

``bayesopt serve --workers 2`` on loopback over a persistent embedded redis-server, loaded for ``--duration``
seconds by keep-alive parameter readers (threads, one request at a time each) and one observation writer that
retries each batch under its idempotency key until acknowledged. Two runs: a steady one, and one where Redis is
killed a third of the way in and restarted from its append-only file ``--outage`` seconds later. Each reports
requests, errors, p50/p99 latency, the workers' resident memory at the start and end, and whether every
acknowledged batch is in the store exactly once. Goals: zero errors, RSS growth under 10%.

The generator runs on the same machine as the servers (and, where this was measured, beside other jobs), so
absolute rates say little; the error count, the memory growth and the stored-once check are the point.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from simulations.bench_serving import EXPERIMENT, SPEC, _free_port, _quantile, _spawn, _wait_http, emit, terminate

NAMESPACE = "benchload"
GOALS = {"errors": 0, "rss_growth": 0.10}
#: Seconds of load before the first memory sample (imports, first snapshots, connection pools).
WARMUP_S = 5.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bayesopt bench load", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="write the JSON result here too")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load per run (default 60)")
    p.add_argument("--outage", type=float, default=10.0, help="seconds Redis is down in the second run (default 10)")
    p.add_argument("--readers", type=int, default=4, help="parameter reader threads (default 4)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. what else shared the machine)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    emit(result, args.out)
    return 0 if all(r["goals_met"] for r in result["runs"].values()) else 1


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = {"steady": _one_run(args, outage_s=None), "redis_outage": _one_run(args, outage_s=args.outage)}
    return {
        "benchmark": "load",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "note": args.note},
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "note")},
        "goals": {"errors": "== 0", "rss_growth": f"< {GOALS['rss_growth']:.0%}"},
        "runs": runs,
    }


def _one_run(args: argparse.Namespace, *, outage_s: float | None) -> dict[str, Any]:
    from param_store import EmbeddedRedis, ParamStore
    from param_store.launch import launch_experiment

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        redis_dir = Path(tmp) / "redis"
        server = EmbeddedRedis(redis_dir, persist=True).start()
        with ParamStore(server.client(), namespace=NAMESPACE) as store:
            launch_experiment(store, SPEC, now=time.time() - 60)
        port = _free_port()
        env = {**os.environ, "REDIS_URL": server.url, "BAYESOPT_NAMESPACE": NAMESPACE, "BAYESOPT_HOME": tmp,
               "BAYESOPT_LOG_LEVEL": "error"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        serve = _spawn([sys.executable, "-m", "jobs.cli", "serve", "--bind", f"127.0.0.1:{port}", "--workers",
                        str(args.workers), "--poll-interval", "1"], env)
        try:
            _wait_http(port, "/v1/ready", serve)
            load = _Load(f"http://127.0.0.1:{port}", args.readers).start()
            time.sleep(WARMUP_S)
            load.reset()
            rss_start = _workers_rss_mb(serve.pid)
            outage = None
            if outage_s is None:
                time.sleep(args.duration)
            else:
                time.sleep(args.duration / 3)
                os.kill(server.pid, signal.SIGKILL)
                os.waitpid(server.pid, 0)
                down = time.time()
                time.sleep(outage_s)
                server = EmbeddedRedis(redis_dir, persist=True).start()
                outage = {"down_at_s": round(down - load.started, 1), "seconds": outage_s, "restarted_fresh": server.fresh}
                time.sleep(max(0.0, args.duration - (time.time() - load.started)))
            rss_end = _workers_rss_mb(serve.pid)
            load.stop()
            with ParamStore(server.client(), namespace=NAMESPACE) as store:
                frame = store.observations(EXPERIMENT)
            stored = float(frame["count"].sum()) if not frame.empty else 0.0
        finally:
            terminate(serve)
            server.stop()
    latencies = sorted(load.latencies)
    growth = (rss_end - rss_start) / rss_start if rss_start else float("nan")
    errors = len(load.errors)
    return {
        "requests": len(latencies), "errors": errors, "error_samples": load.errors[:5],
        "requests_per_s": round(len(latencies) / load.seconds, 1),
        "latency_ms_p50": round(1000 * _quantile(latencies, 0.5), 3),
        "latency_ms_p99": round(1000 * _quantile(latencies, 0.99), 3),
        "stale_responses": load.stale,
        "rss_mb_start": round(rss_start, 1), "rss_mb_end": round(rss_end, 1), "rss_growth": round(growth, 4),
        "batches_acknowledged": load.acknowledged, "batches_acknowledged_total": load.acknowledged_total,
        "observations_stored": stored, "stored_exactly_once": stored == float(load.acknowledged_total),
        "outage": outage,
        "goals_met": errors == GOALS["errors"] and growth < GOALS["rss_growth"] and stored == float(load.acknowledged_total),
    }


class _Load:
    """Keep-alive parameter readers plus one observation writer; latencies of successful reads, every error."""

    def __init__(self, url: str, readers: int) -> None:
        self.url, self.readers = url, readers
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stale = self.acknowledged = self.acknowledged_total = 0
        self.started = time.time()
        self.seconds = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> _Load:
        self._threads = [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(self.readers)]
        self._threads.append(threading.Thread(target=self._ingest, daemon=True))
        for t in self._threads:
            t.start()
        return self

    def reset(self) -> None:
        """Start measuring now (after the warm-up); batches acknowledged so far still count for the store check."""
        self.latencies, self.errors, self.stale, self.acknowledged = [], [], 0, 0
        self.started = time.time()

    def stop(self) -> None:
        self.seconds = time.time() - self.started
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _read(self, i: int) -> None:
        session = requests.Session()
        n = 0
        while not self._stop.is_set():
            n += 1
            began = time.perf_counter()
            try:
                r = session.get(f"{self.url}/v1/experiments/{EXPERIMENT}/params", params={"member_id": f"{i}-{n}"}, timeout=10)
                if r.status_code == 200:
                    self.latencies.append(time.perf_counter() - began)
                    self.stale += "Bayesopt-Stale" in r.headers
                else:
                    self.errors.append(f"{r.status_code} {r.text[:120]}")
            except requests.RequestException as exc:
                self.errors.append(repr(exc)[:160])

    def _ingest(self) -> None:
        session = requests.Session()
        row = {"version": 1, "arm_id": "control", "metric": "applies", "value": 1.0}
        while not self._stop.is_set():
            key = uuid.uuid4().hex
            while not self._stop.is_set():
                try:
                    r = session.post(f"{self.url}/v1/experiments/{EXPERIMENT}/observations", json={"rows": [row]},
                                     headers={"Idempotency-Key": key}, timeout=10)
                    if r.status_code in (200, 201):
                        self.acknowledged += 1
                        self.acknowledged_total += 1
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.1)
            time.sleep(0.05)


def _workers_rss_mb(master: int) -> float:
    """Resident memory of the gunicorn workers (children of ``master``), in MiB; Linux only."""
    total_kb = 0
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024
