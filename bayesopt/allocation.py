"""From Thompson-sampling frequencies to serving weights: arm cap by merging, control share, risk budget.

Glossary: ``N`` candidates (control at 0), ``k`` kept arms (control first), ``d`` parameters.

Steps, in order:

0. **Exploit safely, explore within the budget.** Thompson sampling gives two winner frequencies: over the
   explore set (``explore``: control and the candidates whose own risk is at most :data:`EXPLORE_MAX_RISK`) and
   over the safe set only (``exploit``: control and the candidates whose own risk is at most
   :data:`CERTIFIED_BUDGET_SHARE` of ``policy.max_unsafe_share``, see :mod:`bayesopt.thompson`). The
   arms' frequencies are the mixture ``(1 - rho) exploit + rho explore`` with the largest ``rho`` in [0, 1]
   whose expected unsafe share fits the budget and whose traffic on uncertified arms fits the
   concentration cap (step 4). So the traffic the budget cannot spend on uncertain arms goes to the safe arm
   that each posterior draw ranks best, not to whichever safe arm happened to win a few unrestricted draws;
   and once the best arms are certified, both frequencies agree and ``rho`` no longer matters.
1. **Merge under the arm cap.** Winners are taken greedily by frequency; each kept arm absorbs the frequency of
   every not-yet-kept winner within :data:`MERGE_STEPS` lattice steps of it (Chebyshev distance) that is on the
   same side of certification (step 4), until ``policy.max_arms - 1`` arms are kept. Certified and uncertified
   arms are never merged: an uncertified winner just past the safe set's edge is what expands it, and folding
   its traffic into the certified arm next to it would leave the edge unexplored for good. Winners left over (far from every kept arm) are the mass the served
   distribution cannot represent: it is reported, and only then spread over the kept arms in proportion.
2. **Control share.** Non-control arms get ``(1 - control_share)`` times their frequency; control gets the rest,
   so it never falls below ``traffic.control_share``.
3. **Risk budget.** The posterior expected share of traffic on guardrail-breaking arms,
   ``sum_a w_a (1 - p_feasible(a))``, may not exceed ``policy.max_unsafe_share``. When it does, the exploring
   weights are tilted, ``w_a exp(-lam * risk_a)`` with the smallest ``lam`` that meets the budget: of all
   distributions over the same arms that meet it, this is the closest to Thompson sampling's in KL divergence,
   so traffic leaves the arms that cost most risk for the probability of being best they carry, and stays
   with the ones that cost least. Only when even the safest kept arm costs too much does the rest go to
   control (never capped: it is what every member would get without the experiment).
4. **Concentration cap.** The budget bounds the mean; one arm with a 14% risk carrying 36% of traffic meets it
   and still puts 36% of an hour's members on a broken arm one hour in seven. Arms that are not *certified*
   (own risk above :data:`CERTIFIED_BUDGET_SHARE` of ``max_unsafe_share``, 0.5% by default, or further than
   :data:`CERTIFY_STEPS` lattice steps from every arm with data) may hold at most
   :data:`WORST_HOUR_FACTOR` times the budget together, so whatever breaks among them costs at most that, and
   an hour above it needs a certified arm to break; their excess goes to the certified arms (in proportion),
   else to control. This only lowers the expected unsafe share. It bounds the worst hour only as well as
   ``p_feasible`` is calibrated where the traffic sits, on a guardrail's boundary (the study's reliability
   tables and worst hours, docs/closed_loop.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayesopt.lattice import within_steps
from bayesopt.spec import ExperimentSpec

#: Winners within this many lattice steps (on every axis) of a kept arm are served as that arm.
MERGE_STEPS = 2
#: Bisection steps for the tilt ``lam``; the budget is met to within ``2**-60`` of its range.
TILT_ITERATIONS = 60
#: Largest tilt tried, in units of ``1 / (max risk - min risk)``: ``exp(-50)`` is zero for serving purposes.
MAX_TILT = 50.0
#: Uncertified arms share at most this many budgets of traffic: the worst hour's
#: traffic on broken arms stays within it whichever of them break.
WORST_HOUR_FACTOR = 2.0
#: Certified arms (the safe set of step 0, the arms outside the concentration cap) have an own risk of at most
#: this share of ``max_unsafe_share`` (0.5% under a 5% budget). A certified arm may carry most of an hour, so
#: the worst hour rests on its risk, not on the budget: at half the budget (2.5%), one to three runs of every
#: study variant put 35-80% of an hour on a certified arm that broke a guardrail, most of them on the boundary
#: with plenty of own data and calibrated as such; at a tenth, no hour of the 2-, 4- and 6-weight studies went
#: above the concentration cap's two budgets, for about a tenth more regret (docs/closed_loop.md).
CERTIFIED_BUDGET_SHARE = 0.1
#: A certified arm also lies within this many lattice steps (on every axis) of an arm with data. Further away a
#: ``p_feasible`` rests on the GP's prior and lengthscales alone: right after the drift test cut the history at a
#: release, arms far from the few arms left and breaking applies by 6-17% were certified at 0.996-0.997 and took 65-67% of an hour (docs/closed_loop.md). An arm served anywhere makes its neighbourhood
#: certifiable, so the certified set grows with the data, as the safe set of SafeOpt grows from observed points.
CERTIFY_STEPS = 2
#: The explore set's limit on a candidate's own risk, ``1 / WORST_HOUR_FACTOR``: the uncertified traffic the
#: concentration cap allows (``WORST_HOUR_FACTOR`` budgets) then costs at most one budget in expectation, so
#: exploring is limited by the cap rather than spent on arms more likely broken than not. An arm the
#: constrained optimum's neighbourhood needs (on a guardrail's boundary, ``p_feasible`` about 0.5) stays in it.
EXPLORE_MAX_RISK = 1.0 / WORST_HOUR_FACTOR


@dataclass(frozen=True)
class Allocation:
    """Serving weights over a subset of the candidates, and how they were reached.

    Attributes:
        index: ``k`` candidate positions (0 = control, always first).
        weights: ``k`` weights summing to one.
        merged_mass: TS frequency of winners served as a nearby kept arm.
        unrepresented_mass: TS frequency of winners too far from every kept arm (spread over the kept arms).
        risk_before: expected unsafe share before the risk budget.
        risk_after: expected unsafe share served, ``sum_a weights_a (1 - p_feasible_a)``.
        tilt: the ``lam`` of the tilt (0 when the budget did not bind).
        moved_to_control: traffic the budget moved to control because no kept arm was safe enough.
        risky_share: traffic on uncertified arms (at most ``WORST_HOUR_FACTOR`` budgets).
        explore_mix: ``rho`` of step 0, the share of the exploring traffic that follows unrestricted TS.
    """

    index: np.ndarray
    weights: np.ndarray
    merged_mass: float
    unrepresented_mass: float
    risk_before: float
    risk_after: float
    tilt: float
    moved_to_control: float
    risky_share: float = 0.0
    explore_mix: float = 1.0


def certified_risk(budget: float) -> float:
    """The largest own risk of a certified arm under ``max_unsafe_share = budget``."""
    return CERTIFIED_BUDGET_SHARE * budget


def safe_set_risk(spec: ExperimentSpec) -> float | None:
    """The safe set's limit on a candidate's own risk (None without guardrails: everything is safe)."""
    return certified_risk(spec.policy.max_unsafe_share) if spec.guardrails else None


def certifiable(grid: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Which candidates (lattice ``grid``, ``N x d``, control first) lie within :data:`CERTIFY_STEPS` of an arm
    with data (``observed``, ``n x d`` lattice indices): ``N`` bools, control always True."""
    near = within_steps(grid, observed, CERTIFY_STEPS)
    near[0] = True
    return near


def explore_set_risk(spec: ExperimentSpec) -> float | None:
    """The explore set's limit on a candidate's own risk (None without guardrails: everything may be explored)."""
    return EXPLORE_MAX_RISK if spec.guardrails else None


def explore_mix(exploit: np.ndarray, explore: np.ndarray, risk: np.ndarray, *, traffic: float, budget: float,
                certified: np.ndarray | None = None) -> float:
    """The largest ``rho`` in [0, 1] for which ``traffic * ((1 - rho) exploit + rho explore)`` keeps both the
    expected unsafe share within ``budget`` and the traffic on uncertified arms within ``WORST_HOUR_FACTOR * budget``.

    Args:
        exploit: ``N`` frequencies (sum 1) of the safe-set winners.
        explore: ``N`` frequencies (sum 1) of the explore-set winners.
        risk: ``N`` probabilities of breaking a guardrail (0 for control).
        traffic: the share of traffic the arms besides control's floor get, ``1 - control_share``.
        budget: ``max_unsafe_share``.
        certified: ``N`` mask of the certified arms (None: own risk at most :func:`certified_risk`).
    """
    rho = 1.0
    risky = (~certified if certified is not None else risk > certified_risk(budget)).astype(float)
    for cost, limit in ((risk, budget), (risky, WORST_HOUR_FACTOR * budget)):
        base, full = traffic * float(exploit @ cost), traffic * float(explore @ cost)
        if full > limit and full > base:
            rho = min(rho, max(0.0, (limit - base) / (full - base)))
    return rho


def merge_winners(wins: np.ndarray, grid: np.ndarray, max_arms: int, *, steps: int = MERGE_STEPS,
                  classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Keep at most ``max_arms - 1`` winners plus control, each absorbing the winners near it.

    Args:
        wins: ``N`` win counts or frequencies (control at 0).
        grid: ``N x d`` lattice indices of the candidates (control's row is never merged into).
        max_arms: the cap, control included.
        steps: merge radius in lattice steps.
        classes: ``N`` labels; a winner is only merged into a kept arm of its own label (None: one label).

    Returns:
        Kept positions ``k`` (control first), their merged counts ``k``, the merged and the unrepresented share.
    """
    total = max(float(wins.sum()), 1.0)
    order = [int(i) for i in np.argsort(-wins, kind="stable") if i != 0 and wins[i] > 0]
    left = np.zeros(len(wins), dtype=bool)
    left[order] = True
    kept, counts, merged = [0], [float(wins[0])], 0.0
    for i in order:
        if len(kept) >= max_arms or not left[i]:
            continue
        near = left & within_steps(grid, grid[i : i + 1], steps)  # N, includes i itself
        if classes is not None:
            near &= classes == classes[i]
        near[0] = False
        kept.append(i)
        counts.append(float(wins[near].sum()))
        merged += float(wins[near].sum() - wins[i])
        left &= ~near
    unrepresented = float(wins[left].sum())
    return np.array(kept, dtype=np.int64), np.array(counts), merged / total, unrepresented / total


def split_traffic(counts: np.ndarray, control_share: float) -> np.ndarray:
    """Weights ``k`` of the kept arms from their counts: control gets ``control_share`` plus its share of the rest."""
    freq = counts.astype(float).copy()
    if freq.sum() == 0:
        freq[0] = 1.0
    freq /= freq.sum()
    weights = (1.0 - control_share) * freq
    weights[0] += control_share
    return weights


def risk_budget(weights: np.ndarray, risk: np.ndarray, budget: float) -> tuple[np.ndarray, float, float]:
    """Tilt the non-control weights so that ``sum(weights * risk) <= budget``; control only as a last resort.

    Args:
        weights: ``k`` weights, control first (its risk is taken as zero).
        risk: ``k`` probabilities of breaking a guardrail, ``1 - p_feasible``.
        budget: the largest expected unsafe share allowed.

    Returns:
        New weights ``k``, the tilt ``lam`` and the weight moved to control.
    """
    r = np.clip(np.asarray(risk, dtype=float), 0.0, 1.0).copy()
    r[0] = 0.0
    w = np.asarray(weights, dtype=float)
    explore = float(w[1:].sum())
    if float(w @ r) <= budget or explore <= 0:
        return w.copy(), 0.0, 0.0
    base, rr = w[1:] / explore, r[1:]

    def tilted(lam: float) -> np.ndarray:
        logits = np.log(np.where(base > 0, base, 1.0)) - lam * (rr - rr.min())
        q = np.where(base > 0, np.exp(logits - logits[base > 0].max()), 0.0)
        return q / q.sum()

    spread = float(rr[base > 0].max() - rr[base > 0].min())
    hi = MAX_TILT / spread if spread > 0 else 0.0
    if explore * float(tilted(hi) @ rr) > budget:  # even the safest kept arms cost too much: shrink towards control
        q = tilted(hi)
        explore_allowed = budget / float(q @ rr)
        out = np.concatenate([[w[0] + explore - explore_allowed], explore_allowed * q])
        return out, hi, explore - explore_allowed
    lo = 0.0
    for _ in range(TILT_ITERATIONS):
        mid = 0.5 * (lo + hi)
        if explore * float(tilted(mid) @ rr) > budget:
            lo = mid
        else:
            hi = mid
    return np.concatenate([[w[0]], explore * tilted(hi)]), hi, 0.0


def concentration_cap(weights: np.ndarray, risk: np.ndarray, budget: float,
                      certified: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Cap the total weight of uncertified arms (own risk above :func:`certified_risk`) at ``WORST_HOUR_FACTOR * budget``.

    Args:
        weights: ``k`` weights, control first (never capped).
        risk: ``k`` probabilities of breaking a guardrail.
        budget: ``max_unsafe_share``.
        certified: ``k`` mask of the certified arms (None: own risk at most :func:`certified_risk`).

    Returns:
        New weights ``k`` and the weight moved to control (when no certified arm could take it).
    """
    w = np.asarray(weights, dtype=float).copy()
    risky = ~np.asarray(certified, dtype=bool) if certified is not None else np.asarray(risk, dtype=float) > certified_risk(budget)
    risky[0] = False
    cap = WORST_HOUR_FACTOR * budget
    total = float(w[risky].sum())
    if total <= cap:
        return w, 0.0
    excess = total - cap
    w[risky] *= cap / total
    safe = ~risky
    safe[0] = False
    if w[safe].sum() > 0:
        w[safe] += excess * w[safe] / w[safe].sum()
        return w, 0.0
    w[0] += excess
    return w, excess


def allocate(spec: ExperimentSpec, wins: np.ndarray, grid: np.ndarray, p_feasible: np.ndarray,
             safe_wins: np.ndarray | None = None, certifiable: np.ndarray | None = None) -> Allocation:
    """Serving weights from TS ``wins`` (over the explore set) and ``safe_wins`` (``N`` each, control at 0; None:
    no safe set), lattice ``grid`` (``N x d``), ``p_feasible`` (``N``) and ``certifiable`` (``N`` mask of the
    candidates near enough to data to be certified, :func:`certifiable`; None: all)."""
    policy = spec.policy
    all_risk = 1.0 - np.asarray(p_feasible, dtype=float)
    all_risk[0] = 0.0
    rho = 1.0
    freq = np.asarray(wins, dtype=float) / max(float(np.sum(wins)), 1.0)
    certified = all_risk <= certified_risk(policy.max_unsafe_share)
    if certifiable is not None:
        certified &= np.asarray(certifiable, dtype=bool)
    certified[0] = True
    if safe_wins is not None and spec.guardrails:
        exploit = np.asarray(safe_wins, dtype=float) / max(float(np.sum(safe_wins)), 1.0)
        rho = explore_mix(exploit, freq, all_risk, traffic=1.0 - spec.traffic.control_share,
                          budget=policy.max_unsafe_share, certified=certified)
        freq = (1.0 - rho) * exploit + rho * freq
    index, counts, merged, unrepresented = merge_winners(freq, grid, policy.max_arms,
                                                         classes=certified if spec.guardrails else None)
    weights = split_traffic(counts, spec.traffic.control_share)
    risk = all_risk[index]
    before = float(weights @ risk)
    if spec.guardrails:
        weights, tilt, to_control = risk_budget(weights, risk, policy.max_unsafe_share)
        weights, capped_to_control = concentration_cap(weights, risk, policy.max_unsafe_share, certified[index])
        to_control += capped_to_control
    else:
        tilt, to_control = 0.0, 0.0
    keep = (weights > 0) | (np.arange(len(index)) == 0)
    risky = float(weights[1:][~certified[index][1:]].sum())
    return Allocation(index[keep], weights[keep], merged, unrepresented, before, float(weights @ risk), tilt, to_control,
                      risky, rho)
