"""Screening: drop candidates that can hardly ever win a constrained-TS draw, with a proven bound.

For one objective under constrained TS, pick a reference candidate ``j*`` and a level ``q``. In every draw where
``j*`` meets every guardrail and its objective is at least ``q``, the winner's objective is at least ``q``, so a
candidate ``i`` can only win if its own objective reaches ``q``. By the union bound, the probability that *any*
dropped candidate wins is at most

    P(j* infeasible) + P(f_{j*} < q) + sum_{i dropped} P(f_i >= q),

each term from exact Gaussian posterior marginals (``P(j* infeasible) <= sum_g P(slack_g < 0)``). We search a few
references (control and the best lower bounds) and levels, drop the candidates with the smallest ``P(f_i >= q)``
while the bound stays under :data:`SCREEN_TV`, and keep the choice that drops most. The distribution of winners
then differs from the unscreened one by at most ``SCREEN_TV`` in total variation, for any number of draws.
Control (candidate 0) is always kept: draws are compared with it. Several objectives or utility TS: nothing is
dropped. Glossary: ``N`` candidates, ``m`` metrics, ``R`` references, ``L`` levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.special import ndtr

from bayesopt.selection import Problem

#: Bound on the total variation between screened and unscreened winner distributions.
SCREEN_TV = 1e-3
#: Reference candidates tried besides control.
REFERENCES = 16
#: Levels tried per reference: ``q = mean - z sd`` for these ``z``.
LEVEL_Z = torch.linspace(1.0, 8.0, 29)


def diff_marginals(
    marginals: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and sds of ``diff = delta(x) - delta(control)``, each ``N x m``, from per-metric marginals."""
    means, sds = [], []
    for mean, var, cov0 in marginals:
        means.append(mean - mean[0])
        sds.append((var + var[0] - 2.0 * cov0).clamp_min(0.0).sqrt())
    return torch.stack(means, dim=-1), torch.stack(sds, dim=-1)


def _upper_tail(mean: torch.Tensor, sd: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """``P(f >= level)`` for Gaussian ``f`` (point masses where ``sd == 0``); broadcasts."""
    z = (mean - level) / sd.clamp_min(torch.finfo(mean.dtype).tiny)
    return torch.where(sd > 0, ndtr(z), (mean >= level).to(mean.dtype))


def screen(problem: Problem, marginals: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Indices (sorted, starting with 0) of the candidates to sample; all of them when screening does not apply.

    Args:
        problem: the objectives and guardrails.
        marginals: per metric (in the problem's order), exact ``N`` means, variances and covariances with control.
    """
    mean, sd = diff_marginals(marginals)  # N x m
    N = mean.shape[0]
    everything = torch.arange(N, device=mean.device)
    if problem.method != "constrained_ts" or len(problem.objective_index) != 1:
        return everything
    g = problem.guard_index
    slack = problem.guard_sign * (mean[:, g] - problem.guard_threshold)  # N x G
    p_infeasible = _upper_tail(-slack, sd[:, g], torch.zeros((), dtype=mean.dtype, device=mean.device)).sum(-1)
    k = problem.objective_index[0]
    obj, obj_sd = problem.objective_sign[0] * mean[:, k], sd[:, k]  # N
    eligible = p_infeasible < SCREEN_TV
    if not eligible.any():
        return everything
    score = (obj - 3.0 * obj_sd).masked_fill(~eligible, float("-inf"))
    refs = torch.unique(torch.cat([torch.zeros(1, dtype=torch.long, device=obj.device)[eligible[:1]],
                                   torch.topk(score, min(REFERENCES, N)).indices[: int(eligible.sum())]]))
    levels = obj[refs, None] - LEVEL_Z.to(obj)[None, :] * obj_sd[refs, None]  # R x L
    budget = SCREEN_TV - p_infeasible[refs, None] - (1.0 - _upper_tail(obj[refs, None], obj_sd[refs, None], levels))
    tails = _upper_tail(obj[None, None, :], obj_sd[None, None, :], levels[..., None])  # R x L x N
    tails[..., 0] = float("inf")  # control is never dropped
    ordered, order = torch.sort(tails, dim=-1)
    dropped = (torch.cumsum(ordered, dim=-1) <= budget[..., None]).sum(-1)  # R x L
    dropped = dropped.masked_fill(budget <= 0, 0)
    best = int(torch.argmax(dropped))
    count = int(dropped.flatten()[best])
    if count == 0:
        return everything
    r, level = divmod(best, dropped.shape[1])
    keep = torch.ones(N, dtype=torch.bool, device=obj.device)
    keep[order[r, level, :count]] = False
    return torch.nonzero(keep).squeeze(-1)
