"""Thompson sampling over a candidate set: ``s`` joint posterior draws, each picking one winner.

The result is the winners' frequencies (the serving distribution before capping) and, per candidate, the share
of draws in which it met every guardrail (its probability of feasibility). Draws are processed in blocks so
memory stays bounded at any ``s``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bayesopt.device import as_tensor, default_device, to_numpy
from bayesopt.gp_parts import MetricModel, gp_parts
from bayesopt.pooling import MetricData
from bayesopt.posterior_draws import NUM_FEATURES, Conditioned, PathSampler, joint_draws, make_sampler
from bayesopt.screening import screen
from bayesopt.selection import Problem, guard_threshold, select
from bayesopt.spec import ExperimentSpec


@dataclass(frozen=True)
class SamplingResult:
    """Outcome of ``s`` draws over ``N`` candidates.

    Attributes:
        wins: ``N`` number of draws each candidate won.
        feasible: ``N`` number of draws in which each candidate met every guardrail.
        no_feasible: number of draws in which no candidate was feasible.
        num_draws: ``s``.
        sampled: candidates that survived screening (the others have no wins and no feasibility counts).
        sampler: ``exact`` or ``pathwise``.
    """

    wins: np.ndarray
    feasible: np.ndarray
    no_feasible: int
    num_draws: int
    sampled: int = 0
    sampler: str = ""

    @property
    def p_best(self) -> np.ndarray:
        return self.wins / self.num_draws

    @property
    def p_feasible(self) -> np.ndarray:
        return self.feasible / self.num_draws


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

    Uses torch's global generator: wrap the call in :func:`bayesopt.device.seeded` for reproducibility.
    """
    metrics = list(models)
    problem = make_problem(spec, metrics, data, [metric_scale(models[m]) for m in metrics])
    Xt = as_tensor(X)
    conds = [Conditioned(models[m], Xt) for m in metrics]
    N = len(X)
    keep = screen(problem, [c.marginals() for c in conds]) if screening else torch.arange(N, device=Xt.device)
    samplers = [make_sampler(c.subset(keep), num_features=num_features) for c in conds]
    wins = torch.zeros(N, dtype=torch.long, device=Xt.device)
    feasible = torch.zeros(N, dtype=torch.long, device=Xt.device)
    no_feasible = 0
    for draws in joint_draws(samplers, num_draws, block=block):
        winners, mask = select(draws, problem)  # indices into keep
        wins.index_add_(0, keep, torch.bincount(winners, minlength=len(keep)))
        feasible.index_add_(0, keep, mask.sum(dim=0))
        no_feasible += int((~mask.any(dim=-1)).sum())
    kind = "pathwise" if any(isinstance(s, PathSampler) for s in samplers) else "exact"
    return SamplingResult(to_numpy(wins).astype(np.int64), to_numpy(feasible).astype(np.int64), no_feasible,
                          num_draws, int(len(keep)), kind)
