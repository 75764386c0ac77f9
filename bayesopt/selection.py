"""Per-draw selection rules: which candidate each joint posterior draw picks.

Every rule reads a block of draws ``c x N x m`` of the metrics' differences from control (candidate 0 is the
control arm itself) and returns each draw's winning candidate. Glossary: ``c`` draws in the block, ``N``
candidates, ``m`` modelled metrics, ``J`` objectives, ``G`` guardrails.

Guardrails are turned into thresholds on ``diff = delta(x) - delta(control)`` of the same draw:
a relative limit ``r`` becomes ``r * |baseline|`` (the draw's control level is the baseline), an absolute limit
``b`` becomes ``b - baseline``. Slacks are divided by the metric's scale (the standard deviation of its pooled
deltas) so violations of different metrics add up in comparable units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: ParEGO's augmentation weight: breaks ties of the Chebyshev max so winners are Pareto optimal, not weakly so.
CHEBYSHEV_RHO = 0.05
#: Utility TS (LinkedIn-style): reward for each met guardrail, in units of one objective range of the draw.
UTILITY_LAMBDA = 1.0
#: Utility TS: width of the sigmoid around each guardrail's limit, in units of the metric's scale.
UTILITY_EPS = 0.1
#: A relative guardrail's baseline is clamped away from zero by this much (a rate of exactly zero has no
#: relative change).
MIN_BASELINE = 1e-12


@dataclass(frozen=True)
class Problem:
    """Objectives and guardrails as index and coefficient tensors over the ``m`` modelled metrics.

    Attributes:
        objective_index: ``J`` metric positions of the objectives.
        objective_sign: ``J`` +1 to maximise, -1 to minimise.
        guard_index: ``G`` metric positions of the guardrails.
        guard_sign: ``G`` +1 for a floor, -1 for a ceiling.
        guard_threshold: ``G`` limits on ``diff`` (see module docstring).
        scale: ``m`` positive scales of the metrics' deltas.
        method: ``constrained_ts`` or ``utility_ts``.
    """

    objective_index: torch.Tensor
    objective_sign: torch.Tensor
    guard_index: torch.Tensor
    guard_sign: torch.Tensor
    guard_threshold: torch.Tensor
    scale: torch.Tensor
    method: str = "constrained_ts"


def guard_threshold(bound: float, *, relative: bool, baseline: float) -> float:
    """The limit on ``diff`` equivalent to a guardrail's limit on the metric's level or relative change."""
    if relative:
        return bound * max(abs(baseline), MIN_BASELINE)
    return bound - baseline


def slacks(diff: torch.Tensor, problem: Problem) -> torch.Tensor:
    """Scaled guardrail slacks ``c x N x G`` (>= 0 where met) of draws ``diff`` (``c x N x m``)."""
    g = diff[..., problem.guard_index] - problem.guard_threshold
    return problem.guard_sign * g / problem.scale[problem.guard_index]


def objective_score(diff: torch.Tensor, problem: Problem) -> torch.Tensor:
    """Each draw's score of each candidate, ``c x N``, larger is better.

    One objective: its value, min-max normalised per draw to [0, 1]. Several: the augmented Chebyshev
    scalarisation with weights drawn per draw from the flat Dirichlet, on objectives min-max normalised per draw,
    so that over many draws the winners spread along the Pareto frontier.
    """
    obj = diff[..., problem.objective_index] * problem.objective_sign  # c x N x J
    lo = obj.amin(dim=1, keepdim=True)
    hi = obj.amax(dim=1, keepdim=True)
    z = (obj - lo) / (hi - lo).clamp_min(torch.finfo(obj.dtype).tiny)  # c x N x J in [0, 1]
    J = obj.shape[-1]
    if J == 1:
        return z[..., 0]
    alpha = torch.ones(J, dtype=obj.dtype, device=obj.device)
    weights = torch.distributions.Dirichlet(alpha).sample((obj.shape[0],)).unsqueeze(1)  # c x 1 x J
    gap = weights * (1.0 - z)
    return -(gap.amax(dim=-1) + CHEBYSHEV_RHO * gap.sum(dim=-1))


def constrained_winners(score: torch.Tensor, feasible: torch.Tensor, violation: torch.Tensor,
                        eligible: torch.Tensor | None = None) -> torch.Tensor:
    """Constrained TS: the best feasible candidate per draw, or the least violating one when none is feasible.

    Args:
        score: ``c x N`` objective scores.
        feasible: ``c x N`` whether each candidate meets every guardrail in the draw.
        violation: ``c x N`` total scaled shortfall (0 where feasible).
        eligible: ``N`` mask of the candidates the winner may be (None: all); it must hold control.

    Returns:
        ``c`` winners among the eligible candidates.
    """
    ok = feasible if eligible is None else feasible & eligible
    bad = violation if eligible is None else violation.masked_fill(~eligible, float("inf"))
    best = score.masked_fill(~ok, float("-inf")).argmax(dim=-1)
    return torch.where(ok.any(dim=-1), best, bad.argmin(dim=-1))


def utility_winners(score: torch.Tensor, slack: torch.Tensor, eligible: torch.Tensor | None = None) -> torch.Tensor:
    """Utility TS: maximise ``score + lambda * sum_i sigmoid(slack_i / eps)`` (``slack``: ``c x N x G``); returns
    the ``c`` winners among ``eligible`` (None: all)."""
    utility = score + UTILITY_LAMBDA * torch.sigmoid(slack / UTILITY_EPS).sum(dim=-1)
    if eligible is not None:
        utility = utility.masked_fill(~eligible, float("-inf"))
    return utility.argmax(dim=-1)


@dataclass(frozen=True)
class Selection:
    """One block's choices: ``winners`` (``c``) over every candidate, ``safe_winners`` and ``explore_winners``
    (``c`` each) over the safe and the explorable candidates only, and the ``c x N`` feasibility mask."""

    winners: torch.Tensor
    safe_winners: torch.Tensor
    explore_winners: torch.Tensor
    feasible: torch.Tensor


def select(draws: torch.Tensor, problem: Problem, eligible: torch.Tensor | None = None,
           explorable: torch.Tensor | None = None) -> Selection:
    """Winners of a block of draws (``c x N x m``, deltas from control), over all candidates, over ``eligible``
    and over ``explorable`` (``N`` masks, control included; None: the same as all)."""
    diff = draws - draws[:, :1, :]  # candidate 0 is control: compare within the same draw
    slack = slacks(diff, problem)
    score = objective_score(diff, problem)
    feasible = (slack >= 0).all(dim=-1)  # c x N
    violation = (-slack).clamp_min(0).sum(dim=-1)

    def winners(mask: torch.Tensor | None) -> torch.Tensor:
        if problem.method == "utility_ts":
            return utility_winners(score, slack, mask)
        return constrained_winners(score, feasible, violation, mask)

    everyone = winners(None)
    masks = [None if m is None or bool(m.all()) else m for m in (eligible, explorable)]
    safe, explore = (everyone if m is None else winners(m) for m in masks)
    return Selection(everyone, safe, explore, feasible)
