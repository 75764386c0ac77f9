"""Several scheduler replicas, as real processes, over accelerated periods: each period refitted exactly once."""

from __future__ import annotations

import math
import time
from collections import Counter

import pytest

from jobs.periods import Schedule
from jobs.scheduler import misfire_grace_seconds
from param_store import EmbeddedRedis, ExperimentState, ParamStore
from tests.jobs.helpers import POLICY, launch, observe
from tests.jobs.procs import CliProcess, cli_env

PERIOD_S = 8  # long enough for a small real fit plus scheduling noise on 2 cores
PERIODS = 2  # two whole periods show both: one run per period, and a new version each period


def test_misfire_grace_is_half_a_period() -> None:
    assert misfire_grace_seconds(Schedule("0 * * * *"), 1_900_000_000.0) == 1800
    assert misfire_grace_seconds(Schedule(period_seconds=8), 0.0) == 4


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_schedulers_refit_each_experiment_exactly_once_per_period(
    redis_server: EmbeddedRedis, store: ParamStore, namespace: str
) -> None:
    for name in ("exp-a", "exp-b", "exp-paused"):
        launch(store, name)
        observe(store, name)
    store.transition("exp-paused", ExperimentState.PAUSED)
    args = ["scheduler", "--period-seconds", str(PERIOD_S), "--sync-seconds", "1", "--workers", "1",
            "--threads-per-worker", "1", "--activation-delay", "0", "--lock-ttl", "20", "--policy", POLICY]
    replicas = [CliProcess(args, cli_env(redis_server.url, namespace)) for _ in range(2)]
    try:
        for r in replicas:
            r.wait_for("scheduler ready", timeout=90)
        launch(store, "exp-late")  # launched while the schedulers run: the sync job must pick it up
        observe(store, "exp-late")
        first = math.ceil(time.time() / PERIOD_S) * PERIOD_S + PERIOD_S  # the first period both replicas see whole
        periods = [first + i * PERIOD_S for i in range(PERIODS)]
        _wait_for_runs(store, ["exp-a", "exp-b", "exp-late"], periods[-1], deadline=periods[-1] + PERIOD_S - 1)
    finally:
        codes = [r.stop() for r in replicas]
    assert codes == [0, 0], "\n".join(r.output for r in replicas)

    for name in ("exp-a", "exp-b", "exp-late"):
        runs = store.runs(name, 500)
        per_period = Counter(r["period"] for r in runs)
        assert all(n == 1 for n in per_period.values()), (name, per_period)  # never twice, start-up included
        in_window = [r for r in runs if r["period"] in periods]
        assert sorted(r["period"] for r in in_window) == periods, (name, runs)
        assert {r["status"] for r in in_window} == {"published"}, in_window
        versions = [r["version"] for r in in_window]
        assert len(set(versions)) == PERIODS and max(versions) <= store.current_version(name)
    assert store.runs("exp-paused") == [] and store.current_version("exp-paused") == 1
    workers = {r["worker"] for name in ("exp-a", "exp-b", "exp-late") for r in store.runs(name, 500)}
    print(f"refits were done by {len(workers)} worker processes: {sorted(workers)}")


def _wait_for_runs(store: ParamStore, names: list[str], period: int, *, deadline: float) -> None:
    """Until every experiment has a run for ``period`` (or the deadline passes; the asserts then say what is missing)."""
    while time.time() < deadline:
        if all(any(r["period"] == period for r in store.runs(n, 10)) for n in names):
            time.sleep(1.0)  # a duplicate, if there were one, would land now
            return
        time.sleep(0.2)


def test_sync_follows_launches_pauses_and_cron_changes(redis_server: EmbeddedRedis, store: ParamStore, namespace: str) -> None:
    from jobs.pool import RefitPool
    from jobs.scheduler import RefitScheduler
    from tests.factories import make_spec

    launch(store, "one")
    launch(store, "two")
    scheduler = RefitScheduler(redis_server.url, namespace, pool=RefitPool(1))
    scheduler.scheduler.start(paused=True)  # jobs get their settings but never fire: no processes
    scheduler.sync()
    assert sorted(scheduler.scheduled()) == ["one", "two"]
    job = scheduler.scheduler.get_job("refit:one")
    assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 1800)
    assert scheduler.scheduler.get_job("retry:one") is not None  # the catch-up run

    store.transition("two", ExperimentState.PAUSED)
    store.save_spec(make_spec("one", refit={"cron": "*/15 * * * *"}))
    launch(store, "three")
    scheduler.sync()
    assert sorted(scheduler.scheduled()) == ["one", "three"]
    assert scheduler.scheduled()["one"].cron == "*/15 * * * *"
    assert scheduler.scheduler.get_job("refit:one").misfire_grace_time == 450
    assert scheduler.scheduler.get_job("refit:two") is None
    scheduler.shutdown(wait=False)
