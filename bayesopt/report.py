"""The impact report: what the experiment has done, window by window, against control served in the same window.

A window is one served distribution version. Traffic and the metrics' baselines swing with the hour of day, and
the weights change every window, so totals pooled over windows compare arms with the hours they happened to be
served in (Simpson's paradox). Everything here compares within a window and then combines windows, stratified:

- per window ``w`` and metric: the served mix's estimate ``mix_w = sum_a p_a mean_a`` (``p_a`` the propensities
  served, renormalised over the arms with data) and its lift ``d_w = mix_w - control_w``, absolute and relative;
  each arm's lift against control likewise;
- combined: ``D = sum_w omega_w d_w`` with ``omega_w`` the window's share of members (of the arm's members for an
  arm's lift), ``Var D = sum_w omega_w^2 Var d_w``; the relative lift is ``D / C`` with ``C`` the control level
  combined the same way (delta method, with the covariance of ``D`` and ``C``);
- cumulative gain: ``sum_w N_w d_w``, what the mix added over serving control to the ``N_w`` members of each
  window (in the metric's units: extra sessions, extra applies);
- sample ratio: per window, members per arm against ``N_w p_a`` (chi-square), and each arm's total over windows
  against ``sum_w N_w p_aw``. A small p-value means the assignment or the logging is broken and no lift above
  can be trusted.

Members are the outcome counts of the first objective metric; observations are those of members in the
experiment (out-of-experiment traffic is not in the rows). Only ``online`` rows count. Standard library only,
so serving computes it without loading numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bayesopt.distribution import ParameterDistribution
from bayesopt.observations import ObservationStat
from bayesopt.report_stats import Estimate, Moments, chi2_sf, relative
from bayesopt.spec import ExperimentSpec, Guardrail

DEFAULT_CONFIDENCE = 0.95
#: A sample-ratio p-value below this flags the assignment; 0.001 is the usual SRM alarm: at hourly checks a
#: sound experiment raises a false alarm about once in six weeks.
SRM_ALPHA = 1e-3
#: Fewest members a chi-square cell may expect (the usual rule for Pearson's approximation).
MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class Activation:
    """One published version and the time its ``current`` pointer switched to it (epoch seconds)."""

    distribution: ParameterDistribution
    activated_at: float


@dataclass(frozen=True)
class _Lift:
    """A window's (or the combined) lift: difference, the control level it is against, and their covariance."""

    diff: Estimate
    control: Estimate
    cov: float
    members: float

    def to_dict(self) -> dict[str, Any]:
        rel = relative(self.diff, self.control, self.cov)
        return {"lift": self.diff.to_dict(), "relative_lift": rel.to_dict(), "control": self.control.to_dict(),
                "members": self.members}


class _Window:
    """One version's moments per (arm, metric) and the lifts computed from them."""

    def __init__(self, spec: ExperimentSpec, act: Activation, moments: Mapping[tuple[str, str], Moments],
                 members: Mapping[str, float], confidence: float) -> None:
        self.spec, self.act, self.moments, self.confidence = spec, act, moments, confidence
        self.dist = act.distribution
        self.control_id = self.dist.control_arm_id
        self.members = {a.arm_id: float(members.get(a.arm_id, 0.0)) for a in self.dist.arms}
        self.total = sum(self.members.values())

    def est(self, value: float, var: float) -> Estimate:
        return Estimate(value, math.sqrt(max(var, 0.0)), self.confidence)

    def arm_lift(self, arm: str, metric: str) -> _Lift | None:
        a, c = self.moments.get((arm, metric)), self.moments.get((self.control_id, metric))
        if a is None or c is None:
            return None
        return _Lift(self.est(a.mean - c.mean, a.var_mean + c.var_mean), self.est(c.mean, c.var_mean), -c.var_mean,
                     a.count)

    def mix_lift(self, metric: str) -> _Lift | None:
        c = self.moments.get((self.control_id, metric))
        served = [(a.arm_id, a.weight, self.moments[(a.arm_id, metric)]) for a in self.dist.arms
                  if a.weight > 0 and (a.arm_id, metric) in self.moments]
        if c is None or len(served) < 2 or self.total <= 0:  # nothing to compare (a pinned version serves one arm)
            return None
        total_weight = sum(w for _, w, _ in served)
        value, var, w_control = -c.mean, 0.0, 0.0
        for arm, w, m in served:
            share = w / total_weight
            value += share * m.mean
            if arm == self.control_id:
                w_control = share
            else:
                var += share * share * m.var_mean
        var += (w_control - 1.0) ** 2 * c.var_mean
        return _Lift(self.est(value, var), self.est(c.mean, c.var_mean), (w_control - 1.0) * c.var_mean, self.total)

    def sample_ratio(self) -> dict[str, Any]:
        weights = {a.arm_id: a.weight for a in self.dist.arms if a.weight > 0}
        expected = {a: self.total * w for a, w in weights.items()}
        chi2, df = _chi2({a: self.members[a] for a in weights}, expected)
        return {"chi2": chi2, "df": df, "p_value": chi2_sf(chi2, df) if df > 0 else None,
                "members": {a: self.members[a] for a in weights}, "expected": expected}


def _chi2(observed: Mapping[str, float], expected: Mapping[str, float]) -> tuple[float, int]:
    """Pearson's statistic and its degrees of freedom; cells expecting fewer than :data:`MIN_EXPECTED` members
    are merged into one (the chi-square approximation fails on smaller cells)."""
    cells = sorted(((observed[a], e) for a, e in expected.items() if e >= MIN_EXPECTED), key=lambda c: c[1])
    small = [(observed[a], e) for a, e in expected.items() if e < MIN_EXPECTED]
    merged = (sum(o for o, _ in small), sum(e for _, e in small))
    if merged[1] >= MIN_EXPECTED:
        cells.append(merged)
    elif small and cells:  # still too small: it joins the smallest cell
        cells[0] = (cells[0][0] + merged[0], cells[0][1] + merged[1])
    if len(cells) < 2:
        return 0.0, 0
    return sum((o - e) ** 2 / e for o, e in cells if e > 0), len(cells) - 1


def combine(lifts: Sequence[_Lift], confidence: float) -> _Lift:
    """Stratified combination: windows weighted by their members (see the module docstring)."""
    total = sum(lf.members for lf in lifts)
    omega = [lf.members / total for lf in lifts]
    diff = sum(o * lf.diff.value for o, lf in zip(omega, lifts, strict=True))
    base = sum(o * lf.control.value for o, lf in zip(omega, lifts, strict=True))
    var_diff = sum(o * o * lf.diff.se**2 for o, lf in zip(omega, lifts, strict=True))
    var_base = sum(o * o * lf.control.se**2 for o, lf in zip(omega, lifts, strict=True))
    cov = sum(o * o * lf.cov for o, lf in zip(omega, lifts, strict=True))
    return _Lift(Estimate(diff, math.sqrt(var_diff), confidence), Estimate(base, math.sqrt(var_base), confidence), cov,
                 total)


def impact_report(
    spec: ExperimentSpec, activations: Sequence[Activation], stats: Iterable[ObservationStat], *,
    confidence: float = DEFAULT_CONFIDENCE, srm_alpha: float = SRM_ALPHA,
) -> dict[str, Any]:
    """The report as a JSON-ready document (see the module docstring for every number in it).

    Args:
        spec: the experiment.
        activations: the versions in activation order.
        stats: stored statistics (``online`` rows are used).
        confidence: of every interval.
        srm_alpha: the sample-ratio p-value below which the assignment is flagged.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence!r}")
    rates = {m.name for m in spec.metrics if m.kind == "rate"}
    member_metric = spec.objectives[0].metric
    by_version: dict[int, dict[tuple[str, str], Moments]] = {}
    members: dict[int, dict[str, float]] = {}
    for s in stats:
        if s.source != "online" or s.count <= 0:
            continue
        if s.metric == member_metric:
            members.setdefault(s.version, {})[s.arm_id] = s.count
        if s.count >= 2 or s.metric in rates:  # one outcome of a mean metric says nothing of its spread
            moments = Moments.from_sums(s.count, s.sum, s.sum_sq, rate=s.metric in rates)
            by_version.setdefault(s.version, {})[(s.arm_id, s.metric)] = moments
    windows = [_Window(spec, act, by_version.get(act.distribution.version, {}),
                       members.get(act.distribution.version, {}), confidence) for act in activations]
    metrics = spec.metric_names
    window_docs, mix_lifts, arm_lifts = [], {m: [] for m in metrics}, {}
    gains = {m: {"value": 0.0, "var": 0.0, "by_window": []} for m in metrics}
    for w in windows:
        doc = {"version": w.dist.version, "activated_at": w.act.activated_at, "members": w.total,
               "weights": {a.arm_id: a.weight for a in w.dist.arms}, "sample_ratio": w.sample_ratio(),
               "mix": {}, "arms": {}}
        for m in metrics:
            mix = w.mix_lift(m)
            if mix is not None:
                mix_lifts[m].append(mix)
                doc["mix"][m] = mix.to_dict()
                gain = gains[m]
                gain["value"] += w.total * mix.diff.value
                gain["var"] += (w.total * mix.diff.se) ** 2
                est = Estimate(gain["value"], math.sqrt(gain["var"]), confidence)
                gain["by_window"].append({"version": w.dist.version, **est.to_dict()})
            for a in w.dist.arms:
                lift = None if a.arm_id == w.control_id else w.arm_lift(a.arm_id, m)
                if lift is not None:
                    arm_lifts.setdefault(a.arm_id, {}).setdefault(m, []).append(lift)
                    doc["arms"].setdefault(a.arm_id, {})[m] = lift.to_dict()
        window_docs.append(doc)
    combined_mix = {m: combine(v, confidence) for m, v in mix_lifts.items() if v}
    combined_arms = {a: {m: combine(v, confidence) for m, v in by_m.items()} for a, by_m in arm_lifts.items()}
    arm_values = {a.arm_id: dict(a.values) for w in windows for a in w.dist.arms}
    return {
        "experiment": spec.name,
        "confidence": confidence,
        "windows": window_docs,
        "combined": {
            "mix": {m: lf.to_dict() for m, lf in combined_mix.items()},
            "arms": {a: {"values": arm_values[a], "windows": max(len(v) for v in arm_lifts[a].values()),
                         "metrics": {m: lf.to_dict() for m, lf in by_m.items()},
                         "guardrails": _guardrail_status(spec, by_m)}
                     for a, by_m in combined_arms.items()},
        },
        "guardrails": _guardrail_status(spec, combined_mix),
        "cumulative_gain": {m: {**Estimate(g["value"], math.sqrt(g["var"]), confidence).to_dict(),
                                "by_window": g["by_window"]} for m, g in gains.items() if g["by_window"]},
        "sample_ratio": _sample_ratio(window_docs, srm_alpha),
    }


def _guardrail_status(spec: ExperimentSpec, lifts: Mapping[str, _Lift]) -> list[dict[str, Any]]:
    """Each guardrail against its limit: ``ok`` (the interval clears it), ``breached`` (it lies past it) or
    ``uncertain``, with the distance of the estimate from the limit (positive: on the safe side)."""
    out = []
    for g in spec.guardrails:
        lift = lifts.get(g.metric)
        if lift is None:
            out.append({"metric": g.metric, "limit": g.bound, "relative": g.relative, "status": "no data"})
            continue
        est = relative(lift.diff, lift.control, lift.cov) if g.relative else Estimate(
            lift.control.value + lift.diff.value, lift.diff.se, lift.diff.confidence)
        out.append({"metric": g.metric, "limit": g.bound, "relative": g.relative, "estimate": est.to_dict(),
                    "margin": _margin(g, est.value), "status": _status(g, est)})
    return out


def _margin(g: Guardrail, value: float) -> float:
    return value - g.bound if g.is_lower else g.bound - value


def _status(g: Guardrail, est: Estimate) -> str:
    safe_low, safe_high = (est.lower, est.upper) if g.is_lower else (-est.upper, -est.lower)
    limit = g.bound if g.is_lower else -g.bound
    if safe_low >= limit:
        return "ok"
    return "breached" if safe_high < limit else "uncertain"


def _sample_ratio(window_docs: list[dict[str, Any]], alpha: float) -> dict[str, Any]:
    """Per window, and over the whole run: each arm's members summed over windows against ``sum_w N_w p_aw``
    (a lasting skew, such as an arm losing a share of its events, shows in the totals long before any window)."""
    tested = [d for d in window_docs if d["sample_ratio"]["p_value"] is not None]
    observed: dict[str, float] = {}
    expected: dict[str, float] = {}
    for d in tested:
        for arm, n in d["sample_ratio"]["members"].items():
            observed[arm] = observed.get(arm, 0.0) + n
            expected[arm] = expected.get(arm, 0.0) + d["sample_ratio"]["expected"][arm]
    chi2, df = _chi2(observed, expected)
    p_value = chi2_sf(chi2, df) if df > 0 else None
    flagged = [d["version"] for d in tested if d["sample_ratio"]["p_value"] < alpha]
    return {"chi2": chi2, "df": df, "p_value": p_value, "alpha": alpha, "flagged_versions": flagged,
            "members": observed, "expected": expected,
            "ok": (p_value is None or p_value >= alpha) and not flagged}


def pooled_mix_lift(stats: Iterable[ObservationStat], metric: str, *, control_arm_id: str = "control",
                    confidence: float = DEFAULT_CONFIDENCE) -> Estimate:
    """The naive lift from raw totals pooled over windows (everyone's mean minus control's): biased whenever
    weights change while baselines swing. Kept only to show why :func:`impact_report` never does this."""
    n = s = n_c = s_c = v = v_c = 0.0
    for st in stats:
        if st.source != "online" or st.metric != metric:
            continue
        n, s, v = n + st.count, s + st.sum, v + st.sum_sq
        if st.arm_id == control_arm_id:
            n_c, s_c, v_c = n_c + st.count, s_c + st.sum, v_c + st.sum_sq
    everyone, control = Moments.from_sums(n, s, v), Moments.from_sums(n_c, s_c, v_c)
    return Estimate(everyone.mean - control.mean, math.sqrt(everyone.var_mean + control.var_mean), confidence)
