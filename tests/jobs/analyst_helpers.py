"""Experiments for the analysts' tests: launched into the real store, observed and refitted with the real GP policy."""

from __future__ import annotations

from jobs.refit import RefitOptions, refit_experiment
from param_store import EmbeddedRedis, ParamStore
from tests.jobs.helpers import POLICY, observe

#: A fixed clock: refit ``h`` happens in hour ``h`` after it.
START = 1_900_000_000.0
HOUR = 3600.0
HOURLY = RefitOptions(period_seconds=3600, activation_delay_s=0.0, lock_ttl_s=30.0)
#: Small enough for a refit in a second or two on a shared core.
SMALL_POLICY = {"max_arms": 6, "num_draws": 300, "num_candidates": 64, "initial_arms": 4}


def run_refits(redis_server: EmbeddedRedis, store: ParamStore, name: str, hours: int, *, count: int = 400) -> list[int]:
    """Observe the current version, then refit, ``hours`` times; returns the versions published."""
    published = []
    for h in range(hours):
        observe(store, name, count=count)
        record = refit_experiment(redis_server.url, store.namespace, name, now=START + (h + 1) * HOUR, policy=POLICY,
                                  options=HOURLY)
        assert record.status.value == "published", record.to_dict()
        published.append(record.version)
    return published
