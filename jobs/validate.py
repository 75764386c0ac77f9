"""Stage 4 of a refit: check a proposed distribution before anyone can be served it.

The distribution record checks its own invariants when it is built (weights, ids); this adds what needs the
spec and the previous version: bounds, the control arm and its share, an arm-count cap, the guardrail
diagnostics (feasibility information present where a guardrail needs it, and how much traffic goes to arms
that are probably infeasible; see :func:`_guardrail_problems`) and JSON-safe diagnostics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from bayesopt.distribution import WEIGHT_SUM_TOLERANCE, ParameterDistribution, plain_json
from bayesopt.spec import POLICY_METHODS, ExperimentSpec

#: The diagnostics key in which a distribution without per-arm ``p_feasible`` says why it has none.
FEASIBILITY_STATEMENT = "feasibility"
#: ``diagnostics["kind"]`` of the launch design (:mod:`bayesopt.launch_design`).
LAUNCH_DESIGN_KIND = "initial_design"


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
    """Feasibility information is present where it must be, and little traffic goes to probably infeasible arms.

    Only under a spec with guardrails. The rule, per distribution (``diagnostics["arms"][arm_id]["p_feasible"]``
    is an arm's probability of meeting every guardrail):

    1. every ``p_feasible`` given (control's included) is a number in [0, 1];
    2. every non-control arm must have one when ``diagnostics["kind"]`` is a model kind
       (:data:`~bayesopt.spec.POLICY_METHODS`, what :mod:`bayesopt.policy` stamps), when the kind is the launch
       design's (``initial_design``), or when any arm has one (partial information is a bug, not a choice);
       a distribution may instead say why it has none in ``diagnostics["feasibility"]``, a non-empty string
       (the launch design, before any data, has no model to ask);
    3. the posterior expected share of traffic on guardrail-breaking arms, ``sum_a w_a (1 - p_feasible_a)``
       over the non-control arms that report one, is at most ``policy.max_unsafe_share`` (the risk budget;
       control is never counted).

    Other kinds without any ``p_feasible`` (the closed-loop baselines, which model no guardrail) pass rule 2:
    they claim no model whose feasibility could be checked.
    """
    if not spec.guardrails:
        return []
    diagnostics = dist.diagnostics
    arms = diagnostics.get("arms")
    arms = arms if isinstance(arms, Mapping) else {}
    out: list[str] = []
    known: dict[str, float] = {}
    for arm_id, info in arms.items():
        if not isinstance(info, Mapping) or "p_feasible" not in info:
            continue
        p = info["p_feasible"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            out.append(f"diagnostics.arms.{arm_id}.p_feasible: must be a probability in [0, 1], got {p!r}")
        else:
            known[str(arm_id)] = float(p)
    exploring = [a for a in dist.arms if a.arm_id != dist.control_arm_id]
    missing = [a.arm_id for a in exploring if a.arm_id not in known]
    kind = diagnostics.get("kind")
    statement = diagnostics.get(FEASIBILITY_STATEMENT)
    if statement is not None and not (isinstance(statement, str) and statement.strip()):
        out.append(f"diagnostics.{FEASIBILITY_STATEMENT}: must be a non-empty string saying why no arm has "
                   f"p_feasible, got {statement!r}")
    required = kind in POLICY_METHODS or kind == LAUNCH_DESIGN_KIND or bool(known)
    if missing and required and not (isinstance(statement, str) and statement.strip()):
        names = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        out.append(
            f"diagnostics.arms: {len(missing)} of {len(exploring)} arms ({names}) have no p_feasible, but the spec has "
            f"guardrails and the distribution (kind {kind!r}) gives no feasibility for them; report each arm's "
            f"p_feasible, or say why there is none in diagnostics['{FEASIBILITY_STATEMENT}']"
        )
    risky = sorted((a for a in exploring if a.arm_id in known), key=lambda a: -a.weight * (1.0 - known[a.arm_id]))
    expected = sum(a.weight * (1.0 - known[a.arm_id]) for a in risky)
    if expected > spec.policy.max_unsafe_share + WEIGHT_SUM_TOLERANCE:
        names = ", ".join(a.arm_id for a in risky[:5]) + (", ..." if len(risky) > 5 else "")
        out.append(
            f"diagnostics: the expected share of traffic on guardrail-breaking arms is {expected:.4f} (most from "
            f"{names}); policy.max_unsafe_share allows {spec.policy.max_unsafe_share}"
        )
    return out


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
