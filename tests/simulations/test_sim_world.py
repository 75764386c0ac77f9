"""The synthetic world: determinism, Monte Carlo agreement, time of day, and the guardrail tension."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from simulations.oracle import best_feasible
from simulations.world import DEFAULT_GUARDRAILS, RankingWorld, WorldConfig, make_world

from .conftest import TEST_POOL

#: Standard errors allowed between a sampled mean and its expectation: two-sided normal tail ~1e-6 per check.
Z = 4.9


def test_expected_metrics_are_deterministic_for_a_seed() -> None:
    X = np.random.default_rng(0).uniform(0, 4, size=(50, 2))
    a = make_world(2, seed=3, pool_sessions=256).expected_metrics(X)
    b = make_world(2, seed=3, pool_sessions=256).expected_metrics(X)
    c = make_world(2, seed=4, pool_sessions=256).expected_metrics(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (50, 3) and np.all((a > 0) & (a < 1))


def test_chunks_do_not_change_the_answer(world: RankingWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    X = np.random.default_rng(1).uniform(0, 4, size=(7, 2))
    whole = world.expected_metrics(X)
    monkeypatch.setattr("simulations.world.SCORES_PER_CHUNK", 1)  # one point per chunk
    np.testing.assert_allclose(world.expected_metrics(X), whole, rtol=1e-6)


@pytest.mark.parametrize("count_metrics", [(), ("long_dwells", "engaged_sessions")])
def test_session_means_converge_to_expected_metrics(count_metrics: tuple[str, ...]) -> None:
    world = make_world(3, seed=11, pool_sessions=TEST_POOL, count_metrics=count_metrics)
    rng = np.random.default_rng(5)
    n = 60_000
    for x, hour in (([1.0, 1.0, 1.0], 3.0), ([3.5, 0.2, 2.0], 20.0)):
        sampled = world.sample_sessions(x, n, hour, rng)
        expected = dict(zip(world.metric_names, world.expected_metrics([x], hour)[0], strict=True))
        for metric, y in sampled.items():
            if world.metric_kinds[metric] == "rate":
                assert set(np.unique(y)) <= {0.0, 1.0}
                sd = math.sqrt(expected[metric] * (1 - expected[metric]))
            else:
                assert np.all(y == np.round(y)) and y.min() >= 0
                sd = float(y.std(ddof=1))
            assert abs(y.mean() - expected[metric]) <= Z * sd / math.sqrt(n), (metric, x, hour)


def test_time_of_day_multiplies_every_arm_alike(world: RankingWorld) -> None:
    X = np.random.default_rng(2).uniform(0, 4, size=(20, 2))
    daily = world.expected_metrics(X)
    for hour in (0.0, 6.5, 20.0):
        np.testing.assert_allclose(world.expected_metrics(X, hour), daily * world.tod_multiplier(hour), rtol=1e-12)
    amplitude = world.config.tod_amplitude
    assert world.tod_multiplier(world.config.peak_hour) == pytest.approx(1 + amplitude)
    assert world.tod_multiplier(world.config.peak_hour + 12) == pytest.approx(1 - amplitude)
    assert np.mean([world.tod_multiplier(h) for h in range(24)]) == pytest.approx(1.0)
    assert world.traffic(world.config.peak_hour) > world.traffic(world.config.peak_hour + 12) > 0


def test_spec_matches_the_world(world: RankingWorld, spec) -> None:
    assert spec.parameter_names == ["share_weight", "apply_weight"]
    assert spec.metric_names == ["engaged_sessions", "shares", "applies"]
    assert {m.kind for m in spec.metrics} == {"rate"}
    assert spec.objectives[0].metric == "engaged_sessions"
    assert {(g.metric, g.lower, g.relative) for g in spec.guardrails} == {(m, v, True) for m, v in DEFAULT_GUARDRAILS.items()}
    counted = make_world(2, pool_sessions=64, count_metrics=("shares",)).spec()
    assert {m.name: m.kind for m in counted.metrics}["shares"] == "mean"


def test_best_feasible_is_feasible_and_beats_control(world: RankingWorld, spec) -> None:
    best = world.best_feasible(spec)
    assert best.feasible
    for g in spec.guardrails:
        assert best.relative[g.metric] >= g.lower
    # The world is built so that a feasible lattice arm gains well over 1% engaged sessions on control.
    assert best.relative["engaged_sessions"] > 0.01
    assert world.regret(spec, [spec.control], [1.0]) > 0
    assert world.regret(spec, [best.values], [1.0]) == pytest.approx(0.0, abs=1e-15)


def test_objective_optimum_breaks_a_guardrail(world: RankingWorld, spec) -> None:
    best = world.best_feasible(spec)
    free = world.best_objective(spec)
    assert not free.feasible
    assert free.objective > best.objective
    # The tension is large: the unconstrained optimum loses far more than the 1% of applies allowed.
    assert free.relative["applies"] < -0.05


def test_larger_lattices_are_searched_not_enumerated() -> None:
    world = make_world(3, seed=1, pool_sessions=256)
    spec = world.spec()
    best = best_feasible(world, spec)  # 33**3 points: Sobol starts plus pattern search
    assert best.feasible and best.relative["engaged_sessions"] > 0
    assert set(best.values) == set(spec.parameter_names)


def test_sampling_an_arm_hour_takes_milliseconds() -> None:
    world = make_world(2)
    rng = np.random.default_rng(0)
    world.sample_sessions([1.0, 1.0], 5_000, 12.0, rng)
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        world.sample_sessions([1.0, 1.0], 5_000, 12.0, rng)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.05  # about 4 ms unloaded; generous for a busy machine


def test_config_is_validated_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="num_parameters must be in \\[2, 6\\]"):
        WorldConfig(num_parameters=7)
    with pytest.raises(ValueError, match="count_metrics"):
        WorldConfig(count_metrics=("nope",))
    with pytest.raises(ValueError, match="guardrails on unknown metrics"):
        make_world(2, pool_sessions=8).spec(guardrails={"saves": -0.01})


def test_six_parameters() -> None:
    world = make_world(6, pool_sessions=128)
    assert len(world.parameter_names) == 6 and len(world.metric_names) == 7
    assert world.expected_metrics(np.ones((3, 6))).shape == (3, 7)
    assert world.spec().spec_hash
