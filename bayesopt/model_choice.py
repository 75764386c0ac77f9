"""One model per metric: the online-only GP, or the multi-task GP where simulator data exist and help.

For every modelled metric the online-only GP is fitted (:func:`bayesopt.gp.fit_models`). For a metric named in
``spec.simulator_metrics`` that has simulator rows, the simulator points are summarised
(:func:`bayesopt.multitask.summarise`), the multi-task GP is fitted, and the guard (:mod:`bayesopt.guard`)
picks between the two by leave-one-out cross-validation on the online arms. The report says, per simulator
metric, which model was used and why, the learned correlation, the simulator's estimated bias and both models'
cross-validation scores; the model state keeps both models' hyperparameters for the next warm start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bayesopt.diagnostics import _finite
from bayesopt.errors import ModelFitError
from bayesopt.gp import STATE_VERSION, fit_models, model_state
from bayesopt.gp_parts import MetricModel
from bayesopt.guard import decide, loo_score
from bayesopt.multitask import (
    SimulatorData,
    TargetTaskModel,
    fit_multitask,
    hyperparameters,
    simulator_bias,
    simulator_data,
    summarise,
)
from bayesopt.pooling import MetricData, PooledData
from bayesopt.spec import ExperimentSpec

MODEL_ONLINE, MODEL_MULTITASK = "online", "multitask"


@dataclass(frozen=True)
class FittedModels:
    """The model of each metric, the JSON ``model_state`` for the next refit, the per-metric report, every
    fitted multi-task model (used or not), and every online-only model."""

    models: dict[str, MetricModel]
    state: dict[str, Any]
    simulator: dict[str, dict[str, Any]]
    multitask: dict[str, TargetTaskModel]
    online: dict[str, MetricModel]

    def online_alternatives(self) -> dict[str, MetricModel]:
        """The online-only model of each metric that uses the multi-task one."""
        return {m: self.online[m] for m, model in self.models.items() if model is not self.online[m]}


def fit_metric_models(
    spec: ExperimentSpec, pooled: PooledData, table: pd.DataFrame, warm_start: Mapping[str, Any] | None = None
) -> FittedModels:
    """Fit every modelled metric, using simulator rows of ``table`` for the metrics the spec names."""
    online = fit_models(pooled.metrics, warm_start)
    models: dict[str, MetricModel] = dict(online)
    sims = simulator_data(spec, table) if spec.simulator_metrics else {}
    reports: dict[str, dict[str, Any]] = {}
    multitask_state: dict[str, Any] = {}
    multitask: dict[str, TargetTaskModel] = {}
    for metric, data in pooled.metrics.items():
        if metric not in spec.simulator_metrics:
            continue
        sim = sims.get(metric)
        if sim is None:
            reports[metric] = {"model": MODEL_ONLINE, "reason": "no simulator rows for this metric"}
            continue
        summary = summarise(sim)
        try:
            target = fit_multitask(data, summary, _warm_multitask(warm_start, metric))
        except ModelFitError as exc:
            reports[metric] = {"model": MODEL_ONLINE, "reason": f"multi-task fit failed: {exc}", **_counts(sim, summary)}
            continue
        multitask_state[metric], multitask[metric] = hyperparameters(target), target
        reports[metric] = _report(data, sim, summary, target, online[metric], models)
    state = model_state(online)
    if multitask_state:
        state["multitask"] = multitask_state
    return FittedModels(models, state, reports, multitask, dict(online))


def _report(data: MetricData, sim: SimulatorData, summary: SimulatorData, target: TargetTaskModel,
            online: MetricModel, models: dict[str, MetricModel]) -> dict[str, Any]:
    correlation = target.correlation()
    decision = decide(loo_score(online), loo_score(target), correlation)
    if decision.use_multitask:
        models[data.metric] = target
    return {
        "model": MODEL_MULTITASK if decision.use_multitask else MODEL_ONLINE,
        "reason": decision.reason,
        "correlation": _finite(correlation),
        "bias": {k: _finite(v) for k, v in simulator_bias(target, data).items()},
        "cross_validation": {MODEL_ONLINE: decision.online.to_dict(), MODEL_MULTITASK: decision.multitask.to_dict()},
        **_counts(sim, summary),
    }


def _counts(sim: SimulatorData, summary: SimulatorData) -> dict[str, Any]:
    return {"simulator_rows": sim.num_rows, "simulator_settings": len(sim.y), "simulator_points_fitted": len(summary.y),
            "simulator_runs": list(sim.runs)}


def _warm_multitask(warm_start: Mapping[str, Any] | None, metric: str) -> Mapping[str, Any] | None:
    if not isinstance(warm_start, Mapping) or warm_start.get("version") != STATE_VERSION:
        return None
    entry = warm_start.get("multitask", {}).get(metric)
    return entry if isinstance(entry, Mapping) else None
