"""The launch design: version 1 of a distribution, before any data (light: numpy and scipy only)."""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution
from bayesopt.lattice import lattice_arm, to_unit
from bayesopt.proposal import Proposal
from bayesopt.spec import ExperimentSpec


def initial_distribution(spec: ExperimentSpec, *, version: int = 1, now: float | None = None) -> ParameterDistribution:
    """Version ``version`` (default 1) of ``spec``'s distribution: the launch design of :func:`initial_proposal`."""
    return initial_proposal(spec).to_distribution(spec, version=version, created_at=now)


def initial_proposal(spec: ExperimentSpec) -> Proposal:
    """A space-filling design on the lattice around control, plus control at ``traffic.control_share``.

    Scrambled Sobol points fill the box ``control ± initial_radius`` (in unit coordinates, clipped to the cube);
    each is snapped to the lattice and duplicates are dropped, so fewer than ``initial_arms`` arms can result
    on coarse lattices. At most ``max_arms - 1`` arms join control. The design is a pure function of the spec.
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
    share = spec.traffic.control_share
    weights = [share] + [(1.0 - share) / len(arms)] * len(arms) if arms else [1.0]
    weights[-1] = 1.0 - sum(weights[:-1])  # the sum is exactly one and control keeps exactly its share
    arm_list = [Arm(CONTROL_ARM_ID, dict(spec.control), weights[0])]
    arm_list += [Arm(a, v, w) for (a, v), w in zip(sorted(arms.items()), weights[1:], strict=True)]
    return Proposal(arms=tuple(arm_list), diagnostics={"kind": "initial_design", "arms": {}})
