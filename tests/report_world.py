"""A closed loop for the impact report: weights change every hour, traffic and the base rate swing with the hour.

Hour ``h``: ``N_h`` members (Poisson around a daily swing) split over control and three arms by the served
weights; each member converts with ``base(h) + effect[arm]``. Control's share follows the hour (heavier at
night, when the base rate is low); the other arms' shares follow their observed lifts of the previous hour
(the loop's feedback). The served mix's true lift over control is then known exactly, and pooling raw totals
over hours is biased: control's totals over-represent the low-base hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution, normalize_weights
from bayesopt.observations import ObservationStat
from bayesopt.report import Activation
from bayesopt.spec import ExperimentSpec

SPEC = ExperimentSpec.from_dict({
    "name": "impact", "parameters": [{"name": "x", "lower": 0.0, "upper": 1.0}], "control": {"x": 0.5},
    "metrics": [{"name": "conversion", "kind": "rate"}], "objectives": [{"metric": "conversion"}],
    "guardrails": [{"metric": "conversion", "lower": -0.5, "relative": True}],
})
EFFECTS = {CONTROL_ARM_ID: 0.0, "a1": 0.004, "a2": 0.008, "a3": -0.002}
VALUES = {CONTROL_ARM_ID: 0.5, "a1": 0.2, "a2": 0.8, "a3": 1.0}
HOURS, START = 24, 1_704_067_200.0
#: Members per hour at the daily mean; the swing is +-60%.
MEAN_TRAFFIC = 4000


def base_rate(h: int) -> float:
    return 0.10 + 0.06 * math.sin(2 * math.pi * h / 24)


def traffic(h: int) -> float:
    return MEAN_TRAFFIC * (1 + 0.6 * math.sin(2 * math.pi * h / 24))


def control_weight(h: int) -> float:
    return 0.2 + 0.4 * (1 - math.sin(2 * math.pi * h / 24)) / 2


@dataclass(frozen=True)
class LoopRun:
    activations: list[Activation]
    stats: list[ObservationStat]
    true_lift: float  # member-weighted mean over hours of sum_a w_a (p_a - p_control)
    true_control: float  # member-weighted mean control rate


def run_loop(seed: int, *, drop_share: dict[str, float] | None = None) -> LoopRun:
    """One day of the loop. ``drop_share`` breaks the assignment: that share of an arm's members is lost from the
    logs (as when a client drops a slow arm's events), while the served weights stay as they were."""
    rng = np.random.default_rng(seed)
    arms = list(EFFECTS)
    previous_lift = {a: 0.0 for a in arms[1:]}
    activations, stats = [], []
    lift_sum = control_sum = members_sum = 0.0
    for h in range(HOURS):
        c = control_weight(h)
        scores = np.array([math.exp(200 * previous_lift[a]) for a in arms[1:]])
        weights = normalize_weights([c, *((1 - c) * scores / scores.sum())])
        version = h + 1
        dist = ParameterDistribution(
            experiment=SPEC.name, version=version, spec_hash=SPEC.spec_hash, control_share=0.2,
            arms=tuple(Arm(a, {"x": VALUES[a]}, w) for a, w in zip(arms, weights, strict=True)),
            created_at=START + h * 3600)
        activations.append(Activation(dist, START + h * 3600))
        n = rng.poisson(traffic(h))
        counts = rng.multinomial(n, weights)
        rates = {a: base_rate(h) + EFFECTS[a] for a in arms}
        observed = {}
        for a, count in zip(arms, counts, strict=True):
            count = int(rng.binomial(count, 1 - (drop_share or {}).get(a, 0.0)))
            conversions = int(rng.binomial(count, rates[a]))
            stats.append(ObservationStat(version, a, "conversion", "online", count, conversions, conversions))
            observed[a] = conversions / max(count, 1)
        previous_lift = {a: observed[a] - observed[CONTROL_ARM_ID] for a in arms[1:]}
        members = float(sum(s.count for s in stats[-len(arms):]))
        lift_sum += members * sum(w * EFFECTS[a] for a, w in zip(arms, weights, strict=True))
        control_sum += members * rates[CONTROL_ARM_ID]
        members_sum += members
    return LoopRun(activations, stats, lift_sum / members_sum, control_sum / members_sum)
