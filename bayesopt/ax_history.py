"""An experiment's history as an Ax experiment: one weighted batch trial per published version, with its data.

Every activated distribution version becomes an Ax ``BatchTrial`` (trial ``i`` is the ``i``-th activation)
whose arms and weights are the distribution's, named by our arm ids, control being the experiment's status quo.
Ax weights are relative, and Ax's JSON loader re-adds the status quo at weight 1, so the stored weights are the
distribution's divided by control's: ``trial.normalized_arm_weights()`` gives the distribution's weights back
(and the run metadata keeps them verbatim).
Each version's online observations become Ax ``Data`` for that trial: per arm and metric, the mean, its
standard error (``sem``) and the count ``n``. A version is one serving window, so a trial's data is that
window's. Trials with data are COMPLETED; the current version without data yet is RUNNING; an older one that
never got data is ABANDONED. Each trial's run metadata names the version, its activation time and spec hash.

The Ax ``Client`` returned has a generation strategy configured, so ``get_pareto_frontier()`` and the analyses
that need a model work on the loaded file with no further step; ``Client.load_from_json_file`` reads it back.
Simulation rows are not exported (Ax would take them as online outcomes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd
from ax.api.client import Client
from ax.core.arm import Arm as AxArm
from ax.core.data import Data
from ax.core.experiment import Experiment

from bayesopt.ax_bridge import spec_to_ax
from bayesopt.report import Activation
from bayesopt.spec import ExperimentSpec

#: The Ax generation strategy configured on export: ``fast`` is Ax's default Bayesian optimisation; it makes
#: the model-based Pareto frontier and analyses available (and is never asked for a trial).
GENERATION_METHOD = "fast"


def history_to_ax(
    spec: ExperimentSpec, activations: Sequence[Activation], stats: pd.DataFrame, *, current_version: int | None,
    seed: int = 0,
) -> Client:
    """An Ax ``Client`` holding ``spec`` as an experiment and every activation as a weighted batch trial.

    Args:
        spec: the experiment's spec (its current one).
        activations: the versions in activation order (oldest first).
        stats: stored statistics, columns ``bayesopt.STAT_COLUMNS``, one row per (version, arm, metric, source).
        current_version: the version ``current`` points at (it stays RUNNING while it has no data).
        seed: the generation strategy's random seed.
    """
    experiment = spec_to_ax(spec, reference_thresholds=True)
    online = stats[stats["source"] == "online"] if len(stats) else stats
    frames = []
    for act in activations:
        dist = act.distribution
        trial = experiment.new_batch_trial()
        control = dist.control_arm.weight
        others = [a for a in dist.arms if a.arm_id != dist.control_arm_id]
        if others:
            trial.add_arms_and_weights(arms=[AxArm(parameters=_values(spec, dict(a.values)), name=a.arm_id) for a in others],
                                       weights=[a.weight / control for a in others])
        trial.add_status_quo_arm(weight=1.0)
        trial.mark_running(no_runner_required=True, started_time=datetime.fromtimestamp(act.activated_at, UTC))
        trial.update_run_metadata({"version": dist.version, "activated_at": act.activated_at,
                                   "spec_hash": dist.spec_hash, "source_version": dist.source_version,
                                   "weights": {a.arm_id: a.weight for a in dist.arms}})
        rows = online[online["version"] == dist.version] if len(online) else online
        if len(rows):
            frames.append(_data_frame(trial.index, rows))
            trial.mark_completed()
        elif dist.version != current_version:
            trial.mark_abandoned(reason="no observations were recorded while this version was served")
    if frames:
        experiment.attach_data(Data(df=pd.concat(frames, ignore_index=True)))
    client = Client(random_seed=seed)
    client.set_experiment(experiment)
    client.configure_generation_strategy(method=GENERATION_METHOD, initialization_random_seed=seed)
    return client


def _values(spec: ExperimentSpec, values: dict[str, float]) -> dict[str, int | float]:
    return {p.name: int(values[p.name]) if p.type == "int" else float(values[p.name]) for p in spec.parameters}


def _data_frame(trial_index: int, rows: pd.DataFrame) -> pd.DataFrame:
    """Ax data rows of one trial: mean, standard error of the mean and count per (arm, metric)."""
    count = rows["count"].to_numpy(float)
    mean = rows["sum"].to_numpy(float) / count
    var = [(sq - s * s / n) / (n - 1) if n > 1 else 0.0 for s, sq, n in zip(rows["sum"], rows["sum_sq"], count, strict=True)]
    sem = [math.sqrt(max(v, 0.0) / n) for v, n in zip(var, count, strict=True)]
    return pd.DataFrame({
        "trial_index": trial_index, "arm_name": rows["arm_id"].to_numpy(), "metric_name": rows["metric"].to_numpy(),
        "metric_signature": rows["metric"].to_numpy(), "mean": mean, "sem": sem, "n": count.astype(int),
    })


def trial_of_version(experiment: Experiment) -> dict[int, int]:
    """``{version: trial index}`` of an experiment written by :func:`history_to_ax`."""
    return {int(t.run_metadata["version"]): i for i, t in experiment.trials.items() if "version" in t.run_metadata}


def ax_pareto_frontier(client: Client, *, use_model_predictions: bool = True) -> list[tuple[dict, dict, int, str]]:
    """``Client.get_pareto_frontier()`` for batch trials: ``(parameters, metric means, trial index, arm name)``.

    Ax 1.3.1's ``Client.get_pareto_frontier`` asserts that every trial is a single-arm ``Trial`` when it names the
    arm, so it fails on any batch-trial experiment; the frontier itself is Ax's own
    (``BestPointMixin._get_pareto_optimal_parameters``), one Pareto-optimal arm per trial, named here.
    """
    from ax.service.utils.best_point_mixin import BestPointMixin

    experiment = client._experiment  # noqa: SLF001 - the Client's experiment, as its own method reads it
    frontier = BestPointMixin._get_pareto_optimal_parameters(  # noqa: SLF001
        experiment=experiment, generation_strategy=client._generation_strategy,  # noqa: SLF001
        use_model_predictions=use_model_predictions)
    out = []
    for trial_index, (parameters, prediction) in frontier.items():
        arm = next(a for a in experiment.trials[trial_index].arms if a.parameters == parameters)
        means = prediction[0] if prediction else {}
        out.append((dict(parameters), {k: float(v) for k, v in means.items()}, trial_index, arm.name))
    return out
