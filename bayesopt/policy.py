"""The modelling core's entry point: observations in, the next serving distribution out.

:class:`GPPolicy` (a :class:`~bayesopt.proposal.RefitPolicy`) runs ``pool -> fit -> candidates -> Thompson sampling -> allocation -> diagnostics``:

- :mod:`bayesopt.pooling` (with :mod:`bayesopt.noise`): per-arm effects relative to control, pooled over windows;
- :mod:`bayesopt.gp`: one GP per metric with known noise, warm-started; :mod:`bayesopt.model_choice` swaps in
  the multi-task GP (:mod:`bayesopt.multitask`) where simulator data pass the guard (:mod:`bayesopt.guard`);
- :mod:`bayesopt.candidates`: lattice candidates (known arms, neighbours of the best, Sobol fill);
- :mod:`bayesopt.thompson` (with :mod:`bayesopt.posterior_draws`, :mod:`bayesopt.selection`): joint draws and winners;
- :mod:`bayesopt.allocation`: merging under the arm cap, control share, risk budget;
- :mod:`bayesopt.diagnostics`: per-arm predictions.

Import this module explicitly (``import bayesopt.policy``); ``bayesopt`` itself never loads torch. The refit
job names it as ``bayesopt.policy:GPPolicy``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from bayesopt.allocation import Allocation, allocate, certifiable, explore_set_risk, safe_set_risk
from bayesopt.candidates import Candidates, build_candidates
from bayesopt.device import as_tensor, seeded, to_numpy
from bayesopt.diagnostics import arm_diagnostics, level_posterior, model_summary
from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution, normalize_weights
from bayesopt.errors import InsufficientDataError
from bayesopt.gp import exact_linalg
from bayesopt.gp_parts import MetricModel
from bayesopt.lattice import from_unit, indices_to_unit, parse_arm_id, snap, to_unit
from bayesopt.launch_design import initial_proposal
from bayesopt.model_choice import fit_metric_models
from bayesopt.pooling import PooledData, modelled_metrics, pool
from bayesopt.proposal import Proposal
from bayesopt.selection import guard_threshold
from bayesopt.spec import ExperimentSpec
from bayesopt.thompson import SamplingResult, thompson_sample

#: Observed arms per objective around which lattice neighbours join the candidates.
LOCAL_CENTERS = 8


@dataclass(frozen=True)
class GPPolicy:
    """The production policy: one GP per metric and constrained Thompson sampling (a :class:`RefitPolicy`).

    ``spec.policy.method`` picks the selection rule (``constrained_ts``, or the LinkedIn-style ``utility_ts``).
    Stateless: everything it carries from hour to hour comes back through ``warm_start``.
    """

    name: str = "gp"

    def propose(
        self,
        spec: ExperimentSpec,
        table: pd.DataFrame,
        *,
        previous: ParameterDistribution | None = None,
        seed: int = 0,
        warm_start: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> Proposal:
        """Fit the models to ``table`` and draw the next distribution's arms.

        Deterministic given ``(spec, table, seed, warm_start)`` (and ``previous``, whose arms join the
        candidates). Without usable online data (an empty table, or control alone) the launch design is returned.

        Raises:
            InsufficientDataError: some metrics have arm data but a modelled metric has none.
            ModelFitError: a GP could not be fitted soundly.
        """
        start = time.perf_counter()
        pooled = pool(spec, table)
        t_pool = time.perf_counter() - start
        if not pooled.metrics:
            design = initial_proposal(spec)
            return replace(design, model_state=dict(warm_start or {}), num_observations=pooled.num_rows,
                           timings={"pool": t_pool, "fit": 0.0, "sample": 0.0, "total": time.perf_counter() - start})
        missing = [m for m in modelled_metrics(spec) if m not in pooled.metrics]
        if missing:
            raise InsufficientDataError(f"no arm besides control has data on metric(s) {missing}; keep the previous distribution")
        with seeded(seed):
            t0 = time.perf_counter()
            fitted = fit_metric_models(spec, pooled, table, dict(warm_start) if warm_start else None)
            models = fitted.models
            t1 = time.perf_counter()
            cands = candidates_for(spec, pooled, models, previous, seed)
            grid = snap(spec, cands.X)
            near = certifiable(grid, observed_grid(spec, pooled)) if spec.guardrails else None
            result = thompson_sample(models, pooled.metrics, spec, cands.X, spec.policy.num_draws,
                                     safe_risk=safe_set_risk(spec), explore_risk=explore_set_risk(spec),
                                     second_opinion=fitted.online_alternatives(), certifiable=near)
            t2 = time.perf_counter()
        alloc = allocate(spec, result.explore_wins, grid, result.p_feasible, result.safe_wins, near)
        arms, diagnostics = proposed_arms(spec, cands, alloc, result, models, pooled)
        for metric, report in fitted.simulator.items():
            diagnostics["models"][metric]["simulator"] = report
        timings = {"pool": t_pool, "fit": t1 - t0, "sample": t2 - t1, "total": time.perf_counter() - start}
        return Proposal(arms=arms, diagnostics=diagnostics, model_state=fitted.state, timings=timings,
                        num_observations=pooled.num_rows)


def candidates_for(
    spec: ExperimentSpec,
    pooled: PooledData,
    models: Mapping[str, MetricModel],
    previous: ParameterDistribution | None,
    seed: int,
) -> Candidates:
    """Candidates: previous arms, observed arms (best first), neighbours of the best, Sobol fill."""
    known: list[tuple[str, np.ndarray | None]] = []
    if previous is not None:
        known += [(a.arm_id, to_unit(spec, a.values)) for a in previous.arms if a.arm_id != CONTROL_ARM_ID]
    centers = [to_unit(spec, spec.control)]  # control's neighbours: where certified-safe arms appear first
    for objective in spec.objectives:
        data = pooled.metrics[objective.metric]
        with exact_linalg():
            mean = to_numpy(models[objective.metric].posterior(as_tensor(data.X)).mean.detach().squeeze(-1))
        order = np.argsort(-mean if objective.direction == "maximize" else mean, kind="stable")
        order = [i for i in order if data.arm_ids[i] != CONTROL_ARM_ID]
        known += [(data.arm_ids[i], data.X[i]) for i in order]
        centers += [data.X[i] for i in order[:LOCAL_CENTERS]]
    return build_candidates(spec, spec.policy.num_candidates, known=known,
                            centers=np.array(centers),
                            safe_centers=safe_centers(spec, pooled, models), radius=spec.policy.initial_radius, seed=seed)


def observed_grid(spec: ExperimentSpec, pooled: PooledData) -> np.ndarray:
    """Lattice indices ``n x d`` of the arms with data on some guardrail metric (control included)."""
    rows = [snap(spec, pooled.metrics[g.metric].X) for g in spec.guardrails if g.metric in pooled.metrics]
    return np.concatenate(rows) if rows else np.zeros((0, len(spec.parameters)), dtype=np.int64)


def safe_centers(spec: ExperimentSpec, pooled: PooledData, models: Mapping[str, MetricModel]) -> np.ndarray | None:
    """Unit points ``r x d``: control and the observed arms whose marginal probability of meeting every
    guardrail is at least ``policy.feasibility_threshold`` (the product over guardrails of ``Phi(slack / sd)``
    of the difference from control at the arm, where its own data speak).

    Without guardrails there is nothing to be safe from: None (the whole cube).
    """
    if not spec.guardrails:
        return None
    data = pooled.metrics[spec.objectives[0].metric]
    X = data.X  # k x d, control first
    p = np.ones(len(X))
    for g in spec.guardrails:
        mean, sd = level_posterior(models[g.metric], X)
        threshold = guard_threshold(g.bound, relative=g.relative, baseline=pooled.metrics[g.metric].baseline)
        slack = (mean - threshold) if g.is_lower else (threshold - mean)
        p *= norm.cdf(slack / np.maximum(sd, 1e-150))
    keep = p >= spec.policy.feasibility_threshold
    keep[0] = False
    control = to_unit(spec, spec.control)[None, :]
    return np.vstack([control, X[keep]])


def proposed_arms(
    spec: ExperimentSpec,
    cands: Candidates,
    alloc: Allocation,
    result: SamplingResult,
    models: Mapping[str, MetricModel],
    pooled: PooledData,
) -> tuple[tuple[Arm, ...], dict[str, Any]]:
    """``alloc``'s arms (control first) and the per-arm and per-model diagnostics."""
    ids = [cands.ids[i] for i in alloc.index]
    weights = normalize_weights(alloc.weights.tolist())
    shortfall = spec.traffic.control_share - weights[0]  # rounding of the normalisation, at most a few ulps
    if 0 < shortfall and len(weights) > 1:
        largest = 1 + int(np.argmax(weights[1:]))
        weights[0], weights[largest] = spec.traffic.control_share, weights[largest] - shortfall
    arms = [Arm(CONTROL_ARM_ID, dict(spec.control), weights[0])]
    for arm, w in zip(ids[1:], weights[1:], strict=True):
        arms.append(Arm(arm, from_unit(spec, indices_to_unit(spec, parse_arm_id(spec, arm))), w))
    per_arm = arm_diagnostics(models, pooled.metrics, ids, cands.X[alloc.index],
                              result.p_feasible[alloc.index], result.p_best[alloc.index])
    diagnostics: dict[str, Any] = {
        "kind": spec.policy.method,
        "arms": per_arm,
        "models": model_summary(models, pooled.metrics),
        "num_draws": result.num_draws,
        "num_candidates": len(cands),
        "candidates_sampled": result.sampled,
        "sampler": result.sampler,
        "draws_without_feasible": result.no_feasible,
        "risk": {
            "budget": spec.policy.max_unsafe_share,
            "expected_unsafe_share": alloc.risk_after,
            "before_budget": alloc.risk_before,
            "tilt": alloc.tilt,
            "moved_to_control": alloc.moved_to_control,
            "individually_risky_share": alloc.risky_share,
            "explore_mix": alloc.explore_mix,
            "safe_set_risk": safe_set_risk(spec),
            "safe_candidates": int(result.safe.sum()) - 1 if result.safe is not None else None,
        },
        "arm_cap": {"max_arms": spec.policy.max_arms, "merged_mass": alloc.merged_mass,
                    "unrepresented_mass": alloc.unrepresented_mass},
        "newest_window": pooled.newest_window,
        "drift": None if pooled.drift is None else pooled.drift.to_dict(),
        "rows_ignored": pooled.dropped,
    }
    return tuple(arms), diagnostics
