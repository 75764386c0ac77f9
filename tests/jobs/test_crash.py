"""A refit killed mid-fit (SIGKILL: no cleanup at all) leaves the current version alone, and the next run succeeds."""

from __future__ import annotations

import signal
import time

import pytest

from jobs.refit import RefitOptions, refit_experiment
from jobs.runs import Reason, RunStatus
from param_store import EmbeddedRedis, ParamStore
from tests.jobs.helpers import POLICY, launch, observe
from tests.jobs.procs import CliProcess, cli_env

LOCK_TTL_S = 3.0
DAY = 86_400  # one period for the whole test, so the killed run and the retries share it


@pytest.mark.timeout(120)
def test_a_refit_killed_during_the_fit_keeps_the_current_version_and_the_next_run_succeeds(
    redis_server: EmbeddedRedis, store: ParamStore, namespace: str, tmp_path, raw_redis, raw_keys
) -> None:
    spec = launch(store)
    observe(store, "feed")
    before = store.current("feed")
    marker = tmp_path / "fitting"
    env = cli_env(redis_server.url, namespace, REFIT_TEST_MARKER=str(marker), REFIT_TEST_SLEEP="60")
    refit = CliProcess(["refit", "feed", "--policy", "tests.jobs.helpers:SlowPolicy", "--lock-ttl", str(LOCK_TTL_S),
                        "--period-seconds", str(DAY), "--activation-delay", "0"], env)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert refit.proc.poll() is None and time.monotonic() < deadline, refit.output
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the fit
    refit.proc.send_signal(signal.SIGKILL)
    assert refit.proc.wait(10) == -signal.SIGKILL
    assert "  load " in refit.output and "policy    ..." in refit.output

    assert store.current("feed") == before and store.runs("feed") == []
    period = int(time.time() // DAY * DAY)
    assert raw_redis.pttl(raw_keys.lock("feed", f"refit:{period}")) > 0  # the dead run's lock, until it expires

    options = RefitOptions(period_seconds=DAY, activation_delay_s=0.0, lock_ttl_s=LOCK_TTL_S)
    blocked = refit_experiment(redis_server.url, namespace, "feed", policy=POLICY, options=options)
    assert (blocked.status, blocked.reason) == (RunStatus.SKIPPED, Reason.LOCKED)

    time.sleep(LOCK_TTL_S)
    record = refit_experiment(redis_server.url, namespace, "feed", policy=POLICY, options=options)
    assert record.status is RunStatus.PUBLISHED, record
    assert store.current_version("feed") == record.version > before.version
    assert store.current("feed").problems(spec) == []
