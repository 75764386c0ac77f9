"""Proposal validation: what must be true of a distribution before it is published."""

from __future__ import annotations

import math

from bayesopt.distribution import CONTROL_ARM_ID, Arm
from jobs.validate import proposal_problems
from tests.factories import make_distribution, make_spec


def test_a_sound_distribution_has_no_problems() -> None:
    spec = make_spec()
    assert proposal_problems(spec, make_distribution(spec, 2), make_distribution(spec, 1)) == []


def test_values_outside_the_bounds_are_refused() -> None:
    spec = make_spec()
    dist = make_distribution(spec, 2)
    arms = [a if a.arm_id == CONTROL_ARM_ID else Arm(a.arm_id, {**a.values, "x1": 5.0}, a.weight) for a in dist.arms]
    problems = proposal_problems(spec, dist.replace(arms=tuple(arms)))
    assert any("values.x1: 5.0 is outside the bounds [0.0, 2.0]" in p for p in problems)


def test_control_must_stay_at_the_spec_values_and_share() -> None:
    spec = make_spec()
    dist = make_distribution(spec, 2).replace(control_share=0.1)
    dist = dist.replace(arms=(Arm(CONTROL_ARM_ID, dist.arms[0].values, 0.1), dist.arms[1], Arm("arm2", dist.arms[2].values, 0.6)))
    moved = [Arm(a.arm_id, {**a.values, "x1": 0.5}, a.weight) if a.arm_id == CONTROL_ARM_ID else a for a in dist.arms]
    problems = proposal_problems(spec, dist.replace(arms=tuple(moved)))
    assert any(p.startswith("control_share: 0.1 is below traffic.control_share 0.2") for p in problems)
    assert any(p.startswith("arms.control.weight: 0.1 is below traffic.control_share 0.2") for p in problems)
    assert any("differ from the spec's control" in p for p in problems)


def test_more_arms_than_the_cap_are_refused() -> None:
    spec = make_spec(policy={"max_arms": 3, "num_draws": 500, "num_candidates": 128, "initial_arms": 2})
    dist = make_distribution(spec, 2, weights=[0.4, 0.2, 0.2, 0.2])
    assert any("4 arms exceed policy.max_arms = 3 (control included)" in p for p in proposal_problems(spec, dist))
    assert not any("exceed" in p for p in proposal_problems(spec, make_distribution(spec, 2, weights=[0.4, 0.3, 0.3])))


def test_the_expected_unsafe_share_is_held_to_the_risk_budget() -> None:
    spec = make_spec(policy={"max_unsafe_share": 0.05})
    dist = make_distribution(spec, 2)
    w1, w2 = dist.arm("arm1").weight, dist.arm("arm2").weight
    diagnostics = {"arms": {"arm1": {"p_feasible": 0.2}, "arm2": {"p_feasible": 0.9}}}
    problems = proposal_problems(spec, dist.replace(diagnostics=diagnostics))
    assert problems == [
        f"diagnostics: the expected share of traffic on guardrail-breaking arms is {0.8 * w1 + 0.1 * w2:.4f} (most "
        "from arm1, arm2); policy.max_unsafe_share allows 0.05"
    ]
    # Just inside the budget: both arms at a risk that costs exactly max_unsafe_share.
    p = 1 - 0.05 / (w1 + w2)
    safe = {"arms": {"arm1": {"p_feasible": p}, "arm2": {"p_feasible": p}}}
    assert proposal_problems(spec, dist.replace(diagnostics=safe)) == []


def test_non_finite_diagnostics_are_refused_before_they_reach_json() -> None:
    spec = make_spec()
    dist = make_distribution(spec, 2).replace(diagnostics={"arms": {"arm1": {"p_best": math.nan}}})
    assert any(p.startswith("diagnostics: not storable as strict JSON") for p in proposal_problems(spec, dist))


def test_a_distribution_fitted_under_another_spec_is_refused() -> None:
    spec = make_spec()
    dist = make_distribution(spec, 2).replace(spec_hash="0" * 16)
    assert any(p.startswith("spec_hash: ") for p in proposal_problems(spec, dist))
