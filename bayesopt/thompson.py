"""Thompson sampling over a candidate set: ``s`` joint posterior draws, each picking one winner.

The result is the winners' frequencies (the serving distribution before capping) and, per candidate, its
probability of meeting every guardrail. That probability is exact: the metrics are modelled independently, so
it is the product over guardrails of ``Phi(slack / sd)`` of the exact posterior marginals of the difference
from control. With risk limits, each draw also picks a winner among the *safe set* (control and the
candidates whose probability of breaking a guardrail is at most the safe limit: what the allocation exploits)
and one among the *explore set* (the same with a looser limit: what it explores with). The unrestricted
winners give ``p_best``. Draws are processed in blocks so memory stays bounded at
any ``s``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.special import ndtr

from bayesopt.device import as_tensor, default_device, to_numpy
from bayesopt.gp_parts import MetricModel, gp_parts
from bayesopt.pooling import MetricData
from bayesopt.posterior_draws import NUM_FEATURES, Conditioned, PathSampler, joint_draws, make_sampler
from bayesopt.screening import diff_marginals, screen
from bayesopt.selection import Problem, guard_threshold, select
from bayesopt.spec import ExperimentSpec


@dataclass(frozen=True)
class SamplingResult:
    """Outcome of ``s`` draws over ``N`` candidates.

    Attributes:
        wins: ``N`` number of draws each candidate won.
        safe_wins: ``N`` number of draws each candidate won among the safe set (equal to ``wins`` without a limit).
        explore_wins: ``N`` number of draws each candidate won among the explore set (``wins`` without a limit).
        p_feasible: ``N`` exact posterior probabilities of meeting every guardrail.
        no_feasible: number of draws in which no candidate was feasible.
        num_draws: ``s``.
        sampled: candidates that survived screening (the others have no wins).
        sampler: ``exact`` or ``pathwise``.
        safe: ``N`` mask of the safe set (control always in it).
    """

    wins: np.ndarray
    safe_wins: np.ndarray
    explore_wins: np.ndarray
    p_feasible: np.ndarray
    no_feasible: int
    num_draws: int
    sampled: int = 0
    sampler: str = ""
    safe: np.ndarray | None = None

    @property
    def p_best(self) -> np.ndarray:
        return self.wins / self.num_draws


def make_problem(spec: ExperimentSpec, metrics: Sequence[str], data: Mapping[str, MetricData], scales: Sequence[float]) -> Problem:
    """The :class:`Problem` of ``spec`` over ``metrics`` (the draws' last dimension, in this order)."""
    pos = {m: i for i, m in enumerate(metrics)}
    guards = spec.guardrails
    return Problem(
        objective_index=torch.tensor([pos[o.metric] for o in spec.objectives], dtype=torch.long, device=default_device()),
        objective_sign=as_tensor([1.0 if o.direction == "maximize" else -1.0 for o in spec.objectives]),
        guard_index=torch.tensor([pos[g.metric] for g in guards], dtype=torch.long, device=default_device()),
        guard_sign=as_tensor([1.0 if g.is_lower else -1.0 for g in guards]).reshape(len(guards)),
        guard_threshold=as_tensor(
            [guard_threshold(g.bound, relative=g.relative, baseline=data[g.metric].baseline) for g in guards]
        ).reshape(len(guards)),
        scale=as_tensor(list(scales)),
        method=spec.policy.method,
    )


def metric_scale(model: MetricModel) -> float:
    """The standard deviation of a metric's pooled deltas (its online standardisation), floored above zero."""
    return max(float(gp_parts(model).scale), 1e-12)


def marginal_feasibility(problem: Problem, marginals: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """``N`` exact probabilities that each candidate meets every guardrail, from per-metric marginals (in the
    problem's metric order). Control (candidate 0) has no spread: 1 or 0 by its baseline against an absolute limit."""
    mean, sd = diff_marginals(marginals)  # N x m
    g = problem.guard_index
    slack = problem.guard_sign * (mean[:, g] - problem.guard_threshold)  # N x G
    z = slack / sd[:, g].clamp_min(torch.finfo(mean.dtype).tiny)
    return torch.where(sd[:, g] > 0, ndtr(z), (slack >= 0).to(mean.dtype)).prod(dim=-1)  # N


def thompson_sample(
    models: Mapping[str, MetricModel],
    data: Mapping[str, MetricData],
    spec: ExperimentSpec,
    X: np.ndarray,
    num_draws: int,
    *,
    block: int | None = None,
    num_features: int = NUM_FEATURES,
    screening: bool = True,
    safe_risk: float | None = None,
    explore_risk: float | None = None,
    second_opinion: Mapping[str, MetricModel] | None = None,
    certifiable: np.ndarray | None = None,
) -> SamplingResult:
    """Run ``num_draws`` draws of constrained (or utility) Thompson sampling over candidates ``X``.

    Args:
        models: fitted model per modelled metric (online-only or multi-task).
        data: pooled data per metric (baselines for the guardrails).
        spec: objectives, guardrails and ``policy.method``.
        X: ``N x d`` unit-cube candidates, control first.
        num_draws: ``s``.
        block: draws per block (default: bounded by memory, see :mod:`bayesopt.posterior_draws`).
        num_features: random features per map when sampling pathwise.
        screening: drop candidates that cannot win (:mod:`bayesopt.screening`) before drawing.
        safe_risk: the safe set's limit on a candidate's probability of breaking a guardrail (None: no safe set,
            ``safe_wins == wins``).
        explore_risk: the explore set's limit, at least ``safe_risk`` (None: ``explore_wins == wins``).
        second_opinion: another model of some metrics (the online-only model of a metric drawn from the multi-task
            one): ``p_feasible`` is the smaller of the two models' (the draws and screening use ``models``).
        certifiable: ``N`` mask of the candidates allowed in the safe set at all (near data, see
            :func:`bayesopt.allocation.certifiable`); their risk must still be within ``safe_risk``. None: all;
            control always is.

    Uses torch's global generator: wrap the call in :func:`bayesopt.device.seeded` for reproducibility.
    """
    metrics = list(models)
    problem = make_problem(spec, metrics, data, [metric_scale(models[m]) for m in metrics])
    Xt = as_tensor(X)
    conds = [Conditioned(models[m], Xt) for m in metrics]
    marginals = [c.marginals() for c in conds]
    p_feasible = marginal_feasibility(problem, marginals)  # N
    guarded = {metrics[i] for i in problem.guard_index.tolist()} & set(second_opinion or ())
    if guarded:  # only guardrail metrics enter p_feasible
        other = [Conditioned(second_opinion[m], Xt).marginals() if m in guarded else marginal
                 for m, marginal in zip(metrics, marginals, strict=True)]
        p_feasible = torch.minimum(p_feasible, marginal_feasibility(problem, other))
    N = len(X)

    def within(limit: float | None) -> torch.Tensor:
        mask = (1.0 - p_feasible <= limit) if limit is not None else torch.ones(N, dtype=torch.bool, device=Xt.device)
        mask[0] = True
        return mask

    safe, explorable = within(safe_risk), within(explore_risk)
    if certifiable is not None:
        safe &= torch.as_tensor(np.asarray(certifiable, dtype=bool), device=Xt.device)
        safe[0] = True
    keep = torch.arange(N, device=Xt.device)
    if screening:  # what can win among all candidates, and what can win within each restricted set
        keep = screen(problem, marginals)
        for mask in (safe, explorable):
            if not bool(mask.all()):
                idx = torch.nonzero(mask).squeeze(-1)
                keep = torch.unique(torch.cat([keep, idx[screen(problem, [tuple(t[idx] for t in m) for m in marginals])]]))
    samplers = [make_sampler(c.subset(keep), num_features=num_features) for c in conds]
    eligible, explore_eligible = safe[keep], explorable[keep]
    counts = [torch.zeros(N, dtype=torch.long, device=Xt.device) for _ in range(3)]  # wins, safe, explore
    no_feasible = 0
    for draws in joint_draws(samplers, num_draws, block=block):
        chosen = select(draws, problem, eligible, explore_eligible)  # indices into keep
        for count, winners in zip(counts, (chosen.winners, chosen.safe_winners, chosen.explore_winners), strict=True):
            count.index_add_(0, keep, torch.bincount(winners, minlength=len(keep)))
        no_feasible += int((~chosen.feasible.any(dim=-1)).sum())
    kind = "pathwise" if any(isinstance(s, PathSampler) for s in samplers) else "exact"
    wins, safe_wins, explore_wins = (to_numpy(c).astype(np.int64) for c in counts)
    return SamplingResult(wins, safe_wins, explore_wins, to_numpy(p_feasible).astype(float), no_feasible, num_draws,
                          int(len(keep)), kind, to_numpy(safe).astype(bool))
