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

from collections.abc import Mapping
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


@dataclass(frozen=True)
class SideSums:
    """Sufficient statistics of one side of a split, summed over its windows (``k`` arms).

    With ``inv = 1 / var`` (0 where not served): ``inv_sum = sum_w inv`` (k), ``weighted = sum_w inv * delta``
    (k), ``own = sum_w inv^2 * (var - control_var)`` (k) and ``shared = sum_w control_var * inv inv'`` (k x k).
    Sums over disjoint windows add, so the older side of every split is one running total.
    """

    inv_sum: np.ndarray
    weighted: np.ndarray
    own: np.ndarray
    shared: np.ndarray

    @classmethod
    def of(cls, delta: np.ndarray, var: np.ndarray, control_var: np.ndarray) -> SideSums:
        """From ``k x w`` windows (NaN: not served) and their ``w`` control variances."""
        served = np.isfinite(var)
        inv = np.where(served, 1.0 / np.where(served, var, 1.0), 0.0)
        own = np.where(served, var - control_var[None, :], 0.0)
        return cls(inv.sum(axis=1), (inv * np.where(served, delta, 0.0)).sum(axis=1), (inv**2 * own).sum(axis=1),
                   (inv * control_var[None, :]) @ inv.T)

    def __add__(self, other: SideSums) -> SideSums:
        return SideSums(self.inv_sum + other.inv_sum, self.weighted + other.weighted, self.own + other.own,
                        self.shared + other.shared)

    def aligned(self, have: list[str], arms: list[str]) -> SideSums:
        """These sums, over the arms ``have``, re-indexed to ``arms``: zeros for arms not in ``have``; arms of
        ``have`` not in ``arms`` are dropped."""
        position = {a: i for i, a in enumerate(arms)}
        keep = np.array([i for i, a in enumerate(have) if a in position], dtype=int)
        at = np.array([position[have[i]] for i in keep], dtype=int)
        k = len(arms)
        inv_sum, weighted, own, shared = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros((k, k))
        inv_sum[at], weighted[at], own[at] = self.inv_sum[keep], self.weighted[keep], self.own[keep]
        shared[np.ix_(at, at)] = self.shared[np.ix_(keep, keep)]
        return SideSums(inv_sum, weighted, own, shared)

    def moments(self, arms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooled differences and their covariance of the ``arms`` (a boolean mask of ``k``), each served here."""
        total = self.inv_sum[arms]
        mean = self.weighted[arms] / total
        cov = self.shared[np.ix_(arms, arms)] / np.outer(total, total) + np.diag(self.own[arms] / total**2)
        return mean, cov


def split_p_value(grid: MetricGrid, split: int) -> tuple[float, int]:
    """The chi-square p-value of "no change at window ``split``" for one metric, and the arms it compared."""
    return split_p_values(grid, [split])[0]


def split_p_values(grid: MetricGrid, splits: list[int], earlier: SideSums | None = None) -> list[tuple[float, int]]:
    """The chi-square p-value of "no change at window ``split``" for one metric, and the arms it compared, for
    each of ``splits`` (ascending).

    The older side is a running total of :class:`SideSums`: the windows before the first split are summed once,
    so the cost of many splits does not grow with the history behind them. ``earlier`` (over ``grid.arms``)
    starts that total with windows older than the grid's (rolled up, ``bayesopt.rollup``).
    """
    out = []
    before_sums: SideSums | None = earlier
    served_earlier = np.zeros(len(grid.arms), dtype=bool) if earlier is None else earlier.inv_sum > 0
    done = 0  # windows already in before_sums
    for split in splits:
        end = int(np.searchsorted(grid.windows, split))
        new = SideSums.of(grid.delta[:, done:end], grid.var[:, done:end], grid.control_var[done:end])
        before_sums = new if before_sums is None else before_sums + new
        done = end
        after = slice(end, None)
        on_both = (served_earlier | np.isfinite(grid.var[:, :end]).any(axis=1)) & np.isfinite(grid.var[:, after]).any(axis=1)
        k = int(on_both.sum())
        if not k:
            out.append((1.0, 0))
            continue
        old_side = before_sums.moments(on_both)
        new_side = SideSums.of(grid.delta[:, after], grid.var[:, after], grid.control_var[after]).moments(on_both)
        d = new_side[0] - old_side[0]
        try:
            L = np.linalg.cholesky(old_side[1] + new_side[1])
        except np.linalg.LinAlgError:
            out.append((1.0, 0))
            continue
        z = np.linalg.solve(L, d)
        out.append((float(chi2.sf(float(z @ z), k)), k))
    return out


def most_likely_split(deltas: pd.DataFrame, earlier: Mapping[str, tuple[list[str], SideSums]] | None = None) -> DriftTest:
    """One pass: the split with the smallest adjusted p-value over recent splits and metrics of ``deltas``.

    ``earlier`` maps a metric to the arms and sums of windows older than ``deltas``' (see :func:`split_p_values`).
    """
    windows = np.sort(deltas["window"].unique()) if len(deltas) else np.array([], dtype=int)
    splits = [int(w) for w in windows[MIN_WINDOWS_PER_SIDE:len(windows) - MIN_WINDOWS_PER_SIDE + 1]][-MAX_SPLITS:]
    results = []
    for metric, rows in (deltas.groupby("metric", sort=True) if len(deltas) else ()):
        grid = MetricGrid.from_rows(rows)
        older = (earlier or {}).get(str(metric))
        start = None if older is None else older[1].aligned(older[0], [str(a) for a in grid.arms])
        for split, (p, k) in zip(splits, split_p_values(grid, splits, start), strict=True):
            if k:
                results.append((p, -split, str(metric)))  # ties: the later split
    if not results:
        return DriftTest(False, None, 1.0, None, 0)
    n = len(results)
    p_min, neg_split, metric = min(results)
    adjusted = min(1.0, p_min * n)
    return DriftTest(adjusted < DRIFT_ALPHA, -neg_split if adjusted < DRIFT_ALPHA else None, adjusted, metric, n)


def detect_drift(deltas: pd.DataFrame, earlier: Mapping[str, tuple[list[str], SideSums]] | None = None) -> DriftTest:
    """The start of the current world in ``deltas`` (rows of :func:`bayesopt.pooling.window_deltas`).

    The most likely change point is found first; the windows after it are tested again, so a second shift
    after an earlier, larger one is found too. Returns the last detection (or the first pass when none).
    ``earlier``: per metric, arms and sums of windows rolled up before ``deltas`` (first pass only: a cut lies
    after them).
    """
    test = most_likely_split(deltas, earlier)
    found = test
    while test.detected:
        found = test
        test = most_likely_split(deltas[deltas["window"] >= test.since_window])
    return found
