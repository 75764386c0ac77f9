"""``bayesopt.policy.GPPolicy`` end to end on simulated worlds with known answers (real GP fits, fixed seeds).

The bounds below follow from each world's numbers, worked out in the docstrings; none is tuned to the output.

Shared world (``_constrained_world``): parameters in [0, 1], control at 0.5 on every axis;
objective ``obj(u) = 4 (1 - |u - a|^2)`` with ``a = (0.85, 0.6, 0.4, 0.5)[:d]``; guardrail
``guard(u) = L + (0.5 - u_0)`` with a relative floor of -1% against control, i.e. ``-(0.5 - u_0) <= 0.01 L``, so the
feasible region is ``u_0 <= 0.5 + 0.01 L`` (``u_0 <= 0.6`` for ``L = 10``) and the constrained optimum is
``x* = (0.5 + 0.01 L, 0.6, 0.4, 0.5)[:d]``. Outcomes have sd 0.5 (obj) and 1.0 (guard); every arm and control are
served to 400 members in each of 4 windows.

Distance bound for the optimum tests: an arm's pooled difference from control has standard error
``sqrt(2) * 0.5 / sqrt(400) / sqrt(4) = 0.018``; two arms' posterior difference has sd at most ``0.025`` (the GP
only shrinks it). Thompson sampling gives an arm whose true objective is ``4 sd`` (= 0.1) below the best a win
probability below ``Phi(-4) ~ 3e-5`` per comparison, so mass sits where the loss is under 0.1. Along the
boundary the loss is ``4 r^2`` (r <= 0.16); into the feasible side it is ``4 * 2 * 0.25 * r`` (r <= 0.05). Adding
the lattice's half-diagonal ``sqrt(d) / 64 <= 0.03`` gives the 0.2 bound.
"""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import qmc

from bayesopt.device import seeded
from bayesopt.diagnostics import level_posterior
from bayesopt.distribution import CONTROL_ARM_ID
from bayesopt.errors import InsufficientDataError
from bayesopt.gp import fit_models
from bayesopt.lattice import parse_arm_id
from bayesopt.launch_design import launch_prior_risk
from bayesopt.policy import GPPolicy, candidates_for
from bayesopt.pooling import pool
from bayesopt.thompson import thompson_sample
from tests.bayesopt.bo_worlds import lattice_arms, make_spec, non_control, simulate, unit_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPTIMUM_RADIUS = 0.2


def _constrained_world(d: int, n_arms: int, *, level: float = 10.0, lower: float = -0.01, seed: int = 0, **policy):
    spec = make_spec(d, guardrails=({"metric": "guard", "lower": lower, "relative": True},), **policy)
    a = np.array([0.85, 0.6, 0.4, 0.5][:d])
    truths = {"obj": lambda u: 4 * (1 - ((u - a) ** 2).sum(1)), "guard": lambda u: level + (0.5 - u[:, 0])}
    arms = lattice_arms(spec, qmc.Sobol(d, seed=seed).random(n_arms))
    table = simulate(spec, truths, arms, windows=4, count=400, noise_sd={"obj": 0.5, "guard": 1.0},
                     rng=np.random.default_rng(seed))
    return spec, table, truths


def propose(spec, table, *, version: int = 1, now: float = 0.0, **kwargs) -> SimpleNamespace:
    """The GP policy's proposal, with ``distribution``: the record the refit would publish as ``version``."""
    proposal = GPPolicy().propose(spec, table, now=now, **kwargs)
    fields = {f.name: getattr(proposal, f.name) for f in dataclasses.fields(proposal)}
    return SimpleNamespace(**fields, distribution=proposal.to_distribution(spec, version=version, created_at=now))


def _mass(spec, proposal: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
    """Non-control weights (normalised to one) and unit points of the proposal's arms."""
    arms = non_control(proposal.distribution)
    w = np.array([a.weight for a in arms])
    return w / w.sum(), np.array([unit_of(spec, a) for a in arms])


def test_same_data_and_seed_give_the_identical_distribution() -> None:
    spec, table, _ = _constrained_world(2, 32)
    runs = [propose(spec, table, version=7, seed=11, now=1.7e9) for _ in range(2)]
    assert runs[0].distribution.to_json() == runs[1].distribution.to_json()
    assert json.dumps(runs[0].model_state) == json.dumps(runs[1].model_state)
    assert runs[0].num_observations == len(table)
    assert set(runs[0].timings) >= {"fit", "sample"}


def test_empty_table_gives_the_space_filling_launch_design() -> None:
    spec = make_spec(2, initial_arms=8)
    empty = simulate(spec, {}, {CONTROL_ARM_ID: dict(spec.control)}, windows=0, count=1, rng=np.random.default_rng(0))
    proposal = propose(spec, empty, version=1, now=1.7e9)
    dist = proposal.distribution
    assert dist.diagnostics["kind"] == "initial_design" and proposal.num_observations == 0
    units = np.array([unit_of(spec, a) for a in non_control(dist)])
    assert len(units) == 8 and len({tuple(u) for u in units}) == 8
    # the first 8 Sobol points are a (0,3,2)-net: each quadrant of the box around control holds two of them, and
    # snapping moves a point by at most half a lattice step, so no quadrant can be empty
    quadrants = {(u[0] >= 0.5, u[1] >= 0.5) for u in units}
    assert len(quadrants) == 4
    # The first version keeps the risk budget under the launch prior: arms share max_unsafe_share / prior risk.
    explore = min(1 - spec.traffic.control_share, spec.policy.max_unsafe_share / launch_prior_risk(spec))
    assert dist.control_arm.weight == pytest.approx(1 - explore)
    assert dist.diagnostics["risk"]["expected_unsafe_share"] <= spec.policy.max_unsafe_share + 1e-12


@pytest.mark.parametrize("radius", [0.05, 0.1, 0.25])
def test_with_no_data_the_launch_arms_lie_within_the_configured_radius(radius: float) -> None:
    spec = make_spec(3, initial_arms=8, initial_radius=radius)
    dist = propose(spec, simulate(spec, {}, {CONTROL_ARM_ID: dict(spec.control)}, windows=0, count=1,
                                  rng=np.random.default_rng(0))).distribution
    center = unit_of(spec, dist.control_arm)
    half_step = 0.5 / (spec.policy.grid_levels - 1)  # snapping to the lattice moves a point by at most this
    for arm in non_control(dist):
        assert np.abs(unit_of(spec, arm) - center).max() <= radius + half_step + 1e-12


def test_a_common_time_effect_far_larger_than_arm_differences_keeps_the_ranking() -> None:
    """Five arms, true effects 0.04 apart; every window moves all arms by up to +-1 (6x the whole range).

    The worst arm is served only in the busiest hours and the best only in the quietest, so raw means rank them
    backwards; within-window differences from control remove the hour. Pooled standard error per arm is
    ``0.2 * sqrt(2 / 2000 / 4) = 0.0032``: the 0.04 gaps are 12 of them.
    """
    spec = make_spec(2, metrics=(("obj", "mean"),), guardrails=(), num_candidates=64)
    truths = {"obj": lambda u: 0.2 * u[:, 0]}
    points = np.array([[x, 0.2] for x in (0.1, 0.3, 0.5, 0.7, 0.9)])
    arms = lattice_arms(spec, points)
    ranked = [a for a in arms if a != CONTROL_ARM_ID]
    ranked.sort(key=lambda a: arms[a]["x0"])  # worst first
    busiest = sorted(range(1, 25), key=lambda w: -np.sin(2 * np.pi * w / 24))
    schedule: dict[int, list[str]] = {}
    for i, arm in enumerate(ranked):
        for w in busiest[4 * i: 4 * i + 4]:
            schedule[w] = [arm]
    table = simulate(spec, truths, arms, windows=24, count=2000, noise_sd={"obj": 0.2}, time_effect=1.0,
                     schedule=schedule, rng=np.random.default_rng(5))
    raw = table[table["arm_id"] != CONTROL_ARM_ID].groupby("arm_id")["mean"].mean()
    assert list(raw.sort_values().index) == ranked[::-1]  # naive pooling gets it exactly wrong
    data = pool(spec, table).metrics["obj"]
    pooled = dict(zip(data.arm_ids, data.delta, strict=True))
    assert sorted(ranked, key=pooled.get) == ranked
    model = fit_models(pool(spec, table).metrics)["obj"]
    mean, _ = level_posterior(model, data.X)
    fitted = dict(zip(data.arm_ids, mean, strict=True))
    assert sorted(ranked, key=fitted.get) == ranked
    w, units = _mass(spec, propose(spec, table, version=25))
    assert float(w @ units[:, 0]) > 0.7  # the best arm sits at 0.9, the second at 0.7


@pytest.mark.parametrize("d, n_arms", [(2, 128), (4, 256)])
def test_dense_data_puts_the_mass_on_the_known_constrained_optimum(d: int, n_arms: int) -> None:
    spec, table, _ = _constrained_world(d, n_arms)
    proposal = propose(spec, table, version=5)
    w, units = _mass(spec, proposal)
    x_star = np.array([0.6, 0.6, 0.4, 0.5][:d])
    feasible = units[:, 0] <= 0.6 + 1e-9
    near = np.linalg.norm(units - x_star, axis=1) <= OPTIMUM_RADIUS
    assert w[feasible].sum() >= 0.9
    assert w[feasible & near].sum() >= 0.9
    assert len(proposal.distribution.arms) <= spec.policy.max_arms


def test_when_nothing_is_feasible_every_member_gets_control() -> None:
    """A +8% floor is out of reach (the best is +5% at ``u_0 = 0``): every arm surely breaks it.

    The safe set is control alone, and so is the explore set (every arm is more likely broken than not), so no
    budget is spent on arms that would break the guardrail for nearly every member served; the draws' winners
    still say where the least violating region is (``p_best`` at ``u_0 <= 2/32``: two lattice steps of slack,
    the guard's posterior sd between neighbouring columns is about the 0.03 step in violation).
    """
    spec, table, _ = _constrained_world(2, 128, lower=0.08)
    proposal = propose(spec, table, version=5)
    diag = proposal.distribution.diagnostics
    assert diag["draws_without_feasible"] == spec.policy.num_draws
    assert diag["risk"]["safe_candidates"] == 0 and diag["risk"]["expected_unsafe_share"] == 0.0
    assert proposal.distribution.control_arm.weight == pytest.approx(1.0)
    pooled = pool(spec, table)
    with seeded(0):
        models = fit_models(pooled.metrics)
        cands = candidates_for(spec, pooled, models, None, 0)
        result = thompson_sample(models, pooled.metrics, spec, cands.X, 1000)
    assert result.wins[cands.X[:, 0] <= 2 / 32 + 1e-9].sum() >= 0.9 * 1000


def test_a_relative_guardrail_moves_the_mass_when_control_level_moves() -> None:
    """Same differences between arms, control's guard level 5 or 20: the -1% floor becomes a drop of 0.05 or
    0.2, so the boundary moves from ``u_0 = 0.55`` to ``u_0 = 0.7`` and the mass, which sits at the boundary
    (the objective peaks beyond it, at 0.85), must follow by about 0.15; we ask for 0.1 on average over three
    worlds to leave a lattice step and the posterior spread on each side (one world's shift swings by about 0.03
    with its control errors: 0.10, 0.16 and 0.13 measured)."""
    shifts = []
    for seed in (0, 1, 2):
        means = {}
        for level in (5.0, 20.0):
            spec, table, _ = _constrained_world(2, 128, level=level, seed=seed)
            w, units = _mass(spec, propose(spec, table, version=5))
            means[level] = float(w @ units[:, 0])
            assert w[units[:, 0] <= 0.5 + 0.01 * level + 1e-9].sum() >= 0.9
        shifts.append(means[20.0] - means[5.0])
    assert np.mean(shifts) >= 0.1, shifts


def test_two_objectives_spread_the_mass_along_the_pareto_front() -> None:
    """``obj1 = 4 (1 - |u - a|^2)``, ``obj2 = 4 (1 - |u - b|^2)``: the Pareto set is the segment ``[a, b]``.

    A point at distance ``r`` from the segment is dominated by its projection, which improves both objectives by
    ``4 r^2``, so by the 4-sd argument of the module docstring the mass lies within 0.2 of the segment. The two
    objectives are mirror images across the segment's midpoint and the Chebyshev weights are flat, so each half
    of the front carries half the mass in expectation; we ask for a fifth.
    """
    a, b = np.array([0.15, 0.75]), np.array([0.85, 0.45])
    spec = make_spec(2, metrics=(("obj1", "mean"), ("obj2", "mean")),
                     objectives=({"metric": "obj1"}, {"metric": "obj2"}), guardrails=(), num_draws=2000)
    truths = {"obj1": lambda u: 4 * (1 - ((u - a) ** 2).sum(1)), "obj2": lambda u: 4 * (1 - ((u - b) ** 2).sum(1))}
    arms = lattice_arms(spec, qmc.Sobol(2, seed=2).random(128))
    table = simulate(spec, truths, arms, windows=4, count=400, noise_sd={"obj1": 0.5, "obj2": 0.5},
                     rng=np.random.default_rng(2))
    w, units = _mass(spec, propose(spec, table, version=5))
    t = np.clip((units - a) @ (b - a) / ((b - a) @ (b - a)), 0.0, 1.0)
    dist = np.linalg.norm(units - (a + t[:, None] * (b - a)), axis=1)
    assert w[dist <= OPTIMUM_RADIUS].sum() >= 0.9
    assert w[t < 0.5].sum() >= 0.2 and w[t > 0.5].sum() >= 0.2


def test_utility_ts_runs_behind_the_same_interface_and_respects_the_guardrail() -> None:
    spec, table, _ = _constrained_world(2, 128, method="utility_ts")
    proposal = propose(spec, table, version=5)
    assert proposal.distribution.diagnostics["kind"] == "utility_ts"
    w, units = _mass(spec, proposal)
    assert w[units[:, 0] <= 0.6 + 1e-9].sum() >= 0.9


def test_diagnostics_give_absolute_levels_with_intervals_that_cover_the_truth() -> None:
    spec, table, truths = _constrained_world(2, 128)
    dist = propose(spec, table, version=5).distribution
    per_arm = dist.diagnostics["arms"]
    assert set(per_arm) == {a.arm_id for a in dist.arms}
    covered = total = 0
    for arm in dist.arms:
        info = per_arm[arm.arm_id]
        assert 0 <= info["p_feasible"] <= 1 and 0 <= info["p_best"] <= 1
        for metric, truth in truths.items():
            m = info["metrics"][metric]
            assert m["lower"] <= m["mean"] <= m["upper"]
            covered += m["lower"] <= truth(unit_of(spec, arm)[None, :])[0] <= m["upper"]
            total += 1
    # 95% intervals: fewer than a fifth missing has probability > 0.99 for up to 24 intervals
    assert covered >= 0.8 * total
    json.loads(dist.to_json())


def test_rate_metrics_with_tiny_counts_still_fit_and_sample() -> None:
    spec = make_spec(2, metrics=(("obj", "rate"), ("guard", "rate")))
    truths = {"obj": lambda u: 0.02 + 0.02 * u[:, 0], "guard": lambda u: 0.01 + 0.0 * u[:, 0]}
    arms = lattice_arms(spec, qmc.Sobol(2, seed=4).random(16))
    table = simulate(spec, truths, arms, windows=3, count=5, rng=np.random.default_rng(4))
    proposal = propose(spec, table, version=4)
    assert proposal.distribution.control_arm.weight >= spec.traffic.control_share
    for info in proposal.distribution.diagnostics["arms"].values():
        assert all(np.isfinite([m["lower"], m["upper"]]).all() for m in info["metrics"].values())


def test_arms_stay_on_the_lattice_and_previous_arms_recur() -> None:
    spec, table, _ = _constrained_world(2, 64, max_arms=5)
    first = propose(spec, table, version=5)
    second = propose(spec, table, version=6, previous=first.distribution, warm_start=first.model_state)
    for dist in (first.distribution, second.distribution):
        assert len(dist.arms) <= 5
        for arm in non_control(dist):
            assert parse_arm_id(spec, arm.arm_id) is not None
        dist.validate_against(spec)
    assert {a.arm_id for a in non_control(first.distribution)} & {a.arm_id for a in non_control(second.distribution)}


def test_a_modelled_metric_without_arm_data_is_insufficient() -> None:
    spec, table, _ = _constrained_world(2, 16)
    partial = table[(table["metric"] == "obj") | (table["arm_id"] == CONTROL_ARM_ID)]
    with pytest.raises(InsufficientDataError, match="guard"):
        propose(spec, partial, version=3)
