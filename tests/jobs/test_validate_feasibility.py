"""The publish-time guardrail check: feasibility information must be there when a guardrail needs it."""

from __future__ import annotations

from typing import Any

import pytest

from bayesopt.distribution import ParameterDistribution
from jobs.validate import FEASIBILITY_STATEMENT, proposal_problems
from tests.factories import make_distribution, make_spec


def dist_with(diagnostics: dict[str, Any], **spec_overrides: Any) -> tuple[Any, ParameterDistribution]:
    spec = make_spec(**spec_overrides)
    return spec, make_distribution(spec, 2).replace(diagnostics=diagnostics)


def feasibility(*ps: float) -> dict[str, Any]:
    return {f"arm{i}": {"p_feasible": p} for i, p in enumerate(ps, start=1)}


def missing_problems(problems: list[str]) -> list[str]:
    return [p for p in problems if "have no p_feasible" in p]


@pytest.mark.parametrize("kind", ["constrained_ts", "utility_ts", "initial_design"])
def test_a_model_or_launch_design_without_feasibility_is_refused(kind: str) -> None:
    spec, dist = dist_with({"kind": kind, "arms": {}})
    [problem] = missing_problems(proposal_problems(spec, dist))
    assert problem.startswith("diagnostics.arms: 2 of 2 arms (arm1, arm2) have no p_feasible")
    assert f"kind {kind!r}" in problem and f"diagnostics['{FEASIBILITY_STATEMENT}']" in problem


def test_every_arm_with_feasibility_passes() -> None:
    spec, dist = dist_with({"kind": "constrained_ts", "arms": feasibility(0.95, 0.99)})
    assert proposal_problems(spec, dist) == []


def test_an_explicit_statement_exempts_the_launch_design() -> None:
    spec, dist = dist_with({"kind": "initial_design", "arms": {}, FEASIBILITY_STATEMENT: "no data yet: no model to ask"})
    assert proposal_problems(spec, dist) == []


@pytest.mark.parametrize("statement", ["", "   ", 3, ["no"]])
def test_a_statement_must_be_a_non_empty_string(statement: Any) -> None:
    spec, dist = dist_with({"kind": "initial_design", FEASIBILITY_STATEMENT: statement})
    problems = proposal_problems(spec, dist)
    assert any(p.startswith(f"diagnostics.{FEASIBILITY_STATEMENT}: must be a non-empty string") for p in problems)
    assert missing_problems(problems)


def test_baselines_that_claim_no_model_pass_without_feasibility() -> None:
    for kind in ("uniform", "ab_grid", "arm_ts", "ax"):
        spec, dist = dist_with({"kind": kind})
        assert proposal_problems(spec, dist) == [], kind


def test_partial_feasibility_is_refused_whatever_the_kind() -> None:
    spec, dist = dist_with({"kind": "arm_ts", "arms": feasibility(0.99)})
    [problem] = missing_problems(proposal_problems(spec, dist))
    assert problem.startswith("diagnostics.arms: 1 of 2 arms (arm2) have no p_feasible")


@pytest.mark.parametrize("value", [1.5, -0.1, "high", None, True])
def test_feasibility_must_be_a_probability(value: Any) -> None:
    spec, dist = dist_with({"kind": "constrained_ts", "arms": {"arm1": {"p_feasible": value}, "arm2": {"p_feasible": 1.0}}})
    assert f"diagnostics.arms.arm1.p_feasible: must be a probability in [0, 1], got {value!r}" in proposal_problems(spec, dist)


def test_without_guardrails_nothing_is_required() -> None:
    spec, dist = dist_with({"kind": "constrained_ts", "arms": {}}, guardrails=[])
    assert proposal_problems(spec, dist) == []
