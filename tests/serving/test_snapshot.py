"""The assignment function itself (no HTTP): coupling chains, edge cases, JSON round trip, config validation."""

from __future__ import annotations

from collections import Counter

import pytest
from scipy.stats import chi2

from bayesopt.distribution import ParameterDistribution
from serving import ServingConfig, ServingConfigError, ServingSnapshot, total_variation
from serving.assignment import canonical_member_id
from serving.errors import IncompleteHistoryError, NoDistributionError
from tests.factories import make_distribution, make_spec
from tests.serving.conftest import member_ids

T0 = 1_700_000_000.0
HOUR = 3600.0
CHAIN = [[0.2, 0.3, 0.5], [0.3, 0.3, 0.2, 0.2], [0.25, 0.05, 0.5, 0.2], [0.4, 0.6], [0.2, 0.2, 0.2, 0.2, 0.2], [0.5, 0.1, 0.4]]


def versions(weight_lists: list[list[float]]) -> list[tuple[int, ParameterDistribution]]:
    spec = make_spec()
    return [(i, make_distribution(spec, i + 1, weights=w, created_at=T0 + HOUR * i)) for i, w in enumerate(weight_lists)]


def snapshot(weight_lists: list[list[float]], **kwargs) -> ServingSnapshot:
    options = {"experiment": "feed", "state": "running", "experiment_share": 1.0, "stickiness_seconds": 3600,
               "versions": versions(weight_lists), **kwargs}
    return ServingSnapshot(**options)


def weights_of(dist: ParameterDistribution) -> dict[str, float]:
    return {a.arm_id: a.weight for a in dist.arms}


def test_coupled_chain_keeps_every_marginal_and_churns_tv_except_at_block_anchors() -> None:
    n = 60_000
    snap = snapshot(CHAIN, mode="coupled", horizon=3)
    ids = member_ids(n, "k")
    arms = [[a.arm_id for a in snap.assign_many(ids, T0 + HOUR * i + 1)] for i in range(len(CHAIN))]
    dists = [d for _, d in snap.distributions]
    for i, (dist, assigned) in enumerate(zip(dists, arms, strict=True)):
        counts, w = Counter(assigned), weights_of(dist)
        stat = sum((counts[a] - n * p) ** 2 / (n * p) for a, p in w.items() if p > 0)
        assert stat < chi2.ppf(0.999, len(w) - 1), f"version {i + 1}: marginal off (chi-square {stat:.1f})"
    for i in range(1, len(CHAIN)):
        churn = sum(a != b for a, b in zip(arms[i - 1], arms[i], strict=True)) / n
        tv = total_variation(weights_of(dists[i - 1]), weights_of(dists[i]))
        if i % 3:  # inside a block: the maximal coupling
            assert abs(churn - tv) < 0.01, f"step {i}: churn {churn:.4f}, TV {tv:.4f}"
        else:  # a block anchor: an independent fresh draw
            assert churn > tv + 0.05


def test_coupled_mode_moves_nobody_between_equal_versions_and_everybody_off_a_removed_arm() -> None:
    snap = snapshot([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [0.2, 0.8]], mode="coupled")
    ids = member_ids(5000, "z")
    v1, v2, v3 = ([a.arm_id for a in snap.assign_many(ids, T0 + HOUR * i + 1)] for i in range(3))
    assert v1 == v2
    # control keeps its weight and arm1 grows: both keep all their members; arm2 is gone, its members go to arm1.
    assert v3 == [a if a != "arm2" else "arm1" for a in v2]


def test_epoch_mode_is_a_pure_function_of_its_inputs() -> None:
    snap = snapshot(CHAIN[:2])
    twin = ServingSnapshot.from_dict(snap.to_dict())
    ids = member_ids(2000, "q")
    for at in (T0 + 5, T0 + HOUR + 5, T0 + 10 * HOUR):
        assert snap.assign_many(ids, at) == twin.assign_many(ids, at) == [snap.assign(m, at) for m in ids]
    other = ServingSnapshot(**{**_args(snap), "experiment": "other"})
    assert [a.arm_id for a in other.assign_many(ids, T0 + 5)] != [a.arm_id for a in snap.assign_many(ids, T0 + 5)]


def _args(snap: ServingSnapshot) -> dict:
    return {"experiment": snap.experiment, "state": snap.state, "experiment_share": snap.experiment_share,
            "stickiness_seconds": snap.stickiness_seconds, "versions": snap.distributions, "mode": snap.mode}


def test_version_in_force_is_the_highest_activated_version_already_valid() -> None:
    spec = make_spec()
    v5 = make_distribution(spec, 5, created_at=T0 + HOUR)  # scheduled for the hour
    v6 = make_distribution(spec, 6, created_at=T0 + 60)  # a rollback published after it, valid at once
    snap = ServingSnapshot(experiment="feed", state="running", experiment_share=1.0, stickiness_seconds=3600,
                           versions=[(0, make_distribution(spec, 4, created_at=T0)), (1, v5), (2, v6)])
    assert [snap.version_at(t) for t in (T0 + 1, T0 + 61, T0 + HOUR + 1)] == [4, 6, 6]
    assert snap.version_at(T0 - 100) == 4  # before anything: the oldest held


def test_missing_history_and_missing_versions_are_named() -> None:
    partial = ServingSnapshot(experiment="feed", state="running", experiment_share=1.0, stickiness_seconds=3600,
                              versions=versions(CHAIN)[4:], mode="coupled", horizon=3)
    with pytest.raises(IncompleteHistoryError, match="needs activations from index 3"):
        partial.assign("m1", T0 + 5 * HOUR)
    empty = ServingSnapshot(experiment="feed", state="running", experiment_share=1.0, stickiness_seconds=3600, versions=[])
    with pytest.raises(NoDistributionError, match="no activated distribution"):
        empty.assign("m1", T0)


def test_member_ids_are_canonical_strings() -> None:
    assert canonical_member_id(12) == "12"
    for bad, message in ((True, "string or an integer"), ("", "empty"), ("x" * 300, "the limit is 256"), (1.5, "string")):
        with pytest.raises(ValueError, match=message):
            canonical_member_id(bad)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("poll_interval_s", 0, "poll_interval_s: must be a positive number"),
        ("mode", "sticky", "mode: must be one of epoch, coupled"),
        ("modes", {"feed": "x"}, "modes.feed: must be one of"),
        ("max_batch", 0, "max_batch: must be a positive integer"),
        ("redis_url", "localhost", "redis_url: must be a redis://"),
    ],
)
def test_config_names_the_bad_field(field: str, value, message: str) -> None:
    with pytest.raises(ServingConfigError, match=message):
        ServingConfig(**{"redis_url": "redis://localhost:6379/0", field: value})


def test_config_from_env_needs_redis_url() -> None:
    with pytest.raises(ServingConfigError, match="REDIS_URL"):
        ServingConfig.from_env({})
    config = ServingConfig.from_env({"REDIS_URL": "unix:///tmp/r.sock", "BAYESOPT_COUPLED_EXPERIMENTS": "a, b"})
    assert config.mode_for("a") == "coupled" and config.mode_for("c") == "epoch"
