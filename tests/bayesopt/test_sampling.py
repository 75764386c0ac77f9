"""Joint posterior draws and screening against the exact posterior (real GP fits, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesopt.device import as_tensor, seeded
from bayesopt.gp import fit_model, fit_models
from bayesopt.pooling import MetricData, pool
from bayesopt.posterior_draws import Conditioned, ExactSampler, PathSampler, make_sampler
from bayesopt.screening import screen
from bayesopt.thompson import make_problem, metric_scale, thompson_sample
from tests.bayesopt.bo_worlds import lattice_arms, make_spec, simulate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conditioned(n: int = 40, N: int = 30, seed: int = 0) -> Conditioned:
    rng = np.random.default_rng(seed)
    X = rng.random((n, 2))
    X[0] = 0.5
    delta = np.sin(5 * X[:, 0]) + X[:, 1] + 0.1 * rng.standard_normal(n)
    delta -= delta[0]
    data = MetricData("m", ["control"] + [f"a{i}" for i in range(1, n)], X, delta, np.full(n, 0.01), 0.0, 0.0, n)
    with seeded(seed):
        model = fit_model(data)
    cand = rng.random((N, 2))
    cand[0] = 0.5
    return Conditioned(model, as_tensor(cand))


def _moments(sampler, draws: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    with seeded(1):
        f = torch.cat([sampler.draw(block) for _ in range(draws // block)]).numpy()
    return f.mean(0), np.cov(f.T)


@pytest.mark.parametrize("kind", ["exact", "pathwise"])
def test_draws_match_the_exact_posterior_mean_and_covariance(kind: str) -> None:
    """8,192 draws: the sample mean is within 5 standard errors of the posterior mean; the sample covariance
    within 5 of its standard errors ``sqrt((S_ij^2 + S_ii S_jj) / s)`` of the exact one. Pathwise draws use 512
    feature maps (blocks of 16), whose mixture has the exact covariance; with few maps the spread between maps
    adds to the Monte Carlo error and this bound no longer holds."""
    cond = _conditioned()
    mean, var, _ = cond.marginals()
    exact_cov = (cond.covariance() * cond.scale**2).numpy()
    sampler = ExactSampler(cond) if kind == "exact" else PathSampler(cond)
    draws = 8192
    m, S = _moments(sampler, draws, 16)
    np.testing.assert_array_less(np.abs(m - mean.numpy()), 5 * np.sqrt(var.numpy() / draws) + 1e-12)
    se = np.sqrt((exact_cov**2 + np.outer(np.diag(exact_cov), np.diag(exact_cov))) / draws)
    np.testing.assert_array_less(np.abs(S - exact_cov), 5 * se + 1e-12)


def test_exact_unless_pathwise_is_much_cheaper() -> None:
    cond = _conditioned(n=10, N=30)
    assert isinstance(make_sampler(cond, num_features=20), ExactSampler)  # 30 <= 2 * (20 + 10)
    assert isinstance(make_sampler(cond, num_features=2), PathSampler)  # 30 > 2 * (2 + 10)
    assert isinstance(make_sampler(cond.subset(torch.arange(12)), num_features=2), ExactSampler)


def test_screened_out_candidates_almost_never_win_without_the_screen() -> None:
    """The screen proves that in each draw the chance that some dropped candidate wins is at most 1e-3, so over
    2,000 unscreened draws their wins are Binomial(2000, <= 1e-3): 10 or more has probability below 5e-5."""
    spec = make_spec(2, num_draws=2000)
    a = np.array([0.85, 0.6])
    truths = {"obj": lambda u: 4 * (1 - ((u - a) ** 2).sum(1)), "guard": lambda u: 10 + (0.5 - u[:, 0])}
    rng = np.random.default_rng(0)
    arms = lattice_arms(spec, rng.random((60, 2)))
    table = simulate(spec, truths, arms, windows=4, count=400, noise_sd={"obj": 0.5, "guard": 1.0}, rng=rng)
    pooled = pool(spec, table)
    with seeded(0):
        models = fit_models(pooled.metrics)
    X = np.vstack([[0.5, 0.5], rng.random((300, 2))])
    metrics = list(models)
    problem = make_problem(spec, metrics, pooled.metrics, [metric_scale(models[m]) for m in metrics])
    keep = screen(problem, [Conditioned(models[m], as_tensor(X)).marginals() for m in metrics]).numpy()
    assert 1 < len(keep) < len(X) // 2  # the screen does bite in this world
    with seeded(1):
        full = thompson_sample(models, pooled.metrics, spec, X, 2000, screening=False)
        screened = thompson_sample(models, pooled.metrics, spec, X, 2000)
    dropped = np.ones(len(X), dtype=bool)
    dropped[keep] = False
    assert full.wins[dropped].sum() < 10
    assert screened.sampled == len(keep) and screened.wins[dropped].sum() == 0


def _guarded_world(seed: int = 0):
    """A world whose objective rises beyond a guardrail's limit (``u_0 > 0.6`` breaks it): the best arms are
    uncertain or unsafe, the certified ones lie on the safe side."""
    spec = make_spec(2, num_draws=2000, guardrails=({"metric": "guard", "lower": 9.9},))
    truths = {"obj": lambda u: 4 * u[:, 0], "guard": lambda u: 10 + (0.5 - u[:, 0])}
    rng = np.random.default_rng(seed)
    arms = lattice_arms(spec, rng.random((30, 2)))
    table = simulate(spec, truths, arms, windows=4, count=400, noise_sd={"obj": 0.5, "guard": 1.0}, rng=rng)
    pooled = pool(spec, table)
    with seeded(seed):
        models = fit_models(pooled.metrics)
    return spec, pooled, models, np.vstack([[0.5, 0.5], rng.random((200, 2))])


def test_p_feasible_is_the_exact_product_of_marginal_probabilities() -> None:
    """The exact probability agrees with the share of 2,000 joint draws meeting the guardrail, within 5 binomial
    standard errors ``sqrt(p (1 - p) / 2000)`` (plus the pathwise map's small bias, below 0.01)."""
    spec, pooled, models, X = _guarded_world()
    metrics = list(models)
    problem = make_problem(spec, metrics, pooled.metrics, [metric_scale(models[m]) for m in metrics])
    samplers = [ExactSampler(Conditioned(models[m], as_tensor(X))) for m in metrics]
    with seeded(2):
        draws = torch.stack([s.draw(2000) for s in samplers], dim=-1)
    from bayesopt.selection import select

    share = select(draws, problem).feasible.double().mean(0).numpy()
    with seeded(2):
        result = thompson_sample(models, pooled.metrics, spec, X, 200)
    p = result.p_feasible
    assert p[0] == 1.0 and 0.05 < np.mean(p) < 0.95  # control meets the 9.9 floor by 0.1  # mixed feasibility: the check is not vacuous
    np.testing.assert_array_less(np.abs(share - p), 5 * np.sqrt(p * (1 - p) / 2000) + 0.01)


def test_safe_winners_are_certified_and_without_a_limit_equal_the_winners() -> None:
    spec, pooled, models, X = _guarded_world()
    with seeded(3):
        limited = thompson_sample(models, pooled.metrics, spec, X, 2000, safe_risk=0.025)
    with seeded(3):
        plain = thompson_sample(models, pooled.metrics, spec, X, 2000)
    certified = 1 - limited.p_feasible <= 0.025
    certified[0] = True
    assert (limited.safe == certified).all() and 1 < certified.sum() < len(X)
    assert limited.safe_wins[~certified].sum() == 0 and limited.safe_wins.sum() == 2000
    assert limited.wins[~certified].sum() > 0  # the unrestricted draws do pick uncertain arms here
    assert (plain.safe_wins == plain.wins).all() and plain.safe.all()
    np.testing.assert_array_equal(limited.wins, plain.wins)  # the safe set does not change the unrestricted draws


def test_explore_winners_stay_within_the_explore_limit_and_leave_the_other_draws_alone() -> None:
    spec, pooled, models, X = _guarded_world()
    with seeded(3):
        limited = thompson_sample(models, pooled.metrics, spec, X, 2000, safe_risk=0.025, explore_risk=0.5)
    with seeded(3):
        plain = thompson_sample(models, pooled.metrics, spec, X, 2000, safe_risk=0.025)
    explorable = 1 - limited.p_feasible <= 0.5
    explorable[0] = True
    assert 1 < explorable.sum() < len(X) and limited.wins[~explorable].sum() > 0  # the limit binds here
    assert limited.explore_wins[~explorable].sum() == 0 and limited.explore_wins.sum() == 2000
    np.testing.assert_array_equal(limited.wins, plain.wins)
    np.testing.assert_array_equal(limited.safe_wins, plain.safe_wins)
    assert (plain.explore_wins == plain.wins).all()


def test_a_second_opinion_on_a_guardrail_can_only_lower_p_feasible() -> None:
    """The guardrail's second model is fitted on 8 of the 30 arms (wider, shifted marginals): ``p_feasible`` is
    the candidate-wise minimum of the two models' exact probabilities and the safe set follows it."""
    spec, pooled, models, X = _guarded_world()
    few = pool(spec, simulate(spec, {"obj": lambda u: 4 * u[:, 0], "guard": lambda u: 10 + (0.5 - u[:, 0])},
                              lattice_arms(spec, np.random.default_rng(9).random((8, 2))), windows=4, count=400,
                              noise_sd={"obj": 0.5, "guard": 1.0}, rng=np.random.default_rng(9)))
    with seeded(4):
        other = {"guard": fit_model(few.metrics["guard"])}
    swapped = {**models, **other}
    with seeded(5):
        plain = thompson_sample(models, pooled.metrics, spec, X, 500, safe_risk=0.025)
    with seeded(5):
        alone = thompson_sample(swapped, pooled.metrics, spec, X, 500, safe_risk=0.025)
    with seeded(5):
        both = thompson_sample(models, pooled.metrics, spec, X, 500, safe_risk=0.025, second_opinion=other)
    np.testing.assert_allclose(both.p_feasible, np.minimum(plain.p_feasible, alone.p_feasible), rtol=0, atol=1e-12)
    assert (both.p_feasible < plain.p_feasible - 0.05).any()  # the second opinion binds somewhere
    certified = 1 - both.p_feasible <= 0.025
    certified[0] = True
    assert (both.safe == certified).all() and both.safe_wins[~certified].sum() == 0
    assert both.safe.sum() < plain.safe.sum() and both.safe_wins.sum() == 500


def test_a_candidate_that_may_not_be_certified_stays_out_of_the_safe_set() -> None:
    """The same draws with the certifiable mask cut to the first half of the candidates: the safe set is the
    plain one within that half (control always in it), safe winners lie in it, the unrestricted winners and
    ``p_feasible`` do not change."""
    spec, pooled, models, X = _guarded_world()
    near = np.zeros(len(X), dtype=bool)
    near[: len(X) // 2] = True
    near[0] = False  # control joins the safe set whatever the mask says
    with seeded(5):
        plain = thompson_sample(models, pooled.metrics, spec, X, 500, safe_risk=0.025, screening=False)
    with seeded(5):
        cut = thompson_sample(models, pooled.metrics, spec, X, 500, safe_risk=0.025, screening=False, certifiable=near)
    expected = plain.safe & near
    expected[0] = True
    assert (cut.safe == expected).all() and (plain.safe & ~near)[1:].any()  # the mask binds
    assert cut.safe_wins[~expected].sum() == 0 and cut.safe_wins.sum() == 500
    np.testing.assert_array_equal(cut.wins, plain.wins)
    np.testing.assert_array_equal(cut.p_feasible, plain.p_feasible)
