"""What the review notebook reads: an experiment's spec, activations and statistics, from the store or from an
exported Ax file, and the review computed from them (impact report, Pareto analysis, ship candidate).

Imports the model code (the Pareto analysis fits GPs); only the notebook and analysts' scripts use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bayesopt.distribution import Arm, ParameterDistribution
from bayesopt.observation_table import observation_table
from bayesopt.observations import STAT_COLUMNS, ObservationStat
from bayesopt.report import Activation, impact_report
from bayesopt.spec import ExperimentSpec
from param_store import ParamStore
from param_store.reports import activations


@dataclass(frozen=True)
class ReviewData:
    """One experiment's history: ``activations`` oldest first, ``stats`` every stored statistic."""

    spec: ExperimentSpec
    activations: list[Activation]
    stats: list[ObservationStat]

    @property
    def current(self) -> ParameterDistribution:
        return self.activations[-1].distribution

    def table(self) -> pd.DataFrame:
        """The observation table the models read (see :mod:`bayesopt.observation_table`)."""
        frame = pd.DataFrame([s.to_dict() for s in self.stats], columns=list(STAT_COLUMNS))
        values = {a.arm_id: dict(a.values) for act in self.activations for a in act.distribution.arms}
        return observation_table(self.spec, frame, values)

    def weights(self) -> pd.DataFrame:
        """One row per (version, arm): ``version``, ``activated_at``, ``arm_id``, ``weight``."""
        return pd.DataFrame([{"version": act.distribution.version, "activated_at": act.activated_at,
                              "arm_id": a.arm_id, "weight": a.weight}
                             for act in self.activations for a in act.distribution.arms])


def from_store(store: ParamStore, name: str) -> ReviewData:
    return ReviewData(store.load_spec(name), activations(store, name), store.observation_stats(name))


def from_ax_file(path: str | Path) -> ReviewData:
    """Read a file ``bayesopt export-ax`` wrote: trials back to versions, Ax data back to statistics."""
    from ax.api.client import Client

    from bayesopt.ax_bridge import spec_from_ax

    experiment = Client.load_from_json_file(str(path))._experiment  # noqa: SLF001
    spec = spec_from_ax(experiment)
    acts, version_of = [], {}
    for index, trial in sorted(experiment.trials.items()):
        meta = trial.run_metadata
        weights = meta["weights"]
        arms = tuple(Arm(a.name, {k: float(v) for k, v in a.parameters.items()}, weights[a.name]) for a in trial.arms)
        dist = ParameterDistribution(experiment=spec.name, version=int(meta["version"]), arms=arms,
                                     spec_hash=meta["spec_hash"], control_share=spec.traffic.control_share,
                                     created_at=float(meta["activated_at"]), source_version=meta.get("source_version"))
        acts.append(Activation(dist, float(meta["activated_at"])))
        version_of[index] = dist.version
    stats = []
    for row in experiment.lookup_data().df.itertuples():
        n, mean, sem = float(row.n), float(row.mean), float(row.sem)
        var = sem * sem * n
        stats.append(ObservationStat(version_of[row.trial_index], row.arm_name, row.metric_name, "online", n,
                                     n * mean, var * (n - 1) + n * mean * mean))
    return ReviewData(spec, acts, stats)


def review(data: ReviewData, *, num_points: int = 256, seed: int = 0) -> dict[str, Any]:
    """``{"report", "analysis", "ship"}``: the impact report, the Pareto analysis and the ship candidate."""
    from bayesopt.pareto import pareto_analysis, ship_candidate

    analysis = pareto_analysis(data.spec, data.table(), current=data.current, num_points=num_points, seed=seed)
    return {"report": impact_report(data.spec, data.activations, data.stats), "analysis": analysis,
            "ship": ship_candidate(data.spec, analysis)}
