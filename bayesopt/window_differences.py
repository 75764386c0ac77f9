"""Per-window differences from control: the terms that pooling (:mod:`bayesopt.pooling`) and the roll-up of old
windows (:mod:`bayesopt.rollup`) both add up. The module docstring of :mod:`bayesopt.pooling` gives the formulas.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bayesopt.distribution import CONTROL_ARM_ID
from bayesopt.noise import NoiseSums, row_variances
from bayesopt.observation_table import param_column
from bayesopt.spec import ExperimentSpec


def modelled_metrics(spec: ExperimentSpec) -> list[str]:
    """Metrics that objectives or guardrails use, in the spec's metric order."""
    used = {o.metric for o in spec.objectives} | {g.metric for g in spec.guardrails}
    return [m for m in spec.metric_names if m in used]

def window_deltas(spec: ExperimentSpec, table: pd.DataFrame, prior: Mapping[str, NoiseSums] | None = None,
                  absolute: set[str] | None = None) -> tuple[pd.DataFrame, int]:
    """Per-window differences from control, one row per (window, arm, metric).

    Args:
        spec: the experiment (metric kinds for the noise floor).
        table: online rows of the observation table.
        prior: per metric, noise sums of rolled-up rows (they count towards the noise floor's pooled level).
        absolute: metrics whose differences stay absolute (default: :func:`absolute_metrics` of ``table``).

    Returns:
        A frame with columns ``window, arm_id, metric, delta, var, control_var, count, x.<param>...`` (control rows
        excluded; ``var`` includes ``control_var``, the control row's share of it; all three relative to the
        window's control level for the metrics not in ``absolute``) and the
        number of arm rows dropped because their window had no control row for that metric.
    """
    rows = table.assign(var=row_variances(spec, table, prior))
    is_control = rows["arm_id"] == CONTROL_ARM_ID
    control = rows.loc[is_control, ["window", "metric", "mean", "var"]]
    control = control.rename(columns={"mean": "control_mean", "var": "control_var"})
    arms = rows.loc[~is_control].merge(control, on=["window", "metric"], how="left")
    missing = arms["control_mean"].isna()
    arms = arms.loc[~missing]
    level = arms["control_mean"].to_numpy(float)
    absolute = absolute_metrics(table) if absolute is None else absolute
    level = np.where(arms["metric"].isin(absolute).to_numpy(), 1.0, level)
    out = arms.assign(delta=(arms["mean"] - arms["control_mean"]) / level,
                      var=(arms["var"] + arms["control_var"]) / level**2, control_var=arms["control_var"] / level**2)
    keep = ["window", "arm_id", "metric", "delta", "var", "control_var", "count"] + [param_column(n) for n in spec.parameter_names]
    return out[keep].reset_index(drop=True), int(missing.sum())

def absolute_metrics(table: pd.DataFrame, rolled_absolute: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Metrics whose differences stay absolute: control's level is not positive in some window of ``table``,
    or a roll-up summed them absolute (``rolled_absolute``: :attr:`bayesopt.rollup.Rollup.absolute_metrics`). The
    others are relative."""
    control = table[(table["arm_id"] == CONTROL_ARM_ID) & ~(table["mean"] > 0)]
    return {str(m) for m in control["metric"].unique()} | set(rolled_absolute)
