"""Prometheus metrics of one app, in the app's own registry (so several apps can live in one process).

Under gunicorn with several workers, ``bayesopt serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before
prometheus-client is imported; every worker then writes its samples there and ``/metrics`` aggregates all of
them, whichever worker answers.
"""

from __future__ import annotations

import atexit
import threading
from bisect import bisect_left
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from serving.assignment import ServingSnapshot

#: Bound on how far /metrics lags behind the requests a worker served.
FLUSH_INTERVAL_S = 1.0
#: From 0.5 ms (a cached single-member lookup) to 2.5 s (a large observation batch).
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """Request counts and latencies per endpoint, assignments served, and the cache's view of each experiment."""

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bayesopt_http_requests", "HTTP requests by endpoint, method and status.", ["endpoint", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "bayesopt_http_request_duration_seconds", "Server time per request.", ["endpoint"], buckets=LATENCY_BUCKETS_S, registry=r
        )
        self.assignments = Counter(
            "bayesopt_assignments", "Member assignments served, by experiment and enrolment.", ["experiment", "in_experiment"], registry=r
        )
        self.observation_rows = Counter(
            "bayesopt_observation_rows", "Observation rows accepted, by experiment.", ["experiment"], registry=r
        )
        self.cache_version = Gauge(
            "bayesopt_cache_version", "Latest activated version held in the worker cache.", ["experiment"],
            multiprocess_mode="max", registry=r,
        )
        self.cache_loads = Counter(
            "bayesopt_cache_loads", "Snapshots loaded into a worker cache, by trigger.", ["trigger"], registry=r
        )
        self.cache_alarms = Gauge(
            "bayesopt_cache_alarm", "1 while the worker serves an experiment from memory that the store lost "
            "(reason: missing_from_store or version_regressed); needs an operator.", ["experiment", "reason"],
            multiprocess_mode="max", registry=r,
        )
        self.store_reachable = Gauge(
            "bayesopt_store_reachable", "1 if the worker's last cache refresh reached the store, else 0.",
            multiprocess_mode="min", registry=r,
        )
        self.store_reachable.set(1)

        # Per-request counts gather here and reach prometheus-client once per FLUSH_INTERVAL_S: in multiprocess
        # mode every prometheus write is a locked mmap write, several per request, which showed in the benchmark.
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, str], list[Any]] = {}  # key -> [count, bucket counts, sum of seconds]
        self._pending_assignments: dict[str, list[int]] = {}  # experiment -> [enrolled, not enrolled]
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    def observe_request(self, endpoint: str, method: str, status: str, elapsed_s: float) -> None:
        """Count one request and its server time (runs on every request; see :meth:`flush`)."""
        bucket = bisect_left(LATENCY_BUCKETS_S, elapsed_s)  # first bound >= elapsed, as Histogram.observe does
        key = (endpoint, method, status)
        with self._lock:
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = [0, [0] * (len(LATENCY_BUCKETS_S) + 1), 0.0]
            pending[0] += 1
            pending[1][bucket] += 1
            pending[2] += elapsed_s

    def count_assignments(self, experiment: str, enrolled: int, total: int) -> None:
        """Count ``total`` assignments of which ``enrolled`` were in the experiment."""
        with self._lock:
            pending = self._pending_assignments.get(experiment)
            if pending is None:
                pending = self._pending_assignments[experiment] = [0, 0]
            pending[0] += enrolled
            pending[1] += total - enrolled

    def flush(self) -> None:
        """Move the gathered per-request counts into the prometheus metrics."""
        with self._lock:
            pending, self._pending = self._pending, {}
            assignments, self._pending_assignments = self._pending_assignments, {}
        for (endpoint, method, status), (count, buckets, total) in pending.items():
            self.requests.labels(endpoint, method, status).inc(count)
            _add_to_histogram(self.latency.labels(endpoint), buckets, total)
        for experiment, (enrolled, other) in assignments.items():
            if enrolled:
                self.assignments.labels(experiment, "true").inc(enrolled)
            if other:
                self.assignments.labels(experiment, "false").inc(other)

    def start(self) -> ServingMetrics:
        """Flush every ``FLUSH_INTERVAL_S`` in a daemon thread, and once more when the process exits."""
        self._flusher = threading.Thread(target=self._flush_loop, name="serving-metrics-flush", daemon=True)
        self._flusher.start()
        atexit.register(self.flush)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=FLUSH_INTERVAL_S + 1)
        atexit.unregister(self.flush)
        self.flush()

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            self.flush()

    def on_snapshot(self, experiment: str, snapshot: ServingSnapshot, trigger: str) -> None:
        self.cache_loads.labels(trigger).inc()
        if snapshot.current_version is not None:
            self.cache_version.labels(experiment).set(snapshot.current_version)

    def on_alarm(self, experiment: str, reason: str, active: bool) -> None:
        self.cache_alarms.labels(experiment, reason).set(1 if active else 0)

    def on_store_health(self, reachable: bool) -> None:
        self.store_reachable.set(1 if reachable else 0)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type (other workers' counts may lag by one flush)."""
        self.flush()
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _add_to_histogram(child: Histogram, buckets: list[int], total: float) -> None:
    """Add pre-bucketed observations to a histogram child.

    prometheus-client has no public bulk ``observe``; its per-bucket values (``_buckets``, ``_sum``) have been
    stable for years. Should they change, observing each bucket's upper bound keeps the counts exact and the
    sum approximate.
    """
    values, sum_value = getattr(child, "_buckets", None), getattr(child, "_sum", None)
    if isinstance(values, list) and len(values) == len(buckets) and sum_value is not None:
        for value, n in zip(values, buckets, strict=True):
            if n:
                value.inc(n)
        sum_value.inc(total)
        return
    for bound, n in zip((*LATENCY_BUCKETS_S, 2 * LATENCY_BUCKETS_S[-1]), buckets, strict=True):
        for _ in range(n):
            child.observe(bound)
