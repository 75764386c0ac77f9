"""The Pareto frontier between each objective and each guardrail: observed (per arm, with confidence intervals)
and predicted by the models (posterior mean with credible bands), the feasible region, where the current
distribution's mass lies, and how far each guardrail is from its limit.

Units. Every metric is shown as the models see it, against control: an objective as its relative lift over
control, ``delta(x) / baseline``; a guardrail in its own terms, the relative change for a relative guardrail,
``baseline + delta(x)`` for an absolute one. Larger is better for a maximised objective and for a floor
(``lower``); a frontier point is one no other point beats on both coordinates.

Points: ``N`` Sobol points of the unit cube plus every arm observed and served (``k``), so the frontier of
the models is dense and the arms can be located on it. Feasibility is the posterior probability that every
guardrail holds, the product of the per-guardrail normal probabilities (``p_feasible``); the feasible region is
where it reaches ``spec.policy.feasibility_threshold``. Bands and feasibility are the models' posterior, the same
the policy acts on; like the policy, they treat each arm's noise as its own, although every arm is measured
against the same control means (so they are narrower than the truth when control's own estimate is noisy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm, qmc

from bayesopt.device import seeded
from bayesopt.diagnostics import level_posterior
from bayesopt.distribution import CONTROL_ARM_ID, ParameterDistribution
from bayesopt.errors import InsufficientDataError
from bayesopt.gp import fit_models
from bayesopt.lattice import from_unit, to_unit
from bayesopt.pooling import MetricData, PooledData, modelled_metrics, pool
from bayesopt.spec import ExperimentSpec, Guardrail

#: Sobol points the predicted frontier is read from (a power of two keeps the sequence balanced).
DEFAULT_POINTS = 1024
DEFAULT_CREDIBILITY = 0.9
#: Arms of the current distribution below this weight are not part of its mass (allocation leaves some at 1e-20).
MIN_SHOWN_WEIGHT = 1e-6


@dataclass(frozen=True)
class Scale:
    """How one metric's ``delta`` from control is shown: ``offset + delta / divisor``, larger-is-better ``sign``."""

    metric: str
    role: str  # "objective" or "guardrail"
    offset: float
    divisor: float
    sign: float
    limit: float | None = None

    def value(self, delta: np.ndarray) -> np.ndarray:
        return self.offset + np.asarray(delta) / self.divisor

    def sd(self, sd: np.ndarray) -> np.ndarray:
        return np.asarray(sd) / abs(self.divisor)


@dataclass(frozen=True)
class Frontier:
    """One objective against one guardrail.

    Attributes:
        objective, guardrail: metric names.
        predicted: frontier rows of the models: ``x.<param>``, ``objective``, ``objective_lower/upper``,
            ``guardrail``, ``guardrail_lower/upper``, ``p_feasible``, sorted by ``guardrail``; among the points
            whose predicted means meet every other guardrail (``others_met``; all points if none does).
        observed: frontier arms by their pooled observed effects, with confidence intervals (same columns, and
            ``arm_id``).
        arms_observed: every observed arm, frontier or not.
        limit: the guardrail's limit in the guardrail's units.
    """

    objective: str
    guardrail: str
    predicted: pd.DataFrame
    observed: pd.DataFrame
    arms_observed: pd.DataFrame
    limit: float

    def to_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "guardrail": self.guardrail, "limit": self.limit,
                "predicted": _records(self.predicted), "observed": _records(self.observed),
                "arms_observed": _records(self.arms_observed)}


@dataclass(frozen=True)
class ParetoAnalysis:
    """Everything :func:`pareto_analysis` computes.

    Attributes:
        points: the ``N + k`` points with every metric's predicted value, band and ``p_feasible``, ``feasible``.
        frontiers: one per (objective, guardrail).
        current: the current distribution's arms with their weights and predicted values (empty without one).
        guardrails: per guardrail: limit, the current mix's predicted value, band, margin (positive: safe side).
        credibility: of every band.
    """

    points: pd.DataFrame
    frontiers: list[Frontier]
    current: pd.DataFrame
    guardrails: list[dict[str, Any]]
    credibility: float
    scales: dict[str, Scale] = field(default_factory=dict)

    def frontier(self, objective: str, guardrail: str) -> Frontier:
        return next(f for f in self.frontiers if f.objective == objective and f.guardrail == guardrail)

    def to_dict(self) -> dict[str, Any]:
        return {"credibility": self.credibility, "frontiers": [f.to_dict() for f in self.frontiers],
                "current": _records(self.current), "guardrails": self.guardrails,
                "feasible_share": float(self.points["feasible"].mean())}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for row in frame.to_dict("records")]


def scales(spec: ExperimentSpec, pooled: PooledData) -> dict[str, Scale]:
    """The display scale of every modelled metric (objectives first; a metric both is shown as an objective)."""
    out: dict[str, Scale] = {}
    for o in spec.objectives:
        base = pooled.metrics[o.metric].baseline
        out[o.metric] = Scale(o.metric, "objective", 0.0, abs(base), 1.0 if o.direction == "maximize" else -1.0)
    for g in spec.guardrails:
        if g.metric in out:
            continue
        base = pooled.metrics[g.metric].baseline
        offset, divisor = (0.0, abs(base)) if g.relative else (base, 1.0)
        out[g.metric] = Scale(g.metric, "guardrail", offset, divisor, 1.0 if g.is_lower else -1.0, g.bound)
    return out


def pareto_analysis(
    spec: ExperimentSpec, table: pd.DataFrame, *, current: ParameterDistribution | None = None,
    num_points: int = DEFAULT_POINTS, credibility: float = DEFAULT_CREDIBILITY, seed: int = 0,
    warm_start: Mapping[str, Any] | None = None,
) -> ParetoAnalysis:
    """Fit the models to ``table`` (the observation table) and compute frontiers, region, mass and margins.

    Raises:
        InsufficientDataError: some modelled metric has no arm besides control observed.
    """
    pooled = pool(spec, table)
    missing = [m for m in modelled_metrics(spec) if m not in pooled.metrics]
    if missing:
        raise InsufficientDataError(f"no arm besides control has data on metric(s) {missing}; nothing to model yet")
    with seeded(seed):
        models = fit_models(pooled.metrics, dict(warm_start) if warm_start else None)
    scale = scales(spec, pooled)
    X, labels = _points(spec, pooled, current, num_points, seed)
    z = norm.ppf(0.5 + credibility / 2.0)
    points = pd.DataFrame({f"x.{k}": [from_unit(spec, u)[k] for u in X] for k in spec.parameter_names})
    points.insert(0, "arm_id", labels)
    p_feasible = np.ones(len(X))
    for metric, model in models.items():
        mean, sd = level_posterior(model, np.vstack([to_unit(spec, spec.control), X]))
        s = scale[metric]
        value, spread = s.value(mean[1:]), s.sd(sd[1:])
        points[metric], points[f"{metric}_sd"] = value, spread
        points[f"{metric}_lower"], points[f"{metric}_upper"] = value - z * spread, value + z * spread
    for g in spec.guardrails:
        p_feasible *= _p_holds(g, scale[g.metric], points[g.metric].to_numpy(), points[f"{g.metric}_sd"].to_numpy())
    points["p_feasible"] = p_feasible
    points["feasible"] = p_feasible >= spec.policy.feasibility_threshold
    observed = _observed(spec, pooled, scale, z)
    frontiers = [_frontier(spec, o.metric, g, scale, points, observed) for o in spec.objectives for g in spec.guardrails
                 if g.metric != o.metric]
    mass = _current(points, current)
    return ParetoAnalysis(points, frontiers, mass, _guardrail_margins(spec, scale, points, mass, z), credibility, scale)


def _points(spec: ExperimentSpec, pooled: PooledData, current: ParameterDistribution | None, num: int,
            seed: int) -> tuple[np.ndarray, list[str | None]]:
    """``N`` Sobol points, then the observed arms, then the current arms not observed yet (``N + k x d``)."""
    sobol = qmc.Sobol(d=len(spec.parameters), scramble=True, seed=seed).random(num)
    arms: dict[str, np.ndarray] = {}
    for data in pooled.metrics.values():
        for i, a in enumerate(data.arm_ids):
            arms.setdefault(a, data.X[i])
    for a in current.arms if current is not None else ():
        arms.setdefault(a.arm_id, to_unit(spec, dict(a.values)))
    return np.vstack([sobol, *arms.values()]), [None] * num + list(arms)


def _p_holds(g: Guardrail, s: Scale, value: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Posterior probability that the guardrail holds at each point (normal marginals)."""
    margin = (value - g.bound) if g.is_lower else (g.bound - value)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = norm.cdf(margin / sd)
    return np.where(sd > 0, out, (margin >= 0).astype(float))


def _observed(spec: ExperimentSpec, pooled: PooledData, scale: Mapping[str, Scale], z: float) -> pd.DataFrame:
    """Per observed arm, each metric's pooled effect with a ``z`` interval, in display units."""
    frames = []
    for metric, data in pooled.metrics.items():
        frames.append(_observed_metric(data, scale[metric], z))
    out = frames[0]
    for f in frames[1:]:
        out = out.merge(f, on="arm_id", how="outer")
    return out


def _observed_metric(data: MetricData, s: Scale, z: float) -> pd.DataFrame:
    value, spread = s.value(data.delta), s.sd(np.sqrt(data.var))
    spread = np.where(np.array(data.arm_ids) == CONTROL_ARM_ID, 0.0, spread)
    m = data.metric
    return pd.DataFrame({"arm_id": data.arm_ids, m: value, f"{m}_lower": value - z * spread,
                         f"{m}_upper": value + z * spread})


def nondominated(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats on both ``a`` and ``b`` (larger is better on both; ``n``)."""
    order = np.lexsort((-b, -a))  # by a descending, ties by b descending
    keep = np.zeros(len(a), dtype=bool)
    best_b = -np.inf
    for i in order:
        if b[i] > best_b:
            keep[i] = True
            best_b = b[i]
    return keep


def _frontier(spec: ExperimentSpec, objective: str, g: Guardrail, scale: Mapping[str, Scale], points: pd.DataFrame,
              observed: pd.DataFrame) -> Frontier:
    """The trade-off of ``objective`` against ``g`` among the points whose posterior means meet every *other*
    guardrail (all points when none does, flagged by ``others_met`` in the rows)."""
    so, sg = scale[objective], scale[g.metric]
    cols = lambda m: [m, f"{m}_lower", f"{m}_upper"]  # noqa: E731
    params = [c for c in points.columns if c.startswith("x.")]
    others = np.ones(len(points), dtype=bool)
    for other in spec.guardrails:
        if other.metric != g.metric:
            value = points[other.metric].to_numpy()
            others &= value >= other.bound if other.is_lower else value <= other.bound
    pool_ = points.assign(others_met=others) if others.any() else points.assign(others_met=False)
    pool_ = pool_[others] if others.any() else pool_
    mask = nondominated(so.sign * pool_[objective].to_numpy(), sg.sign * pool_[g.metric].to_numpy())
    predicted = pool_.loc[mask, ["arm_id", *params, *cols(objective), *cols(g.metric), "p_feasible", "others_met"]]
    predicted = predicted.sort_values(g.metric).reset_index(drop=True)
    both = observed.dropna(subset=[objective, g.metric])
    arms = both[["arm_id", *cols(objective), *cols(g.metric)]].reset_index(drop=True)
    keep = nondominated(so.sign * arms[objective].to_numpy(), sg.sign * arms[g.metric].to_numpy())
    return Frontier(objective, g.metric, predicted, arms.loc[keep].sort_values(g.metric).reset_index(drop=True), arms,
                    g.bound)


def _current(points: pd.DataFrame, current: ParameterDistribution | None) -> pd.DataFrame:
    if current is None:
        return points.iloc[0:0].assign(weight=[])
    weights = {a.arm_id: a.weight for a in current.arms if a.weight >= MIN_SHOWN_WEIGHT}
    rows = points[points["arm_id"].isin(weights)].drop_duplicates("arm_id")
    return rows.assign(weight=rows["arm_id"].map(weights)).reset_index(drop=True)


def _guardrail_margins(spec: ExperimentSpec, scale: Mapping[str, Scale], points: pd.DataFrame, mass: pd.DataFrame,
                       z: float) -> list[dict[str, Any]]:
    """Each guardrail: the current mix's predicted value (weights times arm values), its band and its margin.

    The mix's spread is the weighted sum of the arms' standard deviations, an upper bound (arms fully correlated).
    """
    out = []
    for g in spec.guardrails:
        if mass.empty:
            out.append({"metric": g.metric, "limit": g.bound, "relative": g.relative})
            continue
        w = mass["weight"].to_numpy()
        value = float(np.sum(w * mass[g.metric].to_numpy()))
        spread = float(np.sum(w * mass[f"{g.metric}_sd"].to_numpy()))
        margin = value - g.bound if g.is_lower else g.bound - value
        out.append({"metric": g.metric, "limit": g.bound, "relative": g.relative, "mix": value,
                    "mix_lower": value - z * spread, "mix_upper": value + z * spread, "margin": margin,
                    "margin_in_sd": margin / spread if spread > 0 else None,
                    "p_holds": float(_p_holds(g, scale[g.metric], np.array([value]), np.array([spread]))[0])})
    return out


def frontier_curve(frontier_objective: np.ndarray, frontier_guardrail: np.ndarray, at: np.ndarray, *,
                   objective_sign: float = 1.0, guardrail_sign: float = 1.0) -> np.ndarray:
    """The best objective a frontier reaches with the guardrail at least as good as each of ``at`` (NaN past
    the frontier's end): the curve two frontiers are compared by."""
    o, g = objective_sign * np.asarray(frontier_objective), guardrail_sign * np.asarray(frontier_guardrail)
    out = np.full(len(at), np.nan)
    for i, t in enumerate(guardrail_sign * np.asarray(at)):
        ok = g >= t
        if ok.any():
            out[i] = objective_sign * o[ok].max()
    return out


def ship_candidate(spec: ExperimentSpec, analysis: ParetoAnalysis) -> dict[str, Any] | None:
    """The arm a team would ship: of the arms served so far (control included), the one with the best predicted
    first objective among those whose probability of meeting every guardrail reaches
    ``spec.policy.feasibility_threshold``; with its predicted value and band of every metric, and under
    ``best_on_objective`` the served arm with the best predicted objective regardless of risk. None if no served
    arm qualifies."""
    served = analysis.points.dropna(subset=["arm_id"]).drop_duplicates("arm_id")
    objective = spec.objectives[0]
    sign = 1.0 if objective.direction == "maximize" else -1.0
    arms = served[served["p_feasible"] >= spec.policy.feasibility_threshold]
    if arms.empty:
        return None
    best = _arm_summary(spec, analysis, arms.loc[(sign * arms[objective.metric]).idxmax()])
    # what the team gives up: the served arm the models rate best on the objective, whatever its risk
    top = _arm_summary(spec, analysis, served.loc[(sign * served[objective.metric]).idxmax()])
    return {**best, "best_on_objective": top}


def _arm_summary(spec: ExperimentSpec, analysis: ParetoAnalysis, row: pd.Series) -> dict[str, Any]:
    metrics = {m: {"value": float(row[m]), "lower": float(row[f"{m}_lower"]), "upper": float(row[f"{m}_upper"]),
                   "units": "relative lift" if analysis.scales[m].divisor != 1.0 else "level"}
               for m in analysis.scales}
    return {"arm_id": row["arm_id"], "values": {p: float(row[f"x.{p}"]) for p in spec.parameter_names},
            "p_feasible": float(row["p_feasible"]), "predicted": metrics}
