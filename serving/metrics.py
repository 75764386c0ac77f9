"""Prometheus metrics of one app, in the app's own registry (so several apps can live in one process).

Under gunicorn with several workers, ``bayesopt serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before
prometheus-client is imported; every worker then writes its samples there and ``/metrics`` aggregates all of
them, whichever worker answers.
"""

from __future__ import annotations

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

        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._assignment_children: dict[str, tuple[Any, Any]] = {}

    def observe_request(self, endpoint: str, method: str, status: str, elapsed_s: float) -> None:
        """Count one request and its server time (label children cached: this runs on every request)."""
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children.setdefault(key, (self.requests.labels(*key), self.latency.labels(endpoint)))
        children[0].inc()
        children[1].observe(elapsed_s)

    def count_assignments(self, experiment: str, enrolled: int, total: int) -> None:
        """Count ``total`` assignments of which ``enrolled`` were in the experiment."""
        children = self._assignment_children.get(experiment)
        if children is None:
            children = self._assignment_children.setdefault(
                experiment, (self.assignments.labels(experiment, "true"), self.assignments.labels(experiment, "false"))
            )
        if enrolled:
            children[0].inc(enrolled)
        if total > enrolled:
            children[1].inc(total - enrolled)

    def on_snapshot(self, experiment: str, snapshot: ServingSnapshot, trigger: str) -> None:
        self.cache_loads.labels(trigger).inc()
        if snapshot.current_version is not None:
            self.cache_version.labels(experiment).set(snapshot.current_version)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
