"""Time effects and pooling: turn the observation table into per-arm effects relative to control.

Traffic and baselines swing with the hour of day far more than arms differ, and every arm rides the same swing.
So an arm's raw mean in a busy hour says little; its difference from the control arm served in the *same*
window does. The swing multiplies (at a busy hour members are more active on every arm, so a difference
grows with the level): a difference in absolute units would still depend on the hours an arm happened to be
served in (an arm served at night would look closer to control than it is). Each window's difference is
therefore taken *relative to that window's control level*. For each window ``w``, arm ``a`` and metric:

    delta_{a,w} = (mean_{a,w} - c_w) / c_w,    var_{a,w} = (se_{a,w}^2 + se_{c,w}^2) / c_w^2,    c_w = mean_{control,w}

(the delta method, with ``mean_{a,w} ~ c_w``: the control level's own error moves a difference of a few percent
by a few percent of itself). A metric whose control level is not positive in some window (a mean metric that
can be zero or negative) keeps absolute differences: a ratio to it means nothing.

Deltas of one arm are pooled across windows by inverse variance, each window's weight multiplied by
``decay_w = 0.5 ** (age_w / half_life_hours)`` (one window counts as one hour, ``age_w`` is the number of
windows since the newest). The pooled variance is ``1 / sum_w(decay_w / var_w)``: a window ``h`` half-lives
old counts like one with ``2**h`` times its noise variance, so old evidence is discounted, not just reweighted.
Pooling raw means across windows would confound arms with the hours they happened to be served in.

The pooled relative difference is brought back to the metric's units by ``baseline``, the control arm's
count-weighted (and decayed) mean over windows: ``MetricData.delta = baseline * pooled`` (variance times
``baseline^2``), the difference at control's mean level over the hours observed. The control arm enters every
metric's training set as ``delta = 0`` with a tiny variance: the modelled function is ``g(x) - g(control)``,
which is zero at control by definition. Absolute levels are recovered as ``baseline + delta``.

Rows whose window has no control row for the metric cannot be compared and are reported, not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayesopt.distribution import CONTROL_ARM_ID
from bayesopt.drift import DriftTest, detect_drift
from bayesopt.errors import ModelFitError
from bayesopt.lattice import to_unit
from bayesopt.noise import row_variances
from bayesopt.observation_table import param_column
from bayesopt.rollup import KEEP_WINDOWS, Rollup
from bayesopt.spec import ExperimentSpec
from bayesopt.window_differences import absolute_metrics, modelled_metrics, window_deltas

#: Key of ``DataFrame.attrs`` under which a model table carries the roll-up of its older windows.
ROLLUP_ATTR = "rollup"

#: Variance of control's ``delta = 0`` anchor, relative to the smallest pooled arm variance: near-exact (the
#: difference is zero by definition) while keeping the kernel matrix well conditioned.
CONTROL_ANCHOR_RATIO = 1e-2
#: Largest share of an arm's effect variance attributed to the control noise it shares with the other arms
#: (several windows make the shared part only approximately the pooled control's).
MAX_SHARED_NOISE_SHARE = 0.9


@dataclass(frozen=True)
class MetricData:
    """Pooled effects of one metric: ``k`` arms (control first), relative to control.

    Attributes:
        metric: metric name.
        arm_ids: ``k`` arm ids, ``arm_ids[0] == "control"``.
        X: ``k x d`` unit-cube coordinates of the arms.
        delta: ``k`` pooled differences from control (``delta[0] == 0``).
        var: ``k`` variances of ``delta`` (positive).
        baseline: the control arm's pooled level of the metric.
        baseline_se: standard error of ``baseline``.
        num_rows: table rows (arm and control) that went into this metric.
        control_root: ``k x W`` factor of the error the arms share through control: every window's effect is
            an arm's mean minus that window's control mean, so two arms served in window ``w`` share its control
            error, and ``cov(delta_a, delta_b) = sum_w L_aw L_bw`` for ``a != b`` (row 0, control's anchor, is
            zero). ``L_aw`` is the pooling weight of arm ``a``'s window ``w`` times that window's control error sd;
            ``var - sum_w L_aw^2`` is the arm's own. The factor covers the newest ``KEEP_WINDOWS`` windows
            (``bayesopt.rollup``): older ones may be rolled up into sums that no longer say which window an error
            came from, so their control errors count as each arm's own whether or not they are rolled up yet
            (the same model either way, and at most ``k x KEEP_WINDOWS`` numbers). None: the shared part is
            unknown (taken as independent).
    """

    metric: str
    arm_ids: list[str]
    X: np.ndarray
    delta: np.ndarray
    var: np.ndarray
    baseline: float
    baseline_se: float
    num_rows: int
    control_root: np.ndarray | None = None

    def shared_control_variance(self) -> np.ndarray:
        """``k`` variances of the control noise each effect shares with every other arm's (0 for control's anchor).

        Every effect is an arm's mean minus the same control mean, so their errors share ``-e_control``. In one
        window that part of an arm's variance is the control row's; over several windows it is a weighted sum of
        each window's control error, for which the pooled control's variance ``baseline_se^2`` stands in, capped
        at :data:`MAX_SHARED_NOISE_SHARE` of the arm's variance.
        """
        if not np.isfinite(self.baseline_se):
            return np.zeros_like(self.var)
        shared = np.minimum(self.baseline_se**2, MAX_SHARED_NOISE_SHARE * self.var)
        shared[0] = 0.0
        return shared


@dataclass(frozen=True)
class PooledData:
    """Everything the model core reads from a table; ``metrics`` maps metric name to :class:`MetricData`."""

    metrics: dict[str, MetricData]
    num_rows: int
    dropped: dict[str, int] = field(default_factory=dict)
    newest_window: int | None = None
    drift: DriftTest | None = None


def window_decay(windows: np.ndarray, half_life_hours: float | None) -> np.ndarray:
    """Decay factors ``0.5 ** (age / half_life)`` for ``n`` window numbers (all ones without a half-life)."""
    windows = np.asarray(windows, dtype=float)
    if half_life_hours is None or len(windows) == 0:
        return np.ones(len(windows))
    age = windows.max() - windows
    return 0.5 ** (age / half_life_hours)


def pool_arms(deltas: pd.DataFrame, decay: np.ndarray, rolled: Rollup | None = None, rolled_decay: float = 1.0) -> pd.DataFrame:
    """Inverse-variance pooling across windows with decay.

    Args:
        deltas: ``n`` rows from :func:`window_deltas` (one metric or several).
        decay: ``n`` window weights in (0, 1].
        rolled: sums of rolled-up windows, added in with their decay factor ``rolled_decay``.

    Returns:
        One row per (metric, arm_id): ``delta`` (pooled), ``var`` (``1 / sum(decay / var)``), ``rows``.
    """
    precision = decay / deltas["var"].to_numpy(float)
    frame = pd.DataFrame(
        {
            "metric": deltas["metric"].to_numpy(),
            "arm_id": deltas["arm_id"].to_numpy(),
            "wd": precision * deltas["delta"].to_numpy(float),
            "w": precision,
            "rows": 1,
        }
    )
    if rolled is not None:
        frame = pd.concat([frame] + [pd.DataFrame({"metric": metric, "arm_id": r.arm_ids, "wd": rolled_decay * r.weighted_delta,
                                                   "w": rolled_decay * r.weight, "rows": r.rows.astype(int)})
                                     for metric, r in rolled.metrics.items()], ignore_index=True)
    agg = frame.groupby(["metric", "arm_id"], sort=True).sum()
    return pd.DataFrame(
        {"delta": agg["wd"] / agg["w"], "var": 1.0 / agg["w"], "rows": agg["rows"]}
    ).reset_index()


def control_baseline(spec: ExperimentSpec, table: pd.DataFrame, metric: str, rolled: Rollup | None = None,
                     rolled_decay: float = 1.0) -> tuple[float, float, int]:
    """Count-weighted, decayed mean of the control arm's ``metric`` over windows; its standard error; row count.

    ``rolled`` adds the sums of rolled-up windows (with their decay factor ``rolled_decay``).
    """
    rows = table[(table["arm_id"] == CONTROL_ARM_ID) & (table["metric"] == metric)]
    if rows.empty:
        return float("nan"), float("nan"), 0
    decay = window_decay(rows["window"].to_numpy(), spec.policy.half_life_hours)
    weight = decay * rows["count"].to_numpy(float)
    var = row_variances(spec, table, None if rolled is None else rolled.noise)[rows.index.to_numpy()]
    sums = np.array([np.sum(weight * rows["mean"].to_numpy(float)), np.sum(weight), np.sum(decay / var), len(rows)])
    if rolled is not None and metric in rolled.metrics:
        sums = sums + rolled.metrics[metric].baseline * np.array([rolled_decay, rolled_decay, rolled_decay, 1.0])
    return float(sums[0] / sums[1]), float(np.sqrt(1.0 / sums[2])), int(sums[3])


def pool(spec: ExperimentSpec, table: pd.DataFrame, rolled: Rollup | None = None) -> PooledData:
    """Pool the online rows of ``table`` into per-metric effects relative to control.

    ``rolled`` (default: ``table.attrs["rollup"]``, where ``jobs.load`` puts it) holds the sums of windows
    rolled up before the table's (``bayesopt.rollup``); they are pooled with the rows, as if the rows were there.
    Metrics that no arm besides control has been observed on are left out of ``metrics``.
    """
    rolled = rolled if rolled is not None else table.attrs.get(ROLLUP_ATTR)
    online = table[table["source"] == "online"].reset_index(drop=True)
    unnamed = (table["source"] != "online") & ~table["metric"].isin(spec.simulator_metrics)
    dropped = {"simulation_rows": int(unnamed.sum())}  # simulator rows of metrics the spec lets a simulator inform are not ignored
    if online.empty:
        return PooledData({}, 0, dropped)
    online = online[online["metric"].isin(modelled_metrics(spec))].reset_index(drop=True)
    check_finite(online)
    absolute = absolute_metrics(online, rolled.absolute_metrics if rolled else frozenset())  # the roll-up's sums are relative for exactly the others
    deltas, dropped["rows_without_control"] = window_deltas(spec, online, None if rolled is None else rolled.noise, absolute)
    drift = detect_drift(deltas, None if rolled is None else rolled.drift_sums())
    if rolled is not None:
        dropped["rows_without_control"] += rolled.rows_without_control
    if drift.detected:  # learn the new world from the windows since the shift only
        dropped["windows_before_drift"] = int((online["window"] < drift.since_window).sum()) + (rolled.rows if rolled else 0)
        online = online[online["window"] >= drift.since_window].reset_index(drop=True)
        rolled = None  # every cut lies after the roll-up's watermark (bayesopt.rollup.KEEP_WINDOWS)
        absolute = absolute_metrics(online)
        deltas, dropped["rows_without_control"] = window_deltas(spec, online, absolute=absolute)
    decay = window_decay(online["window"].to_numpy(), spec.policy.half_life_hours)
    decay_by_window = dict(zip(online["window"].to_numpy(), decay, strict=True))
    rolled_decay = 1.0 if rolled is None else rolled.decay(int(online["window"].max()), spec.policy.half_life_hours)
    pooled = pool_arms(deltas, np.array([decay_by_window[w] for w in deltas["window"]]), rolled, rolled_decay)
    positions = {a: i for i, a in enumerate(deltas["arm_id"])}  # a row of each arm: its parameter values
    params = deltas[[param_column(n) for n in spec.parameter_names]].to_numpy(float)
    if rolled is not None:  # arms seen only in rolled-up windows: their values come with the roll-up
        only_rolled = [a for a in rolled.arm_values if a not in positions]
        positions.update((a, len(params) + i) for i, a in enumerate(only_rolled))
        params = np.vstack([params, np.array([[rolled.arm_values[a][n] for n in spec.parameter_names]
                                              for a in only_rolled]).reshape(len(only_rolled), len(spec.parameter_names))])
    out: dict[str, MetricData] = {}
    used = 0
    for metric in modelled_metrics(spec):
        arm_rows = pooled[pooled["metric"] == metric]
        if arm_rows.empty:
            continue
        baseline, baseline_se, control_rows = control_baseline(spec, online, metric, rolled, rolled_decay)
        unit = 1.0 if metric in absolute else baseline  # relative differences back to the metric's units
        arm_ids = [CONTROL_ARM_ID, *arm_rows["arm_id"]]
        X = np.stack([to_unit(spec, spec.control)] + [_unit(spec, params, positions[a]) for a in arm_rows["arm_id"]])
        var = unit**2 * arm_rows["var"].to_numpy(float)
        recent = (deltas["metric"] == metric) & (deltas["window"] > int(online["window"].max()) - KEEP_WINDOWS)
        root = control_root(deltas[recent], decay_by_window, arm_ids, var / unit**2)
        out[metric] = MetricData(
            metric=metric,
            arm_ids=arm_ids,
            X=X,
            delta=np.concatenate([[0.0], unit * arm_rows["delta"].to_numpy(float)]),
            var=np.concatenate([[CONTROL_ANCHOR_RATIO * var.min()], var]),
            baseline=baseline,
            baseline_se=baseline_se,
            num_rows=int(arm_rows["rows"].sum()) + control_rows,
            control_root=unit * root,
        )
        used += out[metric].num_rows
    return PooledData(out, used, dropped, int(online["window"].max()), drift)


def control_root(deltas: pd.DataFrame, decay_by_window: dict, arm_ids: list[str], pooled_var: np.ndarray) -> np.ndarray:
    """The ``k x W`` factor :attr:`MetricData.control_root` of one metric, in the deltas' own units.

    Args:
        deltas: the metric's per-window rows of :func:`window_deltas` (``control_var`` is the window's control error).
        decay_by_window: window number -> decay factor.
        arm_ids: ``k`` ids, control first (its row stays zero).
        pooled_var: ``k - 1`` pooled variances of the other arms (rolled-up windows included, which add to an
            arm's own variance only: their control errors are summed away).
    """
    windows = np.sort(deltas["window"].unique())
    col = {w: j for j, w in enumerate(windows)}
    row = {a: i for i, a in enumerate(arm_ids)}
    var_by_arm = dict(zip(arm_ids[1:], pooled_var, strict=True))
    decay = np.array([decay_by_window[w] for w in deltas["window"]])
    weight = decay / deltas["var"].to_numpy(float) * np.array([var_by_arm[a] for a in deltas["arm_id"]])  # pooling weight
    root = np.zeros((len(arm_ids), len(windows)))
    rows = np.array([row[a] for a in deltas["arm_id"]], dtype=np.int64)
    cols = np.array([col[w] for w in deltas["window"]], dtype=np.int64)
    np.add.at(root, (rows, cols), weight * np.sqrt(deltas["control_var"].to_numpy(float)))
    return root


def check_finite(table: pd.DataFrame) -> None:
    """Raise :class:`ModelFitError` naming the first rows whose count, mean or standard error is not finite."""
    values = table[["count", "mean", "std_error"]].to_numpy(float)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        rows = table.loc[bad, ["window", "arm_id", "metric"]].head(5).to_dict("records")
        raise ModelFitError(f"non-finite count, mean or std_error in {int(bad.sum())} row(s), e.g. {rows}")


def _unit(spec: ExperimentSpec, params: np.ndarray, row: int) -> np.ndarray:
    """Unit coordinates of row ``row`` of ``params`` (``n x d``, the ``x.<name>`` columns in spec order)."""
    return to_unit(spec, dict(zip(spec.parameter_names, params[row].tolist(), strict=True)))
