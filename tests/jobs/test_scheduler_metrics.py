"""The scheduler's metrics from real run records: outcomes, durations, last publish, failures, locked skips."""

from __future__ import annotations

import urllib.request

from jobs.metrics import SchedulerMetrics
from jobs.runs import Reason, RunRecord, RunStatus
from tests.serving.procs import free_port


def _value(text: str, line_start: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(line_start)).rsplit(" ", 1)[1])


def test_run_records_become_metrics_served_over_http() -> None:
    metrics = SchedulerMetrics()
    metrics.observe(RunRecord(experiment="feed", status=RunStatus.PUBLISHED, started_at=100.0, ended_at=102.5, version=2))
    metrics.observe(RunRecord(experiment="feed", status=RunStatus.SKIPPED, started_at=200.0, ended_at=200.1, reason=Reason.LOCKED))
    metrics.observe(RunRecord(experiment="feed", status=RunStatus.FAILED, started_at=300.0, ended_at=301.0, message="store down"))
    metrics.count_event("missed")
    port = free_port()
    metrics.serve(port)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert _value(text, 'bayesopt_refit_last_publish_timestamp_seconds{experiment="feed"}') == 102.5
    assert _value(text, 'bayesopt_refit_last_run_timestamp_seconds{experiment="feed"}') == 301.0
    assert _value(text, 'bayesopt_refit_runs_total{experiment="feed",reason="",status="published"}') == 1
    assert _value(text, 'bayesopt_refit_skipped_locked_total{experiment="feed"}') == 1
    assert _value(text, 'bayesopt_refit_failures_total{experiment="feed"}') == 1
    assert _value(text, 'bayesopt_refit_duration_seconds_count{experiment="feed"}') == 3
    assert abs(_value(text, 'bayesopt_refit_duration_seconds_sum{experiment="feed"}') - 3.6) < 1e-9
    assert _value(text, 'bayesopt_scheduler_events_total{kind="missed"}') == 1
