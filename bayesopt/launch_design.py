"""The launch design: version 1 of a distribution, before any data (light: numpy and scipy only)."""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution
from bayesopt.lattice import lattice_arm, to_unit
from bayesopt.proposal import Proposal
from bayesopt.spec import ExperimentSpec

#: Before any data, a launch arm breaks each guardrail with this probability: a smooth metric rises in half
#: the directions around control and falls in the other half, and a guardrail near control's level (the usual
#: "may not drop by more than 1%") is broken by a fall. With ``G`` guardrails taken as independent, a launch
#: arm is feasible with probability ``(1 - p)**G``.
PRIOR_BREAK_PER_GUARDRAIL = 0.5


def launch_prior_risk(spec: ExperimentSpec) -> float:
    """The probability that a launch arm breaks at least one of ``spec``'s guardrails, before any data."""
    return 1.0 - (1.0 - PRIOR_BREAK_PER_GUARDRAIL) ** len(spec.guardrails)


def initial_distribution(spec: ExperimentSpec, *, version: int = 1, now: float | None = None) -> ParameterDistribution:
    """Version ``version`` (default 1) of ``spec``'s distribution: the launch design of :func:`initial_proposal`."""
    return initial_proposal(spec).to_distribution(spec, version=version, created_at=now)


def initial_proposal(spec: ExperimentSpec) -> Proposal:
    """A space-filling design on the lattice around control, within the risk budget, plus control.

    Scrambled Sobol points fill the box ``control ± initial_radius`` (in unit coordinates, clipped to the cube);
    each is snapped to the lattice and duplicates are dropped, so fewer than ``initial_arms`` arms can result
    on coarse lattices. At most ``max_arms - 1`` arms join control. With guardrails, each launch arm is taken to
    break one with probability :func:`launch_prior_risk`, and the arms share at most
    ``max_unsafe_share / launch_prior_risk`` of traffic (control takes the rest), so the first version keeps
    the same risk budget as every later one. The design is a pure function of the spec.
    """
    d = len(spec.parameters)
    policy = spec.policy
    center = to_unit(spec, spec.control)
    sampler = qmc.Sobol(d, scramble=True, seed=policy.seed)
    n = 1 << max(0, (policy.initial_arms - 1).bit_length())  # Sobol balance wants a power of two
    points = sampler.random(n)[: min(policy.initial_arms, policy.max_arms - 1)]
    lo = np.clip(center - policy.initial_radius, 0.0, 1.0)
    hi = np.clip(center + policy.initial_radius, 0.0, 1.0)
    unit = lo + points * (hi - lo)  # n x d
    arms: dict[str, dict[str, float]] = {}
    for u in unit:
        arm, values = lattice_arm(spec, u)
        if values != dict(spec.control):
            arms.setdefault(arm, values)
    explore = 1.0 - spec.traffic.control_share
    prior_risk = launch_prior_risk(spec)
    if prior_risk > 0:
        explore = min(explore, policy.max_unsafe_share / prior_risk)
    weights = [1.0 - explore] + [explore / len(arms)] * len(arms) if arms else [1.0]
    weights[0] = 1.0 - sum(weights[1:])  # the sum is exactly one; rounding lands on control, never below its share
    arm_list = [Arm(CONTROL_ARM_ID, dict(spec.control), weights[0])]
    arm_list += [Arm(a, v, w) for (a, v), w in zip(sorted(arms.items()), weights[1:], strict=True)]
    p_feasible = 1.0 - prior_risk
    per_arm = {a.arm_id: {"p_feasible": p_feasible, "prior": True} for a in arm_list[1:]}
    risk = {"budget": policy.max_unsafe_share, "expected_unsafe_share": sum(weights[1:]) * (1.0 - p_feasible)}
    return Proposal(arms=tuple(arm_list), diagnostics={"kind": "initial_design", "arms": per_arm, "risk": risk})
