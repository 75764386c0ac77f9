"""Many refits in the bounded process pool: each gets its own outcome, a failure stops nobody else."""

from __future__ import annotations

from jobs.executor import MAX_WORKERS_CAP, bounded_workers
from jobs.pool import RefitPool, refit_many
from jobs.refit import RefitOptions
from jobs.runs import RunStatus
from param_store import EmbeddedRedis, ParamStore
from tests.jobs.helpers import FAILING_POLICY_NAMES, FAILING_POLICY_OUTCOMES, launch, observe, outcomes


def test_worker_counts_are_bounded() -> None:
    assert bounded_workers(1000) == MAX_WORKERS_CAP
    assert bounded_workers(0) >= 1 and bounded_workers(3) == 3


def test_one_failing_experiment_does_not_stop_the_others(redis_server: EmbeddedRedis, store: ParamStore, namespace: str) -> None:
    names = FAILING_POLICY_NAMES
    for name in names:
        launch(store, name)
        observe(store, name)
    records = refit_many(
        redis_server.url, namespace, [*names, "missing"], max_workers=2,
        policy="tests.jobs.helpers:FailingPolicy", options=RefitOptions(activation_delay_s=0.0),
    )
    assert outcomes(records) == FAILING_POLICY_OUTCOMES
    assert len({r.worker for r in records}) >= 1
    assert [store.current_version(n) for n in names] == [2, 1, 2]


def test_a_broken_pool_reports_failures_and_recovers(redis_server: EmbeddedRedis, store: ParamStore, namespace: str) -> None:
    launch(store)
    observe(store, "feed")
    with RefitPool(1, preload=()) as pool:
        dead = pool._get().submit(_exit_now)  # a worker that dies hard, as under the OOM killer
        assert dead.exception() is not None
        [record] = pool.refit_all(redis_server.url, namespace, ["feed"], policy="tests.jobs.helpers:StubPolicy",
                                  options=RefitOptions(activation_delay_s=0.0))
    assert record.status is RunStatus.PUBLISHED


def _exit_now() -> None:
    import os

    os._exit(9)
