"""From Thompson-sampling frequencies to serving weights: arm cap, control share, safety cap. Light: numpy.

Steps, in order:

1. **Cap.** Keep the ``policy.max_arms - 1`` most frequent non-control winners (ties broken by arm id, so the
   result is deterministic) and renormalise the kept frequencies, control's own wins included.
2. **Control share.** Non-control arms get ``(1 - control_share)`` times their frequency; control gets the rest,
   so it never falls below ``traffic.control_share``.
3. **Safety cap.** Arms whose probability of meeting every guardrail is below ``policy.feasibility_threshold``
   may hold at most ``policy.max_unsafe_share`` of all traffic together. The excess moves to the *safe*
   non-control arms in proportion to their weights (keeping the experiment's exploration budget where the model
   expects no harm); when no safe arm is left it moves to control. Control itself is never capped: it is what
   every member would get without the experiment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayesopt.spec import ExperimentSpec


@dataclass(frozen=True)
class Allocation:
    """Serving weights over a subset of the candidates.

    Attributes:
        index: ``k`` candidate positions (0 = control, always first).
        weights: ``k`` weights summing to one.
        unsafe_share: traffic share of unsafe arms before the safety cap.
        moved_to: where the safety cap moved traffic: ``"none"``, ``"safe_arms"`` or ``"control"``.
        dropped_mass: TS frequency of winners that did not fit under ``max_arms``.
    """

    index: np.ndarray
    weights: np.ndarray
    unsafe_share: float
    moved_to: str
    dropped_mass: float


def cap_arms(wins: np.ndarray, ids: list[str], max_arms: int) -> tuple[np.ndarray, float]:
    """Control plus the ``max_arms - 1`` most frequent winners among candidates ``1..N-1`` with any wins.

    Returns the kept candidate positions (control first) and the share of draws whose winner was dropped.
    """
    winners = [i for i in np.flatnonzero(wins) if i != 0]
    winners.sort(key=lambda i: (-wins[i], ids[i]))
    kept = winners[: max(0, max_arms - 1)]
    dropped = float(sum(wins[i] for i in winners[len(kept):]) / max(wins.sum(), 1))
    return np.array([0, *kept], dtype=np.int64), dropped


def split_traffic(wins: np.ndarray, index: np.ndarray, control_share: float) -> np.ndarray:
    """Weights of the kept arms: control gets ``control_share`` plus its share of the rest."""
    freq = wins[index].astype(float)
    if freq.sum() == 0:
        freq[0] = 1.0
    freq /= freq.sum()
    weights = (1.0 - control_share) * freq
    weights[0] += control_share
    return weights


def safety_cap(weights: np.ndarray, p_feasible: np.ndarray, *, threshold: float, max_unsafe: float) -> tuple[np.ndarray, float, str]:
    """Cap the total weight of unsafe non-control arms at ``max_unsafe``.

    Args:
        weights: ``k`` weights, control first.
        p_feasible: ``k`` probabilities of meeting every guardrail.

    Returns:
        New weights, the unsafe share before the cap, and where the excess went.
    """
    unsafe = p_feasible < threshold
    unsafe[0] = False
    total = float(weights[unsafe].sum())
    if total <= max_unsafe:
        return weights, total, "none"
    out = weights.copy()
    out[unsafe] *= max_unsafe / total
    excess = total - max_unsafe
    safe = ~unsafe
    safe[0] = False
    if out[safe].sum() > 0:
        out[safe] += excess * out[safe] / out[safe].sum()
        return out, total, "safe_arms"
    out[0] += excess
    return out, total, "control"


def allocate(spec: ExperimentSpec, ids: list[str], wins: np.ndarray, p_feasible: np.ndarray) -> Allocation:
    """Serving weights from TS ``wins`` (``N``, control at 0) and ``p_feasible`` (``N``)."""
    policy = spec.policy
    index, dropped = cap_arms(wins, ids, policy.max_arms)
    weights = split_traffic(wins, index, spec.traffic.control_share)
    weights, unsafe, moved = safety_cap(
        weights, p_feasible[index], threshold=policy.feasibility_threshold, max_unsafe=policy.max_unsafe_share
    )
    keep = (weights > 0) | (np.arange(len(index)) == 0)
    return Allocation(index[keep], weights[keep], unsafe, moved, dropped)
