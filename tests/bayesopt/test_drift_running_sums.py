"""The drift test's running totals over old windows give the p-values of summing each split's sides afresh."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import chi2

from bayesopt.drift import MetricGrid, split_p_values


def rotating_rows(windows: int, arms: int, per_window: int, seed: int) -> pd.DataFrame:
    """``window_deltas`` rows of arms served in a rotating slice, with varying variances and a shift at 2/3."""
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(windows):
        control_var = rng.uniform(1e-5, 1e-4)
        for a in [(w * per_window + i) % arms for i in range(per_window)]:
            var = rng.uniform(1e-4, 1e-3)
            shift = 0.1 if w > 2 * windows // 3 else 0.0
            rows.append({"window": w, "arm_id": f"a{a}", "metric": "m", "var": var + control_var,
                         "control_var": control_var, "delta": shift + rng.normal(0, np.sqrt(var + control_var))})
    return pd.DataFrame(rows)


def reference_p_value(grid: MetricGrid, split: int) -> tuple[float, int]:
    """Each side's pooled differences and covariance summed from its own windows (the textbook formula)."""
    before = grid.windows < split
    on_both = np.isfinite(grid.var[:, before]).any(axis=1) & np.isfinite(grid.var[:, ~before]).any(axis=1)
    sides = []
    for cols in (before, ~before):
        delta, var, cv = grid.delta[on_both][:, cols], grid.var[on_both][:, cols], grid.control_var[cols]
        served = np.isfinite(var)
        inv = np.where(served, 1.0 / np.where(served, var, 1.0), 0.0)
        weights = inv / inv.sum(axis=1, keepdims=True)
        mean = (weights * np.where(served, delta, 0.0)).sum(axis=1)
        own = np.where(served, var - cv[None, :], 0.0)
        sides.append((mean, (weights * cv[None, :]) @ weights.T + np.diag((weights**2 * own).sum(axis=1))))
    d = sides[1][0] - sides[0][0]
    z = np.linalg.solve(np.linalg.cholesky(sides[0][1] + sides[1][1]), d)
    return float(chi2.sf(float(z @ z), int(on_both.sum()))), int(on_both.sum())


def test_running_totals_match_each_split_summed_afresh() -> None:
    grid = MetricGrid.from_rows(rotating_rows(windows=120, arms=30, per_window=4, seed=3))
    splits = [int(w) for w in grid.windows[-48:]]
    got = split_p_values(grid, splits)
    want = [reference_p_value(grid, s) for s in splits]
    assert [k for _, k in got] == [k for _, k in want]
    assert (min(k for _, k in got), max(k for _, k in got)) == (4, 30)  # from one window's arms to every arm
    np.testing.assert_allclose([p for p, _ in got], [p for p, _ in want], rtol=1e-9, atol=1e-300)
    assert min(p for p, _ in got) < 1e-6  # the shift is there to be found: the comparison is not all ones
