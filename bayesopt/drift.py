"""Has the world shifted? A change-point test on the arms' differences from control. Light: numpy and scipy.

A ranker release (or any change of the system around the experiment) changes how every metric responds to
the parameters. Differences from control cancel the hour of day, so in a stationary world an arm's pooled
difference before a window ``s`` and after it agree up to noise. For each split ``s`` and metric, with ``k``
arms served on both sides::

    d = delta_after - delta_before                       (k)
    C = Cov(delta_after) + Cov(delta_before)             (k x k)
    Q = d' C^-1 d  ~  chi^2_k  when nothing changed

``C`` is exact under the pooling model: an arm's pooled difference is a weighted sum of its windows' differences,
and two arms served in the same window share that window's control noise, so their differences are correlated
(ignoring that would inflate ``Q`` and raise false alarms). The smallest p-value over splits and metrics,
Bonferroni-adjusted for the number of tests, is compared with :data:`DRIFT_ALPHA`; when it is below, the
policy forgets the windows before that split and learns the new world from what came after.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import chi2

#: Family-wise false-alarm rate of one refit's test (all splits and metrics together). Over a 48-hour run of
#: hourly refits, a stationary world raises an alarm in at most ~5% of runs.
DRIFT_ALPHA = 1e-3
#: Splits tested: the most recent windows only (an old shift is already behind the data that count).
MAX_SPLITS = 48
#: Windows needed on each side of a split.
MIN_WINDOWS_PER_SIDE = 1


@dataclass(frozen=True)
class DriftTest:
    """The outcome of :func:`detect_drift`.

    Attributes:
        detected: whether the adjusted p-value is below :data:`DRIFT_ALPHA`.
        since_window: the first window of the new world when detected, else None.
        p_value: the smallest Bonferroni-adjusted p-value (1.0 when nothing could be tested).
        metric: the metric of that p-value.
        tests: the number of (split, metric) tests.
    """

    detected: bool
    since_window: int | None
    p_value: float
    metric: str | None
    tests: int

    def to_dict(self) -> dict[str, object]:
        return {"detected": self.detected, "since_window": self.since_window, "p_value": self.p_value,
                "metric": self.metric, "tests": self.tests, "alpha": DRIFT_ALPHA}


@dataclass(frozen=True)
class MetricGrid:
    """One metric's rows as dense ``k x w`` arrays (arms by windows; NaN where an arm was not served)."""

    arms: list[str]
    windows: np.ndarray  # w
    delta: np.ndarray  # k x w
    var: np.ndarray  # k x w, arm plus control variance
    control_var: np.ndarray  # w

    @classmethod
    def from_rows(cls, rows: pd.DataFrame) -> MetricGrid:
        """From rows with ``window, arm_id, delta, var, control_var`` (one per window and arm)."""
        arms, arm_pos = np.unique(rows["arm_id"].to_numpy(), return_inverse=True)
        windows, win_pos = np.unique(rows["window"].to_numpy(), return_inverse=True)
        delta = np.full((len(arms), len(windows)), np.nan)
        var = np.full_like(delta, np.nan)
        control_var = np.zeros(len(windows))
        delta[arm_pos, win_pos] = rows["delta"].to_numpy(float)
        var[arm_pos, win_pos] = rows["var"].to_numpy(float)
        control_var[win_pos] = rows["control_var"].to_numpy(float)
        return cls(list(arms), windows, delta, var, control_var)


def side_moments(delta: np.ndarray, var: np.ndarray, control_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled differences ``k`` and their covariance ``k x k`` from ``k x w`` windows (NaN: not served).

    An arm's pooled difference weighs its windows by inverse variance; two arms served in one window share its
    control noise ``control_var`` (``w``), the rest of each window's variance is the arm's own.
    """
    served = np.isfinite(var)
    inv = np.where(served, 1.0 / np.where(served, var, 1.0), 0.0)
    weights = inv / inv.sum(axis=1, keepdims=True)  # k x w, each row sums to one
    mean = (weights * np.where(served, delta, 0.0)).sum(axis=1)
    own = np.where(served, var - control_var[None, :], 0.0)
    cov = (weights * control_var[None, :]) @ weights.T + np.diag((weights**2 * own).sum(axis=1))
    return mean, cov


def split_p_value(grid: MetricGrid, split: int) -> tuple[float, int]:
    """The chi-square p-value of "no change at window ``split``" for one metric, and the arms it compared."""
    before = grid.windows < split
    on_both = np.isfinite(grid.var[:, before]).any(axis=1) & np.isfinite(grid.var[:, ~before]).any(axis=1)
    k = int(on_both.sum())
    if not k:
        return 1.0, 0
    sides = [side_moments(grid.delta[on_both][:, cols], grid.var[on_both][:, cols], grid.control_var[cols])
             for cols in (before, ~before)]
    d = sides[1][0] - sides[0][0]
    try:
        L = np.linalg.cholesky(sides[0][1] + sides[1][1])
    except np.linalg.LinAlgError:
        return 1.0, 0
    z = np.linalg.solve(L, d)
    return float(chi2.sf(float(z @ z), k)), k


def most_likely_split(deltas: pd.DataFrame) -> DriftTest:
    """One pass: the split with the smallest adjusted p-value over recent splits and metrics of ``deltas``."""
    windows = np.sort(deltas["window"].unique()) if len(deltas) else np.array([], dtype=int)
    splits = [int(w) for w in windows[MIN_WINDOWS_PER_SIDE:len(windows) - MIN_WINDOWS_PER_SIDE + 1]][-MAX_SPLITS:]
    results = []
    for metric, rows in (deltas.groupby("metric", sort=True) if len(deltas) else ()):
        grid = MetricGrid.from_rows(rows)
        for split in splits:
            p, k = split_p_value(grid, split)
            if k:
                results.append((p, -split, str(metric)))  # ties: the later split
    if not results:
        return DriftTest(False, None, 1.0, None, 0)
    n = len(results)
    p_min, neg_split, metric = min(results)
    adjusted = min(1.0, p_min * n)
    return DriftTest(adjusted < DRIFT_ALPHA, -neg_split if adjusted < DRIFT_ALPHA else None, adjusted, metric, n)


def detect_drift(deltas: pd.DataFrame) -> DriftTest:
    """The start of the current world in ``deltas`` (rows of :func:`bayesopt.pooling.window_deltas`).

    The most likely change point is found first; the windows after it are tested again, so a second shift
    after an earlier, larger one is found too. Returns the last detection (or the first pass when none).
    """
    test = most_likely_split(deltas)
    found = test
    while test.detected:
        found = test
        test = most_likely_split(deltas[deltas["window"] >= test.since_window])
    return found
