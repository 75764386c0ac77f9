"""Noise estimates per row of the observation table: never zero; for rates, not a function of the row's own rate.

A window's arm may have a handful of sessions: a rate of 0/3 has a sample variance of zero, and a GP that is
told an observation is exact will bend through it. Each row's squared standard error is therefore:

- ``rate`` metrics (a share of sessions, one Bernoulli outcome each), an arm's online row in a window whose
  control rate ``c`` is strictly inside (0, 1): ``c (1 - c) / n``, the binomial variance at control's rate,
  *instead of* the observed error. A binomial row's sample variance is a function of its own rate, and pooling
  windows by inverse variance then gives most weight to the windows that happened to see fewest events: an arm
  at control's applies rate served 30 sessions in each of 48 windows pooled to -40% (mean over 400 seeds,
  test_noise_pooling), and even shrinking the row's rate toward control's by 10 expected events left -6%. Any
  weight that moves with the row's own rate biases the pooled effect by about ``-1 / (expected events per
  window)``: -0.3% for windows of 300 events, a third of the margin of a guardrail at -1%. At control's rate
  the weights follow session counts and control's level only; an arm whose rate is far from control's has its
  noise misstated in proportion (10% for a 10% effect), its effect not biased.
- ``rate`` metrics, every other row (control's own, simulator rows, windows without a usable control rate):
  ``max(observed, p~ (1 - p~) / (n + PRIOR_COUNT))`` with ``p~ = (n p + PRIOR_COUNT p0) / (n + PRIOR_COUNT)``,
  an Agresti-Coull-style estimate in which ``p`` is shrunk toward ``p0``, the metric's pooled rate over all
  rows (itself Laplace-smoothed so it is never exactly 0 or 1);
- ``mean`` metrics: ``max(observed, floor)``, the floor being the per-outcome variance shrunk toward the
  metric's pooled within-row variance with ``PRIOR_DOF`` pseudo degrees of freedom, divided by ``n``. (Their
  spread is a free parameter: control's would make an arm with wider outcomes overconfident.)

The pooled levels are functions of sums over rows (:class:`NoiseSums`), so rows rolled up into a summary
(``bayesopt.rollup``) still count towards them: their sums are passed as ``prior``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import astuple, dataclass

import numpy as np
import pandas as pd

from bayesopt.distribution import CONTROL_ARM_ID
from bayesopt.spec import ExperimentSpec

#: Pseudo-sessions of the pooled rate added to each row (Agresti-Coull adds z^2 ~ 4 at p0 = 1/2; 2 keeps the
#: floor close to the plain binomial variance once a row has tens of sessions).
PRIOR_COUNT = 2.0
#: Pseudo degrees of freedom of the pooled variance for ``mean`` metrics.
PRIOR_DOF = 2.0
#: Relative floor on any variance, so that a metric constant over every row still has positive noise.
RELATIVE_EPS = 1e-12


def rate_floor(count: np.ndarray, mean: np.ndarray, pooled_rate: float) -> np.ndarray:
    """Variance floor of rate means.

    Args:
        count: ``n`` session counts (> 0).
        mean: ``n`` observed rates in [0, 1].
        pooled_rate: the metric's rate over all rows, strictly inside (0, 1).

    Returns:
        ``n`` variances of the mean, all positive.
    """
    shrunk = (count * mean + PRIOR_COUNT * pooled_rate) / (count + PRIOR_COUNT)
    shrunk = np.clip(shrunk, 0.0, 1.0)
    return shrunk * (1.0 - shrunk) / (count + PRIOR_COUNT)


def rate_variance(count: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Binomial variances ``reference (1 - reference) / count`` of ``n`` rate means (``reference`` inside (0, 1))."""
    return reference * (1.0 - reference) / count


@dataclass(frozen=True)
class NoiseSums:
    """Sums over rows of one metric that its pooled noise level is made of; sums of disjoint row sets add.

    ``rows``; ``count`` (sessions, each row's at least 1); ``successes`` (``count * clip(mean, 0, 1)``);
    ``dof_var`` (``max(count - 1, 0) * count * std_error**2``, within-row spread); ``dof``
    (``max(count - 1, 0)``); ``mean`` and ``mean_sq`` (of the row means).
    """

    rows: float = 0.0
    count: float = 0.0
    successes: float = 0.0
    dof_var: float = 0.0
    dof: float = 0.0
    mean: float = 0.0
    mean_sq: float = 0.0

    @classmethod
    def of(cls, count: np.ndarray, mean: np.ndarray, std_error: np.ndarray) -> NoiseSums:
        """From ``n`` rows (counts already at least 1)."""
        dof = np.maximum(count - 1.0, 0.0)
        return cls(float(len(count)), float(np.sum(count)), float(np.sum(count * np.clip(mean, 0.0, 1.0))),
                   float(np.sum(dof * (std_error**2 * count))), float(dof.sum()), float(np.sum(mean)),
                   float(np.sum(mean**2)))

    def __add__(self, other: NoiseSums) -> NoiseSums:
        return NoiseSums(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def to_list(self) -> list[float]:
        return list(astuple(self))


def pooled_rate(count: np.ndarray, mean: np.ndarray, prior: NoiseSums | None = None) -> float:
    """Laplace-smoothed rate over all rows (and ``prior``'s): ``(successes + 1) / (sessions + 2)``, inside (0, 1)."""
    successes = float(np.sum(count * np.clip(mean, 0.0, 1.0))) + (prior.successes if prior else 0.0)
    return (successes + 1.0) / (float(np.sum(count)) + (prior.count if prior else 0.0) + 2.0)


def pooled_outcome_variance(count: np.ndarray, mean: np.ndarray, std_error: np.ndarray,
                            prior: NoiseSums | None = None) -> float:
    """A ``mean`` metric's pooled per-outcome variance over ``n`` rows (and ``prior``'s): within-row, or
    between-row when no row has spread; never below a tiny multiple of the squared level."""
    outcome_var = std_error**2 * count
    dof = np.maximum(count - 1.0, 0.0)
    dof_sum = float(dof.sum()) + (prior.dof if prior else 0.0)
    pooled = (float(np.sum(dof * outcome_var)) + (prior.dof_var if prior else 0.0)) / dof_sum if dof_sum > 0 else 0.0
    rows = len(mean) + (prior.rows if prior else 0.0)
    if prior is None:
        if pooled <= 0.0 and len(mean) > 1:
            pooled = float(np.var(mean, ddof=1) * np.mean(count))  # no within-row spread: use the between-row one
        return max(pooled, RELATIVE_EPS * max(1.0, float(np.mean(mean**2))))
    total = NoiseSums.of(count, mean, std_error) + prior
    if pooled <= 0.0 and rows > 1:
        between = (total.mean_sq - total.mean**2 / rows) / (rows - 1)
        pooled = max(between, 0.0) * total.count / rows
    return max(pooled, RELATIVE_EPS * max(1.0, total.mean_sq / rows))


def mean_floor(count: np.ndarray, mean: np.ndarray, std_error: np.ndarray, prior: NoiseSums | None = None) -> np.ndarray:
    """Variance of ``mean``-metric means with the per-outcome variance shrunk toward the pooled one.

    Args:
        count, mean, std_error: ``n`` rows of one metric.
        prior: sums of further rows of the metric that count towards the pooled variance.

    Returns:
        ``n`` variances of the mean, all positive.
    """
    outcome_var = std_error**2 * count  # per outcome
    dof = np.maximum(count - 1.0, 0.0)
    pooled = pooled_outcome_variance(count, mean, std_error, prior)
    shrunk = (dof * outcome_var + PRIOR_DOF * pooled) / (dof + PRIOR_DOF)
    return shrunk / count


def row_variances(spec: ExperimentSpec, table: pd.DataFrame,
                  prior: Mapping[str, NoiseSums] | None = None) -> np.ndarray:
    """Squared standard error of each row's mean, floored as described in the module docstring.

    Args:
        spec: gives each metric's kind.
        table: the observation table (columns ``metric``, ``count``, ``mean``, ``std_error``), ``n`` rows.
        prior: per metric, sums of rows not in ``table`` that count towards its pooled level (rolled-up rows).

    Returns:
        ``n`` positive variances, in the table's row order.
    """
    out = np.zeros(len(table))
    kinds = {m.name: m.kind for m in spec.metrics}
    prior = prior or {}
    for metric, rows in table.groupby("metric", sort=True).indices.items():
        count = np.maximum(table["count"].to_numpy(float)[rows], 1.0)
        mean = table["mean"].to_numpy(float)[rows]
        se2 = table["std_error"].to_numpy(float)[rows] ** 2
        scale = RELATIVE_EPS * np.maximum(1.0, mean**2)
        if kinds.get(metric) == "rate":
            p0 = pooled_rate(count, mean, prior.get(metric))
            reference = control_rates(table.iloc[rows])
            floored = np.maximum(se2, rate_floor(count, mean, p0))
            out[rows] = np.maximum(np.where(np.isnan(reference), floored, rate_variance(count, reference)), scale)
        else:
            floor = mean_floor(count, mean, np.sqrt(se2), prior.get(metric))
            out[rows] = np.maximum(np.maximum(se2, floor), scale)
    return out


def control_rates(rows: pd.DataFrame) -> np.ndarray:
    """``n`` reference rates of one metric's rows: for an arm's row, control's rate in its window where that is
    strictly inside (0, 1); NaN for control's rows, windows without a usable control rate, rows without windows."""
    out = np.full(len(rows), np.nan)
    if "window" not in rows or "arm_id" not in rows:
        return out
    is_control = (rows["arm_id"] == CONTROL_ARM_ID).to_numpy()
    control = rows.loc[is_control].drop_duplicates("window").set_index("window")["mean"]
    rate = rows["window"].map(control).to_numpy(float)
    usable = ~is_control & (rate > 0) & (rate < 1)
    out[usable] = rate[usable]
    return out
