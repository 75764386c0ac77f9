"""Per-arm Thompson sampling over a fixed set of lattice arms, with no GP: arms share nothing but a prior.

Each arm's relative change against control, per metric, gets a Gaussian posterior from its pooled
within-window estimates (:func:`~simulations.baselines.common.relative_effects`) and an empirical-Bayes
prior ``N(0, tau_m**2)``, ``tau_m`` fitted to the spread of the observed arms. Every posterior draw picks the
best arm among those that meet every guardrail in that draw (control, a change of zero, always qualifies);
arms are served in proportion to how often they win, control keeping at least its share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayesopt.distribution import ParameterDistribution
from bayesopt.proposal import Proposal
from bayesopt.spec import ExperimentSpec
from simulations.baselines.common import (
    ArmPoint,
    control_levels,
    fixed_arm_set,
    guardrail_ok,
    policy_rng,
    relative_effects,
    serve,
)

#: Prior scale of a relative change (5%) while fewer than :data:`MIN_ARMS_FOR_PRIOR` arms have data.
PRIOR_SCALE = 0.05
MIN_ARMS_FOR_PRIOR = 3
#: The fitted prior scale never drops below this share of :data:`PRIOR_SCALE`.
PRIOR_FLOOR = 0.1
#: Draws per hour are ``min(spec.policy.num_draws, MAX_DRAWS)``: win shares need no more precision.
MAX_DRAWS = 4000


@dataclass
class ArmTSPolicy:
    """Thompson sampling per arm; ``num_arms`` defaults to ``max_arms - 1`` (every arm servable at once)."""

    name: str = "arm_ts"
    num_arms: int | None = None
    prior_scale: float = PRIOR_SCALE
    _arms: dict[str, list[ArmPoint]] = field(default_factory=dict, repr=False)

    def arms(self, spec: ExperimentSpec) -> list[ArmPoint]:
        """The fixed arm set for ``spec``."""
        if spec.spec_hash not in self._arms:
            k = self.num_arms or spec.policy.max_arms - 1
            self._arms[spec.spec_hash] = fixed_arm_set(spec, k, seed=spec.policy.seed)
        return self._arms[spec.spec_hash]

    def posterior(self, spec: ExperimentSpec, table: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per metric used (objective, guardrails): posterior means and variances over the arm set (``k`` each)."""
        ids = [a for a, _ in self.arms(spec)]
        effects = relative_effects(spec, table)
        metrics = dict.fromkeys([spec.objectives[0].metric, *(g.metric for g in spec.guardrails)])
        out = {}
        for metric in metrics:
            rows = effects[effects["metric"] == metric].set_index("arm_id").reindex(ids)
            est, var = rows["effect"].to_numpy(dtype=float), rows["variance"].to_numpy(dtype=float)  # k, NaN unseen
            seen = ~np.isnan(est)
            tau2 = self.prior_scale**2
            if seen.sum() >= MIN_ARMS_FOR_PRIOR:
                tau2 = max(float(np.mean(est[seen] ** 2) - np.mean(var[seen])), (PRIOR_FLOOR * self.prior_scale) ** 2)
            mean = np.where(seen, np.nan_to_num(est) * tau2 / (tau2 + np.nan_to_num(var)), 0.0)
            variance = np.where(seen, tau2 * np.nan_to_num(var) / (tau2 + np.nan_to_num(var)), tau2)
            out[metric] = (mean, variance)
        return out

    def win_shares(self, spec: ExperimentSpec, table: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
        """Share of posterior draws each arm wins, ``k + 1`` (the last entry is control)."""
        post = self.posterior(spec, table)
        s = min(spec.policy.num_draws, MAX_DRAWS)
        draws = {m: rng.normal(mu, np.sqrt(v), size=(s, len(mu))) for m, (mu, v) in post.items()}  # s x k each
        objective = spec.objectives[0]
        sign = 1.0 if objective.direction == "maximize" else -1.0
        score = np.where(guardrail_ok(spec, draws, control_levels(table)), sign * draws[objective.metric], -np.inf)
        score = np.hstack([score, np.zeros((s, 1))])  # control: no change, always feasible
        wins = np.bincount(np.argmax(score, axis=1), minlength=score.shape[1])
        return wins / s

    def propose(
        self,
        spec: ExperimentSpec,
        table: pd.DataFrame,
        *,
        previous: ParameterDistribution | None = None,
        seed: int = 0,
        warm_start: Mapping[str, Any] | None = None,
        now: float = 0.0,
    ) -> Proposal:
        arms = self.arms(spec)
        shares = self.win_shares(spec, table, policy_rng(seed))
        order = [i for i in np.argsort(-shares[:-1], kind="stable") if shares[i] > 0][: spec.policy.max_arms - 1]
        served = [arms[i] for i in order]
        kept = float(shares[order].sum()) + float(shares[-1])
        return serve(
            spec,
            served,
            weights=[float(shares[i]) for i in order],
            control_extra=float(shares[-1]) / kept,
            diagnostics={"kind": self.name, "p_best": {a: float(p) for (a, _), p in zip(arms, shares, strict=False)}},
        )
