"""Refits as Ray tasks on a real local Ray instance: the same outcomes as the pool, a lost worker recovered.

One local Ray instance for the module (starting one takes seconds). Ray is in the dev extra, so these tests run
in CI; they are skipped, with the reason, only where Ray itself cannot start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.refit import RefitOptions
from jobs.runs import RunStatus
from param_store import EmbeddedRedis, ParamStore
from tests.jobs.helpers import FAILING_POLICY_NAMES, FAILING_POLICY_OUTCOMES, launch, observe, outcomes

ray = pytest.importorskip("ray", reason="Ray is not installed (the 'ray' extra)")

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[object]:
    """A :class:`RayRefitPool` on a local 2-CPU Ray instance whose workers can import ``tests.*`` policies."""
    from jobs.executors import open_executor

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), old) if p)
    try:
        executor = open_executor("ray", 2, threads_per_worker=1)
    except Exception as exc:  # noqa: BLE001 - the one reason to skip: Ray cannot start on this machine
        pytest.skip(f"a local Ray instance could not start: {exc}")
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    yield executor
    executor.shutdown()
    assert not ray.is_initialized()


def test_ray_refits_give_the_pools_outcomes(ray_executor, redis_server: EmbeddedRedis, store: ParamStore, namespace: str) -> None:
    names = FAILING_POLICY_NAMES
    for name in names:
        launch(store, name)
        observe(store, name)
    seen: list[tuple[int, int]] = []
    records = ray_executor.refit_all(
        redis_server.url, namespace, [*names, "missing"], policy="tests.jobs.helpers:FailingPolicy",
        options=RefitOptions(activation_delay_s=0.0), on_record=lambda _r, done, total: seen.append((done, total)),
    )
    assert outcomes(records) == FAILING_POLICY_OUTCOMES
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(r.worker.split(":")[1] != str(os.getpid()) for r in records if r.period is not None)  # ran in workers
    assert [store.current_version(n) for n in names] == [2, 1, 2]


def test_a_worker_lost_mid_refit_leaves_current_and_the_next_run_refits(
    ray_executor, redis_server: EmbeddedRedis, store: ParamStore, namespace: str
) -> None:
    launch(store, "feed")
    observe(store, "feed")
    options = RefitOptions(activation_delay_s=0.0, lock_ttl_s=2.0)
    [lost] = ray_executor.refit_all(redis_server.url, namespace, ["feed"], policy="tests.jobs.helpers:DyingPolicy",
                                    options=options)
    assert lost.status is RunStatus.FAILED and "did not complete" in lost.message
    assert store.current_version("feed") == 1  # nothing half-published
    time.sleep(options.lock_ttl_s + 0.5)  # the dead run's period lock expires
    [again] = ray_executor.refit_all(redis_server.url, namespace, ["feed"], policy="tests.jobs.helpers:StubPolicy",
                                     options=options)
    assert again.status is RunStatus.PUBLISHED and store.current_version("feed") == 2
