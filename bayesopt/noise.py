"""Noise estimates for one row of the observation table: never zero, shrunk toward the metric's pooled level.

A window's arm may have a handful of sessions: a rate of 0/3 has a sample variance of zero, and a GP that is
told an observation is exact will bend through it. Each row's squared standard error is therefore floored:

- ``rate`` metrics: ``p~ (1 - p~) / (n + PRIOR_COUNT)`` with ``p~ = (n p + PRIOR_COUNT p0) / (n + PRIOR_COUNT)``,
  an Agresti-Coull-style estimate in which ``p`` is shrunk toward ``p0``, the metric's pooled rate over all rows
  (itself Laplace-smoothed so it is never exactly 0 or 1);
- ``mean`` metrics: the per-outcome variance is shrunk toward the metric's pooled within-row variance with
  ``PRIOR_DOF`` pseudo degrees of freedom, then divided by ``n``.

The floor replaces the observed ``std_error**2`` only when it is larger.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def pooled_rate(count: np.ndarray, mean: np.ndarray) -> float:
    """Laplace-smoothed rate over all rows: ``(successes + 1) / (sessions + 2)``, strictly inside (0, 1)."""
    successes = float(np.sum(count * np.clip(mean, 0.0, 1.0)))
    return (successes + 1.0) / (float(np.sum(count)) + 2.0)


def mean_floor(count: np.ndarray, mean: np.ndarray, std_error: np.ndarray) -> np.ndarray:
    """Variance of ``mean``-metric means with the per-outcome variance shrunk toward the pooled one.

    Args:
        count, mean, std_error: ``n`` rows of one metric.

    Returns:
        ``n`` variances of the mean, all positive.
    """
    outcome_var = std_error**2 * count  # per outcome
    dof = np.maximum(count - 1.0, 0.0)
    if dof.sum() > 0:
        pooled = float(np.sum(dof * outcome_var) / dof.sum())
    else:
        pooled = 0.0
    if pooled <= 0.0 and len(mean) > 1:
        pooled = float(np.var(mean, ddof=1) * np.mean(count))  # no within-row spread: use the between-row one
    pooled = max(pooled, RELATIVE_EPS * max(1.0, float(np.mean(mean**2))))
    shrunk = (dof * outcome_var + PRIOR_DOF * pooled) / (dof + PRIOR_DOF)
    return shrunk / count


def row_variances(spec: ExperimentSpec, table: pd.DataFrame) -> np.ndarray:
    """Squared standard error of each row's mean, floored as described in the module docstring.

    Args:
        spec: gives each metric's kind.
        table: the observation table (columns ``metric``, ``count``, ``mean``, ``std_error``), ``n`` rows.

    Returns:
        ``n`` positive variances, in the table's row order.
    """
    out = np.zeros(len(table))
    kinds = {m.name: m.kind for m in spec.metrics}
    for metric, rows in table.groupby("metric", sort=True).indices.items():
        count = np.maximum(table["count"].to_numpy(float)[rows], 1.0)
        mean = table["mean"].to_numpy(float)[rows]
        se2 = table["std_error"].to_numpy(float)[rows] ** 2
        if kinds.get(metric) == "rate":
            floor = rate_floor(count, mean, pooled_rate(count, mean))
        else:
            floor = mean_floor(count, mean, np.sqrt(se2))
        scale = RELATIVE_EPS * np.maximum(1.0, mean**2)
        out[rows] = np.maximum(np.maximum(se2, floor), scale)
    return out
