"""The multi-task GP and its guard on worlds with known answers (real fits, fixed seeds).

World: ``f(u) = sin(3 u_0) + 0.5 cos(4 u_1)`` on the unit square; 12 online arms (control at the centre) observe
``f(u) - f(control)`` with sd 0.05; 150 simulator points with sd 0.05 observe

- ``good``: ``3 f + 2``, a scaled and shifted copy (true correlation 1, which per-task standardisation makes free);
- ``useless``: ``cos(5 u_1 + 2 u_0)``, a smooth surface that is a different function (its sample correlation with
  ``f`` over the square is about 0.1);
- ``mirror``: ``f(1 - u)``, the right shape in the wrong place (correlated enough to fool a plain index kernel,
  wrong at every online arm).

Bounds: a simulator that is an exact affine copy has correlation 1, and 150 points with noise 0.05 against a
signal sd of ~0.8 pin it down, so > 0.9; the useless one's learned correlation must sit well below the guard's
floor of 0.3.

Shared control noise: every online effect is an arm's mean minus the same control mean, so a control error
``e`` shifts all of them by ``-e``. With the simulator's shape known (the affine copy), the 11 arms' own noise
(sd 0.05) pins that shift down to ``0.05 / sqrt(11) = 0.015``, and the prior on it (the control's sd 0.1)
shrinks it by ``0.1^2 / (0.1^2 + 0.015^2)``, about 2%: the mean held-out error must be at most 0.06 (the shift's
3-sd bound plus the shrinkage, with room for the shape's own error) where the control's error is 0.2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from bayesopt.device import as_tensor, to_numpy
from bayesopt.gp import fit_model
from bayesopt.guard import (
    MIN_BAYES_FACTOR,
    MIN_CORRELATION,
    CVScore,
    bayes_factor,
    decide,
    joint_log_density,
    loo_score,
)
from bayesopt.multitask import SimulatorData, fit_multitask, summarise
from bayesopt.pooling import MetricData

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SD = 0.05


def f(U: np.ndarray) -> np.ndarray:
    return np.sin(3 * U[:, 0]) + 0.5 * np.cos(4 * U[:, 1])


def online_data(k: int = 12, seed: int = 0, *, control_sd: float = 0.0, control_error: float = 0.0) -> MetricData:
    """Effects of ``k`` arms against a control whose mean is off by ``control_error`` (its sd ``control_sd``)."""
    rng = np.random.default_rng(seed)
    X = np.vstack([[0.5, 0.5], rng.random((k - 1, 2))])
    delta = f(X) - f(X[:1]) + rng.normal(0, SD, k) - control_error
    delta[0] = 0.0
    var = np.full(k, SD**2 + control_sd**2)
    var[0] = 1e-6
    return MetricData("m", ["control"] + [f"a{i}" for i in range(k - 1)], X, delta, var, 1.0, control_sd or 0.01, k)


SIMULATORS = {
    "good": lambda U: 3 * f(U) + 2,
    "useless": lambda U: np.cos(5 * U[:, 1] + 2 * U[:, 0]),
    "mirror": lambda U: f(1 - U),
}


def simulator(name: str, n: int = 150, seed: int = 1) -> SimulatorData:
    rng = np.random.default_rng(seed)
    X = rng.random((n, 2))
    y = SIMULATORS[name](X) + rng.normal(0, SD, n)
    return SimulatorData("m", X, y, np.full(n, SD**2), n, ("replay",))


def test_a_good_simulator_is_learned_as_correlated_and_used() -> None:
    online = online_data()
    target = fit_multitask(online, simulator("good"))
    assert target.correlation() > 0.9
    decision = decide(loo_score(fit_model(online)), loo_score(target), target.correlation())
    assert decision.use_multitask, decision.reason
    assert decision.multitask.rmse < decision.online.rmse


def test_a_useless_simulator_is_learned_as_uncorrelated_and_the_guard_falls_back() -> None:
    online = online_data()
    target = fit_multitask(online, simulator("useless"))
    assert target.correlation() < MIN_CORRELATION / 2
    decision = decide(loo_score(fit_model(online)), loo_score(target), target.correlation())
    assert not decision.use_multitask and "correlation" in decision.reason


def test_a_misleading_correlated_simulator_is_caught_by_the_online_arms() -> None:
    online = online_data()
    target = fit_multitask(online, simulator("mirror"))
    decision = decide(loo_score(fit_model(online)), loo_score(target), target.correlation())
    assert not decision.use_multitask and "times as likely without the simulator" in decision.reason
    assert bayes_factor(decision.online, decision.multitask) < MIN_BAYES_FACTOR


def test_the_guard_takes_the_simulator_when_the_online_arms_favour_it_and_loo_does_not_veto() -> None:
    """Synthetic scores of 20 arms: a Bayes factor just below 1 for the simulator refuses it; so does a
    held-out loss of one paired standard error (every arm 0.1 nats worse, standard error 0: a sure loss); a
    held-out loss within its noise (half the arms 1.1 better, half 1.3 worse: mean -0.1, standard error 0.28)
    with the evidence level does not."""
    online = CVScore(-1.0, 1.0, 0.95, 20, (-1.0,) * 20, evidence=-20.0)
    against = CVScore(-1.0, 1.0, 0.95, 20, (-1.0,) * 20, evidence=-20.0 + math.log(MIN_BAYES_FACTOR) - 1e-9)
    worse = CVScore(-1.1, 1.0, 0.95, 20, (-1.1,) * 20, evidence=-20.0)
    noisy = CVScore(-1.1, 1.0, 0.95, 20, (0.1, -2.3) * 10, evidence=-20.0)
    refused = decide(online, against, correlation=0.9)
    assert not refused.use_multitask and "1 times as likely without the simulator" in refused.reason
    assert bayes_factor(online, against) == pytest.approx(MIN_BAYES_FACTOR)
    vetoed = decide(online, worse, correlation=0.9)
    assert not vetoed.use_multitask and "predicts held-out online arms worse" in vetoed.reason
    assert decide(online, noisy, correlation=0.9).use_multitask
    assert "densities" not in refused.online.to_dict()


def test_the_joint_evidence_is_the_conditional_gaussian_density() -> None:
    """``log p(y_O | y_C) = log p(y) - log p(y_C)`` for a random 6 x 6 covariance, checked with scipy."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(6, 6))
    K = A @ A.T + 0.5 * np.eye(6)
    y = rng.normal(size=6)
    rows = torch.tensor([1, 3, 4])
    rest = [0, 2, 5]
    expected = (multivariate_normal(np.zeros(6), K).logpdf(y)
                - multivariate_normal(np.zeros(3), K[np.ix_(rest, rest)]).logpdf(y[rest]))
    got = joint_log_density(torch.tensor(K), torch.tensor(y), rows)
    assert got == pytest.approx(expected, abs=1e-9)


def test_too_few_online_arms_are_not_enough_to_trust_a_simulator() -> None:
    online = online_data(k=4)
    target = fit_multitask(online, simulator("good", n=60))
    decision = decide(loo_score(fit_model(online)), loo_score(target), target.correlation())
    assert not decision.use_multitask and decision.reason.startswith("only 3 online arms")


def test_the_control_error_every_online_effect_shares_is_not_copied_into_predictions() -> None:
    online = online_data(control_sd=0.1, control_error=0.2)
    target = fit_multitask(online, simulator("good"))
    U = np.random.default_rng(7).random((200, 2))
    with torch.no_grad():
        mean = to_numpy(target.posterior(as_tensor(U)).mean.squeeze(-1))
    assert abs(np.mean(mean - (f(U) - f(online.X[:1])))) < 0.06


def test_summarising_keeps_at_most_the_cap_and_preserves_precision() -> None:
    sim = simulator("good", n=2000)
    small = summarise(sim, 100)
    assert len(small.y) <= 100 and small.X.shape == (len(small.y), 2)
    assert np.isclose((1 / small.var).sum(), (1 / sim.var).sum())  # binning pools, it drops no evidence
    assert summarise(sim, 5000) is sim
