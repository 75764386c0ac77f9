"""World variants, the ranker release at a given hour, sampler streams, and the oracle that follows them."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from simulations.loop import LoopConfig, build_spec, build_world, policy_seed, run_closed_loop
from simulations.report import summarize
from simulations.world import WORLD_VARIANTS, make_variant_world, make_world

from .conftest import TEST_POOL

TINY = {"num_draws": 64, "num_candidates": 64, "max_arms": 6}
#: Standard errors allowed between a sampled mean and its expectation (as in test_sim_world).
Z = 4.9


def test_the_oracle_does_not_import_the_world() -> None:
    code = "import sys, simulations.oracle; assert 'simulations.world' not in sys.modules, 'world imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("name", "parameters", "members"), [
    ("base", 2, 30_000), ("scarce", 2, 5_000), ("d4", 4, 30_000), ("d6", 6, 30_000), ("shift", 2, 30_000)])
def test_variants_build(name: str, parameters: int, members: float) -> None:
    world = make_variant_world(name, seed=3, pool_sessions=64)
    assert len(world.parameter_names) == parameters and len(world.metric_names) == parameters + 1
    assert world.config.sessions_per_hour == members
    assert len(world.spec().parameter_names) == parameters
    config = LoopConfig.for_variant(name, seed=3)
    assert (config.variant, config.num_parameters, config.members_per_hour) == (name, parameters, members)
    assert (world.config.shift_hour is not None) == (name == "shift") == (world.regimes == 2)
    # smoke runs may use less traffic; the variant's world is the same otherwise
    assert LoopConfig.for_variant(name, members_per_hour=200).members_per_hour == 200


def test_a_variant_fixes_its_parameters_and_names_are_checked() -> None:
    with pytest.raises(ValueError, match="variant 'd4' has 4 parameters"):
        LoopConfig(variant="d4", num_parameters=2)
    with pytest.raises(ValueError, match="unknown world variant 'd5'"):
        LoopConfig(variant="d5")
    with pytest.raises(ValueError, match="stream must be in"):
        LoopConfig(stream=1000)
    assert set(WORLD_VARIANTS) == {"base", "scarce", "d4", "d6", "shift"}


def test_the_shift_changes_every_response_from_its_hour_and_the_oracle_follows() -> None:
    world = make_variant_world("shift", seed=2, pool_sessions=256)
    spec = world.spec()
    assert [world.regime(h) for h in (None, 0.5, 23.99, 24.0, 30.5, 47.5)] == [0, 0, 0, 1, 1, 1]
    X = np.random.default_rng(0).uniform(0, 4, size=(12, 2))
    before, after = world.expected_metrics(X, 23.5), world.expected_metrics(X, 24.5)
    # every metric of (almost) every point moves, beyond the time of day's smooth change
    change = np.abs(after / world.tod_multiplier(24.5) - before / world.tod_multiplier(23.5)) / before
    assert (change > 1e-3).mean() > 0.9
    np.testing.assert_array_equal(world.expected_metrics(X, 30.0), world.expected_metrics(X, 30.0, regime=1))
    np.testing.assert_allclose(world.expected_metrics(X), world.expected_metrics(X, 3.0) / world.tod_multiplier(3.0), rtol=1e-12)
    # the truth of an hour is the world's of that hour: control, best arm and feasibility all follow
    early, late = world.truth(spec, 10.0), world.truth(spec, 40.0)
    assert (early.regime, late.regime) == (0, 1) and world.truth(spec, 30.0) is late
    assert not np.allclose(early.control, late.control)
    old, new = world.best_feasible(spec, 10.0), world.best_feasible(spec, 40.0)
    assert old.feasible and new.feasible and old.arm_id != new.arm_id
    assert new.metrics["engaged_sessions"] == pytest.approx(
        world.expected_metrics(world.points(new.values), regime=1)[0, 0])
    # the old best arm, judged in the new world, falls well short of the new best (a policy must move)
    assert world.regret(spec, [old.values], [1.0], hour=40.0) / new.objective > 0.01
    assert world.regret(spec, [new.values], [1.0], hour=40.0) == pytest.approx(0.0, abs=1e-15)
    # sessions are simulated from the ranker in force at the hour
    rng = np.random.default_rng(1)
    x, n = [3.5, 1.0], 40_000
    for hour in (12.0, 36.0):
        y = world.sample_sessions(x, n, hour, rng)["shares"]
        mu = world.expected_metrics([x], hour)[0, 1]
        assert abs(y.mean() - mu) <= Z * math.sqrt(mu * (1 - mu) / n), hour
    # a world without a shift has one regime whatever the hour
    plain = make_world(2, seed=2, pool_sessions=64)
    assert plain.regime(100.0) == 0
    with pytest.raises(ValueError, match="regime must be in"):
        plain.expected_metrics(X, regime=1)


def test_streams_share_the_world_and_its_truth_and_differ_in_the_policy_seed() -> None:
    a = LoopConfig(seed=4, stream=0, world_overrides={"pool_sessions": TEST_POOL})
    b = LoopConfig(seed=4, stream=1, world_overrides={"pool_sessions": TEST_POOL})
    wa, wb = build_world(a), build_world(b)
    assert wa is wb  # one world seed, one world: the stream never reaches it
    sa, sb = build_spec(wa, a), build_spec(wb, b)
    assert (sa.policy.seed, sb.policy.seed) == (4000, 4001) == (policy_seed(4, 0), policy_seed(4, 1))
    assert wa.truth(sa) is wa.truth(sb)  # the truth ignores the policy section
    assert wa.best_feasible(sa) == wb.best_feasible(sb)
    # the lattice search of larger worlds starts from the world's seed, not the policy's
    w3 = make_world(3, seed=1, pool_sessions=128)
    s0, s1 = w3.spec(policy={"seed": 11}), w3.spec(policy={"seed": 12})
    assert w3.truth(s0).search() == w3.truth(s1).search()


def test_streams_change_the_policys_draws_but_not_the_world(redis_server) -> None:
    runs = {}
    for stream in (0, 1):
        config = LoopConfig(policy="uniform", seed=5, stream=stream, hours=2, members_per_hour=200,
                            policy_overrides=TINY, world_overrides={"pool_sessions": 256}, name="streams")
        runs[stream] = run_closed_loop(config, redis_url=redis_server.url, progress=False)
    a, b = runs[0], runs[1]
    assert a.optimum == b.optimum and a.control == b.control
    assert [h.members for h in a.hours] == [h.members for h in b.hours]  # the same members every hour
    for step in (0, 1):  # the launch design, then uniform's own random arms
        arms_a = {x["arm_id"] for x in a.hours[step].arms} - {"control"}
        arms_b = {x["arm_id"] for x in b.hours[step].arms} - {"control"}
        assert arms_a != arms_b, step
    assert (summarize(a)["policy_seed"], summarize(b)["policy_seed"]) == (5000, 5001)


def test_a_run_across_the_shift_is_judged_by_the_world_of_each_hour(redis_server) -> None:
    config = LoopConfig.for_variant("shift", policy="uniform", seed=1, hours=3, members_per_hour=200,
                                    policy_overrides=TINY, world_overrides={"shift_hour": 1.0, "pool_sessions": 256},
                                    name="shifted")
    result = run_closed_loop(config, redis_url=redis_server.url, progress=False)
    assert [h.metrics.regime for h in result.hours] == [0, 1, 1]
    assert [h.world_hour for h in result.hours] == [0.5, 1.5, 2.5]
    best = [h.metrics.best_relative for h in result.hours]
    assert best[0] == pytest.approx(result.optimum["relative"]["engaged_sessions"])
    assert best[1] == best[2] == pytest.approx(result.shift["optimum"]["relative"]["engaged_sessions"]) != best[0]
    s = summarize(result)
    assert s["shift_step"] == 1
    assert s["hours_to_recover_1pct"] is not None and s["hours_to_recover_1pct"] >= 0
    share = result.spec.traffic.control_share
    assert s["regret_floor_pct_h"] == pytest.approx(100 * share * sum(best))
    assert s["final_best_lift_pct"] == pytest.approx(100 * best[-1])
