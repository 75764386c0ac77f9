"""Per-arm diagnostics published with a distribution: predicted levels with 95% intervals, feasibility, p_best.

An arm's predicted level of a metric is ``baseline + (delta(x) - delta(control))``; the difference's mean and
variance come from the exact joint posterior at ``[control, arms]`` (``var = v_x + v_c - 2 cov(x, c)``), not from
the draws, and the baseline's own standard error is added in quadrature.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from bayesopt.device import as_tensor, to_numpy
from bayesopt.gp import exact_linalg
from bayesopt.gp_parts import MetricModel, lengthscales
from bayesopt.pooling import MetricData

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054


def level_posterior(model: MetricModel, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``delta(x) - delta(control)`` at ``k`` arms.

    Args:
        model: a fitted GP of one metric's deltas.
        X: ``k x d`` unit points, control first.

    Returns:
        ``k`` means and ``k`` standard deviations (both 0 at control).
    """
    with torch.no_grad(), exact_linalg():
        post = model.posterior(as_tensor(X))
        mean = post.mean.squeeze(-1)  # k
        cov = post.covariance_matrix  # k x k
    diff_mean = mean - mean[0]
    diff_var = cov.diagonal() + cov[0, 0] - 2.0 * cov[0]
    return to_numpy(diff_mean), np.sqrt(np.maximum(to_numpy(diff_var), 0.0))


def arm_diagnostics(
    models: Mapping[str, MetricModel],
    data: Mapping[str, MetricData],
    arm_ids: list[str],
    X: np.ndarray,
    p_feasible: np.ndarray,
    p_best: np.ndarray,
) -> dict[str, Any]:
    """``{arm_id: {"metrics": {metric: {"mean", "lower", "upper"}}, "p_feasible", "p_best"}}`` for ``k`` arms.

    Args:
        models, data: per modelled metric.
        arm_ids: ``k`` ids, control first; ``X``: their ``k x d`` unit points.
        p_feasible, p_best: ``k`` probabilities from Thompson sampling.
    """
    out: dict[str, Any] = {a: {"metrics": {}, "p_feasible": float(p_feasible[i]), "p_best": float(p_best[i])}
                           for i, a in enumerate(arm_ids)}
    for metric, model in models.items():
        mean, sd = level_posterior(model, X)
        base, base_se = data[metric].baseline, data[metric].baseline_se
        half = Z95 * np.sqrt(sd**2 + base_se**2)  # k
        for i, a in enumerate(arm_ids):
            level = base + mean[i]
            out[a]["metrics"][metric] = {
                "mean": _finite(level), "lower": _finite(level - half[i]), "upper": _finite(level + half[i]),
            }
    return out


def model_summary(models: Mapping[str, MetricModel], data: Mapping[str, MetricData]) -> dict[str, Any]:
    """Per metric: the control baseline (and its standard error), arms used, fitted lengthscales."""
    return {
        m: {
            "baseline": _finite(data[m].baseline),
            "baseline_se": _finite(data[m].baseline_se),
            "arms": len(data[m].arm_ids) - 1,
            "rows": data[m].num_rows,
            "lengthscales": [_finite(v) for v in lengthscales(model)],
        }
        for m, model in models.items()
    }


def _finite(value: float) -> float | None:
    """JSON has no NaN: non-finite numbers become null."""
    value = float(value)
    return value if math.isfinite(value) else None
