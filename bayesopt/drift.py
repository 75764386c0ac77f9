"""Has the world shifted? A change-point test on the arms' differences from control. Light: numpy and scipy.

A ranker release (or any change of the system around the experiment) changes how every metric responds to
the parameters. Differences from control cancel the hour of day, so in a stationary world an arm's pooled
difference before a window ``s`` and after it agree up to noise. For each split ``s`` and metric, with ``k``
arms served to at least :data:`MIN_SESSIONS_PER_SIDE` sessions on each side::

    d = delta_after - delta_before                       (k)
    C = Cov(delta_after) + Cov(delta_before)             (k x k)
    Q = d' C^-1 d  ~  chi^2_k  when nothing changed

``C`` is exact under the pooling model: an arm's pooled difference is a weighted sum of its windows' differences,
and two arms served in the same window share that window's control noise, so their differences are correlated
(ignoring that would inflate ``Q`` and raise false alarms).

``Q`` spreads its power over every arm, and most arms of a long run were served a few times long ago: their
noisy ``d`` add degrees of freedom and hide a clear change on the few arms that carry the traffic. Two more
statistics of the same ``d`` and ``C`` are therefore tested at each split, each ``chi^2`` under no change:

- the *common shift* (1 degree of freedom), the generalised-least-squares estimate of one change shared by
  every arm, ``(1' C^-1 d)^2 / (1' C^-1 1)``: a ranker release tends to move the served arms alike;
- the *informative arms*: ``Q`` over the :data:`INFORMATIVE_ARMS` arms with the smallest ``Var(d)``, chosen by
  their variances alone (which do not depend on ``d``), so the null distribution is unchanged.

The smallest p-value over splits, metrics and statistics, Bonferroni-adjusted for the number of tests, is
compared with :data:`DRIFT_ALPHA`; when it is below, the policy forgets the windows before that split and
learns the new world from what came after.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

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
#: Sessions an arm needs on each side of a split to be compared. The variances come from the rows themselves, and
#: a handful of sessions gives a variance estimate too noisy for a chi-square (at 500, its relative error is
#: about sqrt(2 / 500) = 6%); arms served to a few members a window would otherwise raise false alarms alone.
MIN_SESSIONS_PER_SIDE = 500
#: Arms of the "informative arms" statistic: about as many as a served distribution concentrates its traffic on.
INFORMATIVE_ARMS = 4


@dataclass(frozen=True)
class DriftTest:
    """The outcome of :func:`detect_drift`.

    Attributes:
        detected: whether the adjusted p-value is below :data:`DRIFT_ALPHA`.
        since_window: the first window of the new world when detected, else None.
        p_value: the smallest Bonferroni-adjusted p-value (1.0 when nothing could be tested).
        metric: the metric of that p-value.
        tests: the number of (split, metric, statistic) tests.
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
    count: np.ndarray  # k x w, the arm's sessions (0 where not served)

    @classmethod
    def from_rows(cls, rows: pd.DataFrame) -> MetricGrid:
        """From rows with ``window, arm_id, delta, var, control_var`` and optionally ``count`` (one per window
        and arm; without ``count``, every row counts as enough sessions)."""
        arms, arm_pos = np.unique(rows["arm_id"].to_numpy(), return_inverse=True)
        windows, win_pos = np.unique(rows["window"].to_numpy(), return_inverse=True)
        delta = np.full((len(arms), len(windows)), np.nan)
        var = np.full_like(delta, np.nan)
        count = np.zeros_like(delta)
        control_var = np.zeros(len(windows))
        delta[arm_pos, win_pos] = rows["delta"].to_numpy(float)
        var[arm_pos, win_pos] = rows["var"].to_numpy(float)
        count[arm_pos, win_pos] = rows["count"].to_numpy(float) if "count" in rows else MIN_SESSIONS_PER_SIDE
        control_var[win_pos] = rows["control_var"].to_numpy(float)
        return cls(list(arms), windows, delta, var, control_var, count)


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
    """The all-arms chi-square p-value of "no change at window ``split``" for one metric, and the arms it compared."""
    return split_p_values(grid, [split])[0]


def split_p_values(grid: MetricGrid, splits: list[int], earlier: EarlierWindows | None = None) -> list[tuple[float, int]]:
    """The all-arms chi-square p-value and the arms compared, for each of ``splits`` (ascending)."""
    return [(t.p_values.get("all", 1.0), t.arms) for t in split_tests(grid, splits, earlier)]


@dataclass(frozen=True)
class SplitTest:
    """The p-values of "no change at one split" for one metric: ``p_values`` by statistic (``all``, and
    ``common`` and ``informative`` where they differ from ``all``; empty when no arm was compared),
    and the number of arms compared."""

    p_values: dict[str, float]
    arms: int


class EarlierWindows(NamedTuple):
    """Windows older than a grid's, summed (rolled up, ``bayesopt.rollup``): over ``arms`` (``j``), the older
    side's :class:`SideSums` and each arm's sessions (``j``)."""

    arms: list[str]
    sums: SideSums
    sessions: np.ndarray

    def aligned(self, arms: list[str]) -> EarlierWindows:
        """The same windows over ``arms``: zeros for arms not served in them."""
        position = {a: i for i, a in enumerate(self.arms)}
        sessions = np.array([self.sessions[position[a]] if a in position else 0.0 for a in arms], dtype=float)
        return EarlierWindows(list(arms), self.sums.aligned(self.arms, list(arms)), sessions)


def split_tests(grid: MetricGrid, splits: list[int], earlier: EarlierWindows | None = None) -> list[SplitTest]:
    """The module docstring's statistics for one metric at each of ``splits`` (ascending).

    The older side is a running total of :class:`SideSums`: the windows before the first split are summed once,
    so the cost of many splits does not grow with the history behind them. ``earlier`` (over ``grid.arms``)
    starts that total, and each arm's sessions before every split, with windows older than the grid's.
    """
    out = []
    before_sums: SideSums | None = None if earlier is None else earlier.sums
    done = 0  # windows already in before_sums
    rolled = np.zeros(len(grid.arms)) if earlier is None else earlier.sessions  # k
    sessions = rolled[:, None] + np.cumsum(grid.count, axis=1)  # k x w, up to and including each window
    for split in splits:
        end = int(np.searchsorted(grid.windows, split))
        new = SideSums.of(grid.delta[:, done:end], grid.var[:, done:end], grid.control_var[done:end])
        before_sums = new if before_sums is None else before_sums + new
        done = end
        after = slice(end, None)
        before_n = sessions[:, end - 1] if end else rolled
        on_both = (before_n >= MIN_SESSIONS_PER_SIDE) & (sessions[:, -1] - before_n >= MIN_SESSIONS_PER_SIDE)
        k = int(on_both.sum())
        if not k:
            out.append(SplitTest({}, 0))
            continue
        old_side = before_sums.moments(on_both)
        new_side = SideSums.of(grid.delta[:, after], grid.var[:, after], grid.control_var[after]).moments(on_both)
        out.append(SplitTest(change_p_values(new_side[0] - old_side[0], old_side[1] + new_side[1]), k))
    return out


def change_p_values(d: np.ndarray, C: np.ndarray) -> dict[str, float]:
    """P-values of "no change" for ``k`` changes ``d`` with covariance ``C`` (``k x k``), by statistic; empty if
    ``C`` is not positive definite."""
    whitened = _whiten(d, C)
    if whitened is None:
        return {}
    L, z = whitened
    k = len(d)
    p = {"all": float(chi2.sf(float(z @ z), k))}
    if k > 1:
        u = np.linalg.solve(L, np.ones(k))  # the common shift's direction, whitened
        p["common"] = float(chi2.sf(float(u @ z) ** 2 / float(u @ u), 1))
    if k > INFORMATIVE_ARMS:
        keep = np.argsort(np.diag(C), kind="stable")[:INFORMATIVE_ARMS]
        sub = _whiten(d[keep], C[np.ix_(keep, keep)])
        p["informative"] = 1.0 if sub is None else float(chi2.sf(float(sub[1] @ sub[1]), INFORMATIVE_ARMS))
    return p


def _whiten(d: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(L, L^-1 d)`` with ``L`` the Cholesky factor of ``C``, or None if ``C`` is not positive definite."""
    try:
        L = np.linalg.cholesky(C)
    except np.linalg.LinAlgError:
        return None
    return L, np.linalg.solve(L, d)


def most_likely_split(deltas: pd.DataFrame, earlier: Mapping[str, EarlierWindows] | None = None) -> DriftTest:
    """One pass: the split with the smallest adjusted p-value over recent splits, metrics and statistics of ``deltas``.

    ``earlier`` maps a metric to the windows older than ``deltas``' (see :func:`split_tests`).
    """
    windows = np.sort(deltas["window"].unique()) if len(deltas) else np.array([], dtype=int)
    splits = [int(w) for w in windows[MIN_WINDOWS_PER_SIDE:len(windows) - MIN_WINDOWS_PER_SIDE + 1]][-MAX_SPLITS:]
    results = []
    for metric, rows in (deltas.groupby("metric", sort=True) if len(deltas) else ()):
        grid = MetricGrid.from_rows(rows)
        older = (earlier or {}).get(str(metric))
        start = None if older is None else older.aligned([str(a) for a in grid.arms])
        for split, test in zip(splits, split_tests(grid, splits, start), strict=True):
            results += [(p, -split, str(metric)) for p in test.p_values.values()]  # ties: the later split
    if not results:
        return DriftTest(False, None, 1.0, None, 0)
    n = len(results)
    p_min, neg_split, metric = min(results)
    adjusted = min(1.0, p_min * n)
    return DriftTest(adjusted < DRIFT_ALPHA, -neg_split if adjusted < DRIFT_ALPHA else None, adjusted, metric, n)


def detect_drift(deltas: pd.DataFrame, earlier: Mapping[str, EarlierWindows] | None = None) -> DriftTest:
    """The start of the current world in ``deltas`` (rows of :func:`bayesopt.pooling.window_deltas`).

    The most likely change point is found first; the windows after it are tested again, so a second shift
    after an earlier, larger one is found too. Returns the last detection (or the first pass when none).
    ``earlier``: per metric, the windows rolled up before ``deltas`` (first pass only: a cut lies after them).
    """
    test = most_likely_split(deltas, earlier)
    found = test
    while test.detected:
        found = test
        test = most_likely_split(deltas[deltas["window"] >= test.since_window])
    return found
