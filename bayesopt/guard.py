"""The guard against a misleading simulator: leave-one-out cross-validation on the online arms.

For an exact GP with known noise and fixed hyperparameters, leaving training point ``i`` out has a closed form
(Rasmussen & Williams 2006, section 5.4.2): with ``K = Knn + Sigma`` and ``alpha = K^-1 (y - m)``,

    y_i - mu_{-i} = alpha_i / [K^-1]_ii,     var_{-i} = 1 / [K^-1]_ii

(the predictive of the noisy observation ``y_i``). Each online arm other than control (whose zero effect is
known) is predicted from all other points, simulator points included for the multi-task model, in original
units, so both models are judged on the same numbers: the mean log predictive density, the RMSE and the share
of arms inside their 95% interval. The multi-task model is used only when its learned correlation is at least
:data:`MIN_CORRELATION` and it predicts the held-out online arms better on log-likelihood, a proper score that
charges both error and over- or under-confidence. RMSE is not required as well: for some 20 held-out arms it is
too noisy to veto on (requiring it refused a moderately biased simulator for a third of the metrics where the
multi-task model was the better one, docs/modelling.md). The log-likelihood gain must reach
:data:`MIN_GAIN_Z` standard errors of the per-arm differences (paired over the same arms): the refit runs the
guard every hour, and a useless simulator that wins a plain comparison by chance for some metric in some hours
moves the whole closed loop (in 48-hour runs on the scarce world it was picked for shares in 33 of 47 hours of
one run). A correlated simulator that is shifted or scaled is no penalty (per-task standardisation absorbs
both), but one whose shape misleads predicts held-out arms worse.
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
#: Standard errors the multi-task model's mean held-out log-likelihood gain must reach: the one-standard-error
#: rule of model selection (prefer the simpler model unless the other is better by more than its own noise;
#: about 16% false picks of a simulator that is no better, against 50% for a plain comparison). Two refused 80%
#: of a good simulator's wins at 20 online arms (bench-results/multitask.json: its gains are 0.1-2.9 errors).
MIN_GAIN_Z = 1.0
#: Learned correlation below which the multi-task model is the online model with extra parameters: a useless
#: simulator is learned at ~0, a moderately biased one at 0.8 and more (bench-results/multitask.json).
MIN_CORRELATION = 0.3


@dataclass(frozen=True)
class CVScore:
    """Leave-one-out predictions of ``arms`` online arms: mean log density, RMSE, 95% interval coverage, and the
    ``arms`` log densities themselves (in the online data's order, for paired comparisons)."""

    log_likelihood: float
    rmse: float
    coverage: float
    arms: int
    densities: tuple[float, ...] = ()

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
    """Leave-one-out scores of ``model`` on its online training points other than control (the first)."""
    parts = gp_parts(model)
    with torch.no_grad(), exact_linalg():
        K = parts.kernel(parts.train_X).to_dense() + parts.noise_matrix()  # n x n
        K_inv = torch.cholesky_inverse(psd_safe_cholesky(K))
        alpha = K_inv @ (parts.targets - parts.prior_mean)  # n
        rows = torch.nonzero(parts.target_rows).flatten()[1:]  # online arms, control excluded
        precision = K_inv.diagonal()[rows]
        err = alpha[rows] / precision * parts.scale  # y_i - mu_{-i}, original units
        var = parts.scale**2 / precision
    if len(rows) == 0:
        return CVScore(float("nan"), float("nan"), float("nan"), 0)
    ll = -0.5 * (torch.log(2 * math.pi * var) + err**2 / var)
    inside = (err.abs() <= Z95 * var.sqrt()).double()
    return CVScore(float(ll.mean()), float(err.pow(2).mean().sqrt()), float(inside.mean()), int(len(rows)),
                   tuple(float(v) for v in ll.tolist()))


def paired_gain(online: CVScore, multitask: CVScore) -> tuple[float, float]:
    """Mean per-arm log-density gain of the multi-task model over online-only and its standard error."""
    diff = torch.tensor(multitask.densities, dtype=torch.float64) - torch.tensor(online.densities, dtype=torch.float64)
    if len(diff) < 2:
        return float(diff.sum()), float("inf")
    return float(diff.mean()), float(diff.std(unbiased=True) / math.sqrt(len(diff)))


def decide(online: CVScore, multitask: CVScore, correlation: float) -> GuardDecision:
    """Use the multi-task model only if the simulator is correlated with online (``correlation``, learned) and
    the model predicts held-out online arms better on log-likelihood, by :data:`MIN_GAIN_Z` paired standard errors."""
    if online.arms < MIN_GUARD_ARMS:
        reason = f"only {online.arms} online arms besides control; at least {MIN_GUARD_ARMS} are needed to check the simulator"
        return GuardDecision(False, reason, online, multitask)
    if not correlation >= MIN_CORRELATION:
        reason = (f"learned online-simulator correlation {correlation:.2f} is below {MIN_CORRELATION}: the simulator "
                  f"says little about online, and the online-only model is the simpler one")
        return GuardDecision(False, reason, online, multitask)
    scores = (f"log-likelihood {multitask.log_likelihood:.3g} against online-only {online.log_likelihood:.3g} "
              f"(RMSE {multitask.rmse:.3g} against {online.rmse:.3g})")
    if not multitask.log_likelihood > online.log_likelihood:
        return GuardDecision(False, f"multi-task predicts held-out online arms worse: {scores}", online, multitask)
    gain, se = paired_gain(online, multitask)
    if not gain >= MIN_GAIN_Z * se:
        return GuardDecision(False, f"multi-task's gain per held-out arm {gain:.3g} is within {MIN_GAIN_Z:g} standard "
                                    f"errors ({se:.3g}) of none: {scores}", online, multitask)
    z = gain / se if se > 0 else math.inf
    return GuardDecision(True, f"multi-task predicts held-out online arms better, by {z:.1f} standard errors: {scores}",
                         online, multitask)
