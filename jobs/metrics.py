"""Prometheus metrics of the refit scheduler: runs by outcome, durations, last publish per experiment, skips.

``bayesopt scheduler --metrics-port N`` serves them at ``http://<host>:N/metrics`` (prometheus-client's own
server, in a daemon thread); :class:`RefitScheduler` feeds them every run record and every APScheduler event.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from jobs.runs import Reason, RunRecord, RunStatus

#: From a thin-data skip (milliseconds) to a large fit (minutes).
DURATION_BUCKETS_S = (0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class SchedulerMetrics:
    """The scheduler's metrics in their own registry (several schedulers can share a process in tests)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.runs = Counter("bayesopt_refit_runs", "Refit runs by experiment, status and reason.",
                            ["experiment", "status", "reason"], registry=r)
        self.duration = Histogram("bayesopt_refit_duration_seconds", "Wall time of each refit run.", ["experiment"],
                                  buckets=DURATION_BUCKETS_S, registry=r)
        self.failures = Counter("bayesopt_refit_failures", "Refit runs that failed (store unreachable, a bug).",
                                ["experiment"], registry=r)
        self.skipped_locked = Counter("bayesopt_refit_skipped_locked",
                                      "Runs that found the period locked by another replica.", ["experiment"], registry=r)
        self.last_publish = Gauge("bayesopt_refit_last_publish_timestamp_seconds",
                                  "When this scheduler last published a version of the experiment (epoch s).",
                                  ["experiment"], registry=r)
        self.last_run = Gauge("bayesopt_refit_last_run_timestamp_seconds", "When the last run of the experiment ended.",
                              ["experiment"], registry=r)
        self.events = Counter("bayesopt_scheduler_events", "Scheduler trouble: missed runs, runs skipped because the "
                              "previous one still ran, job errors.", ["kind"], registry=r)

    def observe(self, record: RunRecord) -> None:
        """Count one run record."""
        name = record.experiment
        self.runs.labels(name, record.status.value, record.reason.value if record.reason else "").inc()
        self.duration.labels(name).observe(max(0.0, record.ended_at - record.started_at))
        self.last_run.labels(name).set(record.ended_at)
        if record.status is RunStatus.PUBLISHED:
            self.last_publish.labels(name).set(record.ended_at)
        elif record.status is RunStatus.FAILED:
            self.failures.labels(name).inc()
        if record.reason is Reason.LOCKED:
            self.skipped_locked.labels(name).inc()

    def count_event(self, kind: str) -> None:
        """One scheduler event: ``missed``, ``max_instances`` or ``error``."""
        self.events.labels(kind).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread."""
        start_http_server(port, addr=addr, registry=self.registry)
