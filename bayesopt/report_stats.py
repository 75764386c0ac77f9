"""Small statistics for the impact report, in the standard library only (serving computes reports, and a serving
replica loads neither numpy nor scipy): normal intervals, differences of means, a chi-square tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

#: Series terms / continued-fraction steps of the incomplete gamma function; both converge in far fewer for the
#: chi-square statistics of a few hundred arms.
GAMMA_ITERATIONS = 500
GAMMA_EPS = 1e-14


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error and a two-sided interval at ``confidence``."""

    value: float
    se: float
    confidence: float

    @property
    def half_width(self) -> float:
        return z_value(self.confidence) * self.se

    @property
    def lower(self) -> float:
        return self.value - self.half_width

    @property
    def upper(self) -> float:
        return self.value + self.half_width

    def covers(self, truth: float) -> bool:
        return self.lower <= truth <= self.upper

    def to_dict(self) -> dict[str, float | None]:
        return {"value": _json(self.value), "se": _json(self.se), "lower": _json(self.lower), "upper": _json(self.upper)}


def _json(x: float) -> float | None:
    return x if math.isfinite(x) else None


def z_value(confidence: float) -> float:
    """The two-sided normal quantile: 1.96 at 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


@dataclass(frozen=True)
class Moments:
    """A sample mean and its variance (the squared standard error), from count, sum and sum of squares."""

    count: float
    mean: float
    var_mean: float

    @classmethod
    def from_sums(cls, count: float, total: float, total_sq: float, *, rate: bool = False) -> Moments:
        """A rate's variance is at least that of a binomial with the mean shrunk by half an outcome each way, so
        0 of 3 is not "exactly 0" (``p (1 - p)`` at ``p = (sum + 1/2) / (count + 1)``); other metrics need two
        outcomes (the caller leaves single outcomes out)."""
        mean = total / count
        var = (total_sq - total * mean) / (count - 1) if count > 1 else 0.0
        if rate:
            shrunk = (total + 0.5) / (count + 1.0)
            var = max(var, shrunk * (1.0 - shrunk))
        return cls(count, mean, max(var, 0.0) / count)


def relative(diff: Estimate, base: Estimate, cov: float = 0.0) -> Estimate:
    """``diff / base`` by the delta method, with ``cov = Cov(diff, base)``."""
    if base.value == 0:
        return Estimate(math.nan, math.nan, diff.confidence)
    r = diff.value / base.value
    var = (diff.se**2 - 2 * r * cov + r * r * base.se**2) / base.value**2
    return Estimate(r, math.sqrt(max(var, 0.0)), diff.confidence)


def chi2_sf(x: float, df: int) -> float:
    """``P(X >= x)`` for a chi-square variable with ``df`` degrees of freedom (regularised upper gamma)."""
    if df <= 0:
        return math.nan
    if x <= 0:
        return 1.0
    return _gamma_q(df / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """``Q(a, x)``: a series below ``x = a + 1``, Lentz's continued fraction above."""
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        for n in range(1, GAMMA_ITERATIONS):
            term *= x / (a + n)
            total += term
            if abs(term) < abs(total) * GAMMA_EPS:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, GAMMA_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1.0) < GAMMA_EPS:
            break
    return min(1.0, math.exp(log_prefix) * h)
