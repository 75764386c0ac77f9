"""The arm-values index: written with each version (launch and publish), read by refits, backfilled for old data."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import redis

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution
from bayesopt.spec import ExperimentSpec
from jobs.load import load_inputs
from param_store import Keys, ParamStore, VersionConflictError
from param_store.launch import launch_experiment
from tests.factories import make_rows, make_spec

VERSIONS = 12


def _version(spec: ExperimentSpec, first: ParameterDistribution, version: int) -> ParameterDistribution:
    """Version ``version``: control and one new arm whose values move with the version."""
    values = {p.name: p.lower + (p.upper - p.lower) * version / (VERSIONS + 1) for p in spec.parameters}
    arms = (Arm(CONTROL_ARM_ID, dict(spec.control), 0.5), Arm(f"arm{version}", values, 0.5))
    return replace(first, version=version, arms=arms)


@pytest.fixture
def history(store: ParamStore) -> tuple[str, dict[int, ParameterDistribution]]:
    """An experiment launched for real, then ``VERSIONS - 1`` published versions, each observed once per arm."""
    spec = make_spec("indexed")
    first = launch_experiment(store, spec)
    dists = {1: first}
    for v in range(2, VERSIONS + 1):
        assert store.next_version(spec.name) == v
        dists[v] = store.publish(_version(spec, first, v))
    metric = spec.metric_names[0]
    for v, dist in dists.items():
        store.add_observations(spec.name, [r for arm in dist.arms for r in make_rows(v, arm.arm_id, metric)])
    return spec.name, dists


def _parsed(dists: dict[int, ParameterDistribution]) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, float]] = {}
    for _, dist in sorted(dists.items()):
        values.update((a.arm_id, dict(a.values)) for a in dist.arms)
    return values


def test_launch_and_each_publish_index_their_arms(store: ParamStore, history) -> None:
    name, dists = history
    expected = _parsed(dists)
    assert len(expected) == len(dists[1].arms) + VERSIONS - 1
    assert store.arm_values(name, expected) == expected
    assert store.arm_values(name, ["never-served"]) == {}


def test_a_refused_version_leaves_the_index_alone(store: ParamStore, history) -> None:
    name, dists = history
    rewrite = replace(dists[3], arms=(dists[3].arms[0], Arm("intruder", dict(dists[3].arms[1].values), 0.5)))
    with pytest.raises(VersionConflictError):
        store.write_version(rewrite)
    assert store.arm_values(name, ["intruder"]) == {}


def test_a_refit_reads_the_index_and_old_data_without_it_is_backfilled(
    store: ParamStore, history, raw_redis: redis.Redis, raw_keys: Keys
) -> None:
    name, dists = history
    indexed = load_inputs(store, name)
    assert indexed.arm_values == _parsed(dists)
    raw_redis.delete(raw_keys.arm_values(name))  # as stored by the code before the index existed
    old = load_inputs(store, name)
    assert not old.problems
    assert old.arm_values == indexed.arm_values
    pd.testing.assert_frame_equal(old.table, indexed.table)
    assert raw_redis.hlen(raw_keys.arm_values(name)) == len(indexed.arm_values)  # backfilled: next refit reads it
