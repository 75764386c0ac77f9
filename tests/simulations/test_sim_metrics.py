"""Hourly serving metrics and window statistics, checked against the world's truth by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution
from bayesopt.spec import ExperimentSpec
from simulations.baselines import serve
from simulations.metrics import metrics_frame, served_metrics
from simulations.observe import simulate_window
from simulations.world import RankingWorld


def mix(spec: ExperimentSpec, values: dict[str, float], weight: float) -> ParameterDistribution:
    """Control plus one arm at ``values`` with ``weight``."""
    arms = (Arm(CONTROL_ARM_ID, dict(spec.control), 1 - weight), Arm("a1", values, weight))
    return ParameterDistribution(experiment=spec.name, version=1, arms=arms, spec_hash=spec.spec_hash, control_share=0.2)


def test_control_alone(world: RankingWorld, spec: ExperimentSpec) -> None:
    d = serve(spec, []).to_distribution(spec, version=1, created_at=0.0)
    hour = 8.0
    m = served_metrics(world, spec, d, hour)
    control = world.expected(spec.control, hour)["engaged_sessions"]
    best = world.best_feasible(spec).objective * world.tod_multiplier(hour)
    assert m.objective == pytest.approx(control) and m.objective_relative == pytest.approx(0.0, abs=1e-12)
    assert m.regret == pytest.approx(best - control) and m.relative_regret == pytest.approx((best - control) / control)
    assert m.unsafe_share == 0 and m.entropy == 0 and m.num_arms == 1 and m.effective_arms == 1
    assert m.guardrails == pytest.approx({"applies": 0.0, "shares": 0.0})


def test_regret_is_linear_in_the_weight_on_the_best_arm(world: RankingWorld, spec: ExperimentSpec) -> None:
    best = world.best_feasible(spec)
    alone = served_metrics(world, spec, serve(spec, []).to_distribution(spec, version=1, created_at=0.0), 20.0)
    m = served_metrics(world, spec, mix(spec, dict(best.values), 0.75), 20.0)
    assert m.regret == pytest.approx(0.25 * alone.regret)
    assert m.objective_relative == pytest.approx(0.75 * best.relative["engaged_sessions"])
    assert m.guardrails["applies"] == pytest.approx(0.75 * best.relative["applies"])
    assert m.unsafe_share == 0
    assert m.entropy == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert m.num_arms == 2


def test_traffic_on_the_unconstrained_optimum_counts_as_unsafe(world: RankingWorld, spec: ExperimentSpec) -> None:
    free = world.best_objective(spec)
    m = served_metrics(world, spec, mix(spec, dict(free.values), 0.8), 12.0)
    assert m.unsafe_share == pytest.approx(0.8)
    assert m.regret < 0  # infeasible traffic can beat the best feasible arm on the objective alone
    frame = metrics_frame([(0, m), (1, m)])
    assert list(frame["step"]) == [0, 1] and "guardrail.applies" in frame.columns


def test_simulated_windows_add_up(world: RankingWorld, spec: ExperimentSpec) -> None:
    d = mix(spec, {"share_weight": 3.0, "apply_weight": 1.5}, 0.5)
    stats = simulate_window(world, d, hour=3.0, sessions=20_000, rng=np.random.default_rng(0))
    assert set(stats["arm_id"]) == {CONTROL_ARM_ID, "a1"} and set(stats["metric"]) == set(world.metric_names)
    per_metric = stats.groupby("metric")["count"].sum()
    assert (per_metric == 20_000).all()
    assert (stats["sum_sq"] == stats["sum"]).all()  # 0/1 outcomes
    assert (stats["version"] == 1).all() and (stats["source"] == "online").all()
