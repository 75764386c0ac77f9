"""The guard against a misleading simulator: the online arms judge the multi-task model against online-only.

Two scores of each model on the online arms other than control (whose zero effect is known), in original units
so that both models are judged on the same numbers:

- **The evidence**, ``log p(y_arms | control's anchor, simulator)``: the arms predicted jointly, before any of
  them is seen, from the multi-task model (which has seen the simulator) and from the online-only model (which
  has only its prior). Their ratio is the Bayes factor of the online arms for the simulator (at the fitted
  hyperparameters). It is the score that sees the simulator's whole claim: a simulator is worth most where the
  online arms are few or noisy, and there held-out arms are predicted almost as well by their neighbours.
- **Leave-one-out**, in closed form for an exact GP with known noise and fixed hyperparameters (Rasmussen &
  Williams 2006, section 5.4.2): with ``K = Knn + Sigma`` and ``alpha = K^-1 (y - m)``,
  ``y_i - mu_{-i} = alpha_i / [K^-1]_ii`` and ``var_{-i} = 1 / [K^-1]_ii``; mean log predictive density, RMSE and
  95% coverage of the held-out arms, each predicted from all other points (simulator points included).

The multi-task model is used when the online arms favour it: there are enough arms to check it, its learned
correlation is at least :data:`MIN_CORRELATION`, the arms are at least as likely with the simulator as without
(a Bayes factor of at least :data:`MIN_BAYES_FACTOR`: the model the arms favour at equal prior odds), and it
does not predict held-out arms worse by :data:`MAX_LOSS_Z` paired standard errors or more. Leave-one-out is the
veto, not the test: at a few thousand members an hour a held-out arm is predicted almost as well by its online
neighbours, and a good simulator's held-out gain stayed within a paired standard error in 95 of 144
metric-hours of a 48-hour closed loop on the scarce world (the rule before asked for a gain of one standard
error). A mirrored simulator is refused at once (docs/modelling.md). What a wrongly kept simulator can cost is
bounded elsewhere: guardrail risk takes the online-only model's second opinion
(:func:`bayesopt.thompson.thompson_sample`). A correlated simulator that is shifted or scaled is no penalty
(per-task standardisation absorbs both).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from linear_operator.utils.cholesky import psd_safe_cholesky

from bayesopt.diagnostics import Z95
from bayesopt.gp import exact_linalg
from bayesopt.gp_parts import MetricModel, gp_parts

#: Online arms besides control below which the simulator cannot be checked, and is therefore not used.
MIN_GUARD_ARMS = 5
#: Bayes factor of the online arms for the simulator below which it is refused: 1, the model the arms favour
#: at equal prior odds. A threshold of 1/3 (refuse only on "positive" evidence against it, Kass & Raftery 1995)
#: kept a useless simulator for 27% of the metric-hours of 48-hour closed loops (docs/modelling.md).
MIN_BAYES_FACTOR = 1.0
#: Paired standard errors of the per-arm held-out log-likelihood loss at which the multi-task model is refused.
MAX_LOSS_Z = 1.0
#: Learned correlation below which the multi-task model is the online model with extra parameters: a useless
#: simulator is learned at ~0, a moderately biased one at 0.8 and more (bench-results/multitask.json).
MIN_CORRELATION = 0.3


@dataclass(frozen=True)
class CVScore:
    """Leave-one-out predictions of ``arms`` online arms: mean log density, RMSE, 95% interval coverage, and the
    ``arms`` log densities themselves (in the online data's order, for paired comparisons); ``evidence`` is the
    joint log density of the same arms given only control's anchor and the simulator points (nats, summed)."""

    log_likelihood: float
    rmse: float
    coverage: float
    arms: int
    densities: tuple[float, ...] = ()
    evidence: float = float("nan")

    def to_dict(self) -> dict[str, float]:
        return {k: (v if math.isfinite(v) else None) for k, v in asdict(self).items() if k != "densities"}


@dataclass(frozen=True)
class GuardDecision:
    """Which model a metric uses, why, and the two models' cross-validation scores."""

    use_multitask: bool
    reason: str
    online: CVScore
    multitask: CVScore


def loo_score(model: MetricModel) -> CVScore:
    """Leave-one-out scores and the joint evidence of ``model``'s online training points other than control (the first)."""
    parts = gp_parts(model)
    with torch.no_grad(), exact_linalg():
        K = parts.kernel(parts.train_X).to_dense() + parts.noise_matrix()  # n x n
        residual = parts.targets - parts.prior_mean  # n
        K_inv = torch.cholesky_inverse(psd_safe_cholesky(K))
        alpha = K_inv @ residual  # n
        rows = torch.nonzero(parts.target_rows).flatten()[1:]  # online arms, control excluded
        precision = K_inv.diagonal()[rows]
        err = alpha[rows] / precision * parts.scale  # y_i - mu_{-i}, original units
        var = parts.scale**2 / precision
        evidence = joint_log_density(K, residual, rows) - len(rows) * float(torch.log(parts.scale))
    if len(rows) == 0:
        return CVScore(float("nan"), float("nan"), float("nan"), 0)
    ll = -0.5 * (torch.log(2 * math.pi * var) + err**2 / var)
    inside = (err.abs() <= Z95 * var.sqrt()).double()
    return CVScore(float(ll.mean()), float(err.pow(2).mean().sqrt()), float(inside.mean()), int(len(rows)),
                   tuple(float(v) for v in ll.tolist()), float(evidence))


def joint_log_density(K: torch.Tensor, residual: torch.Tensor, rows: torch.Tensor) -> float:
    """``log N(r_h | K_hc K_cc^-1 r_c, K_hh - K_hc K_cc^-1 K_ch)``: the ``rows`` (h) of ``residual`` (``n``) given the
    others (c) under the ``n x n`` covariance ``K``, in the units of ``residual``."""
    if len(rows) == 0:
        return float("nan")
    held = torch.zeros(K.shape[0], dtype=torch.bool, device=K.device)
    held[rows] = True
    h, c = torch.nonzero(held).flatten(), torch.nonzero(~held).flatten()
    L_c = psd_safe_cholesky(K[c][:, c])
    A = torch.cholesky_solve(K[c][:, h], L_c)  # |c| x |h|
    L_h = psd_safe_cholesky(K[h][:, h] - K[h][:, c] @ A)
    z = torch.linalg.solve_triangular(L_h, (residual[h] - A.T @ residual[c]).unsqueeze(-1), upper=False)
    return float(-0.5 * (z**2).sum() - L_h.diagonal().log().sum() - 0.5 * len(h) * math.log(2 * math.pi))


def bayes_factor(online: CVScore, multitask: CVScore) -> float:
    """How many times likelier the online arms are, jointly, under the multi-task model (predicted from the
    simulator and control's anchor) than under the online-only one (predicted from its prior and the anchor)."""
    return math.exp(min(max(multitask.evidence - online.evidence, -700.0), 700.0))


def paired_gain(online: CVScore, multitask: CVScore) -> tuple[float, float]:
    """Mean per-arm log-density gain of the multi-task model over online-only and its standard error."""
    diff = torch.tensor(multitask.densities, dtype=torch.float64) - torch.tensor(online.densities, dtype=torch.float64)
    if len(diff) < 2:
        return float(diff.sum()), float("inf")
    return float(diff.mean()), float(diff.std(unbiased=True) / math.sqrt(len(diff)))


def decide(online: CVScore, multitask: CVScore, correlation: float) -> GuardDecision:
    """Use the multi-task model if at least :data:`MIN_GUARD_ARMS` online arms can check it, its learned
    ``correlation`` is at least :data:`MIN_CORRELATION`, the online arms are at least as likely with the simulator
    (:func:`bayes_factor` at least :data:`MIN_BAYES_FACTOR`), and it predicts held-out arms no worse than
    :data:`MAX_LOSS_Z` paired standard errors."""
    if online.arms < MIN_GUARD_ARMS:
        reason = f"only {online.arms} online arms besides control; at least {MIN_GUARD_ARMS} are needed to check the simulator"
        return GuardDecision(False, reason, online, multitask)
    if not correlation >= MIN_CORRELATION:
        reason = (f"learned online-simulator correlation {correlation:.2f} is below {MIN_CORRELATION}: the simulator "
                  f"says little about online, and the online-only model is the simpler one")
        return GuardDecision(False, reason, online, multitask)
    factor = bayes_factor(online, multitask)
    gain, se = paired_gain(online, multitask)
    scores = (f"Bayes factor {factor:.3g} for the simulator; held-out log-likelihood {multitask.log_likelihood:.3g} "
              f"against online-only {online.log_likelihood:.3g} (RMSE {multitask.rmse:.3g} against {online.rmse:.3g})")
    if not factor >= MIN_BAYES_FACTOR:
        return GuardDecision(False, f"the online arms are {1.0 / factor:.3g} times as likely without the simulator: "
                                    f"{scores}", online, multitask)
    if not gain > -MAX_LOSS_Z * se:
        z = -gain / se if se > 0 else math.inf
        return GuardDecision(False, f"multi-task predicts held-out online arms worse, by {z:.1f} standard errors: "
                                    f"{scores}", online, multitask)
    return GuardDecision(True, f"the online arms favour the simulator: {scores}", online, multitask)
