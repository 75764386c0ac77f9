"""Stage 4 of a refit: check a proposed distribution before anyone can be served it.

The distribution record checks its own invariants when it is built (weights, ids); this adds what needs the
spec and the previous version: bounds, the control arm and its share, an arm-count cap, the guardrail
diagnostics (how much traffic goes to arms that are probably infeasible) and JSON-safe diagnostics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from bayesopt.distribution import WEIGHT_SUM_TOLERANCE, ParameterDistribution, plain_json
from bayesopt.spec import ExperimentSpec


def proposal_problems(
    spec: ExperimentSpec, dist: ParameterDistribution, previous: ParameterDistribution | None = None
) -> list[str]:
    """Every reason not to publish ``dist``, as ``path: message``; empty when it may be published."""
    out = list(dist.problems(spec))
    if dist.spec_hash != spec.spec_hash:
        out.append(f"spec_hash: {dist.spec_hash!r} was fitted under another spec than the current {spec.spec_hash!r}")
    out += _control_problems(spec, dist)
    cap = spec.policy.max_arms  # control counts as one of the arms, as in bayesopt.allocation
    if len(dist.arms) > cap:
        out.append(f"arms: {len(dist.arms)} arms exceed policy.max_arms = {cap} (control included)")
    out += _guardrail_problems(spec, dist)
    out += _diagnostics_problems(dist.diagnostics)
    if previous is not None:
        out += _previous_problems(dist, previous)
    return out


def _control_problems(spec: ExperimentSpec, dist: ParameterDistribution) -> list[str]:
    out = []
    try:
        control = dist.control_arm
    except KeyError:
        return []  # dist.problems() names the missing control arm
    moved = {k: v for k, v in control.values.items() if not math.isclose(v, spec.control.get(k, math.nan), rel_tol=1e-12)}
    if moved:
        out.append(f"arms.{dist.control_arm_id}.values: {moved} differ from the spec's control {dict(spec.control)}")
    share = spec.traffic.control_share
    if dist.control_share + WEIGHT_SUM_TOLERANCE < share:
        out.append(f"control_share: {dist.control_share} is below traffic.control_share {share}")
    if control.weight + WEIGHT_SUM_TOLERANCE < share:
        out.append(f"arms.{dist.control_arm_id}.weight: {control.weight:.6g} is below traffic.control_share {share}")
    return out


def _guardrail_problems(spec: ExperimentSpec, dist: ParameterDistribution) -> list[str]:
    """Traffic on arms whose probability of meeting every guardrail is under the threshold must stay small."""
    arms = dist.diagnostics.get("arms")
    if not spec.guardrails or not isinstance(arms, Mapping):
        return []
    threshold = spec.policy.feasibility_threshold
    unsafe = [
        a for a in dist.arms
        if a.arm_id != dist.control_arm_id
        and isinstance(arms.get(a.arm_id), Mapping)
        and isinstance(arms[a.arm_id].get("p_feasible"), (int, float))
        and arms[a.arm_id]["p_feasible"] < threshold
    ]
    share = sum(a.weight for a in unsafe)
    if share > spec.policy.max_unsafe_share + WEIGHT_SUM_TOLERANCE:
        names = ", ".join(a.arm_id for a in unsafe[:5]) + (", ..." if len(unsafe) > 5 else "")
        return [
            f"diagnostics: {share:.3f} of traffic goes to arms with p_feasible < {threshold} ({names}); "
            f"policy.max_unsafe_share allows {spec.policy.max_unsafe_share}"
        ]
    return []


def _diagnostics_problems(diagnostics: Mapping[str, Any]) -> list[str]:
    try:
        json.dumps(plain_json(diagnostics), allow_nan=False)
    except (TypeError, ValueError) as exc:
        return [f"diagnostics: not storable as strict JSON ({exc})"]
    return []


def _previous_problems(dist: ParameterDistribution, previous: ParameterDistribution) -> list[str]:
    out = []
    if dist.experiment != previous.experiment:
        out.append(f"experiment: {dist.experiment!r} is not the previous version's {previous.experiment!r}")
    if dist.control_arm_id != previous.control_arm_id:
        out.append(f"control_arm_id: {dist.control_arm_id!r} differs from the previous {previous.control_arm_id!r}")
    return out
