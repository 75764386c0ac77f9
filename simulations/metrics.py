"""What a served distribution is worth in the world, hour by hour, by true expected metrics.

For a closed-loop run the runner calls :func:`served_metrics` once per simulated hour with the distribution it
served; :func:`metrics_frame` stacks the records for plots and benchmark tables. The hour given is the
world's (hours since midnight of the run's first day): it sets the time of day and, in a world with a ranker
release, which world is in force, so regret and feasibility are judged against the best feasible arm then.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayesopt.distribution import ParameterDistribution
from bayesopt.spec import ExperimentSpec
from simulations.world import RankingWorld


@dataclass(frozen=True)
class HourMetrics:
    """One hour of serving, judged by the world's truth.

    Attributes:
        hour: hour of day the distribution was served (``world_hour % 24``).
        objective: expected objective per session of the traffic mix (weights times arm metrics) at ``hour``.
        objective_relative: ``objective``'s relative change against serving control alone.
        guardrails: per guardrail metric, the mix's value in the guardrail's own terms (relative change against
            control for a relative guardrail, the metric itself otherwise).
        unsafe_share: traffic share on arms that break at least one guardrail by true metrics.
        regret: best feasible arm's objective minus the mix's, at ``hour`` (objective units, sign-adjusted so
            that positive is worse; negative when infeasible arms beat the best feasible one).
        relative_regret: ``regret`` over control's objective at ``hour``.
        entropy: Shannon entropy of the arm weights, in nats.
        num_arms: arms with positive weight (control included).
        effective_arms: ``exp(entropy)``, the number of equally weighted arms with the same entropy.
        world_hour: the hour on the world's clock (hours since midnight of the first day).
        regime: the world's regime in force (0; 1 after a ranker release).
        best_relative: the best feasible arm's objective change against control, in that regime.
        gap: ``regret`` over the best feasible arm's objective: the mix's shortfall as a share of the best.
        floor_relative_regret: the ``relative_regret`` of serving control at the spec's ``control_share`` and the
            best feasible arm to everyone else: what the control share alone costs this hour.
    """

    hour: float
    objective: float
    objective_relative: float
    guardrails: Mapping[str, float]
    unsafe_share: float
    regret: float
    relative_regret: float
    entropy: float
    num_arms: int
    effective_arms: float
    world_hour: float = 0.0
    regime: int = 0
    best_relative: float = 0.0
    gap: float = 0.0
    floor_relative_regret: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A flat dict: guardrails become ``guardrail.<metric>`` keys."""
        doc = asdict(self)
        doc.update({f"guardrail.{m}": v for m, v in doc.pop("guardrails").items()})
        return doc


def served_metrics(
    world: RankingWorld, spec: ExperimentSpec, distribution: ParameterDistribution, hour: float
) -> HourMetrics:
    """Judge ``distribution`` served during world hour ``hour`` (see :class:`HourMetrics`)."""
    truth = world.truth(spec, hour)
    optimum = world.best_feasible(spec, hour)
    weights = np.array(distribution.weights)  # k
    values = np.array([[float(a.values[p]) for p in spec.parameter_names] for a in distribution.arms])  # k x d
    daily = truth.metrics(values)  # k x m, daily level: feasibility does not depend on the hour
    tod = world.tod_multiplier(hour)
    served = weights @ daily  # m
    objective = float(truth.objective_values(served[None])[0]) * tod
    control_objective = float(truth.objective_values(truth.control[None])[0]) * tod
    rel = truth.relative(served[None])[0]
    guardrails = {}
    for g in spec.guardrails:
        j = world.metric_names.index(g.metric)
        guardrails[g.metric] = float(rel[j] if g.relative else served[j] * tod)
    unsafe = float(weights[~truth.feasible(daily)].sum())
    regret = truth.sign * (optimum.objective * tod - objective)
    best_gain = truth.sign * (optimum.objective - float(truth.objective_values(truth.control[None])[0]))  # daily
    share = float(spec.traffic.control_share)
    positive = weights[weights > 0]
    entropy = float(-(positive * np.log(positive)).sum())
    return HourMetrics(
        hour=float(hour) % 24.0,
        objective=objective,
        objective_relative=(objective - control_objective) / abs(control_objective),
        guardrails=guardrails,
        unsafe_share=unsafe,
        regret=float(regret),
        relative_regret=float(regret / abs(control_objective)),
        entropy=entropy,
        num_arms=int(len(positive)),
        effective_arms=math.exp(entropy),
        world_hour=float(hour),
        regime=int(truth.regime),
        best_relative=float(optimum.relative[truth.objective.metric]),
        gap=float(regret / (abs(optimum.objective) * tod)),
        floor_relative_regret=float(share * best_gain * tod / abs(control_objective)),
    )


def metrics_frame(records: Iterable[HourMetrics | tuple[Any, HourMetrics]]) -> pd.DataFrame:
    """Stack records into a frame, one row each; ``(step, record)`` pairs add a ``step`` column."""
    rows = []
    for item in records:
        if isinstance(item, HourMetrics):
            rows.append(item.to_dict())
        else:
            step, record = item
            rows.append({"step": step, **record.to_dict()})
    return pd.DataFrame(rows)
