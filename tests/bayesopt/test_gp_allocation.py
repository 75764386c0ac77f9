"""GP fitting (errors, warm start, JSON state) and the allocation steps (merging, control share, risk budget, cap)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayesopt.allocation import (
    WORST_HOUR_FACTOR,
    allocate,
    certifiable,
    certified_risk,
    concentration_cap,
    explore_mix,
    merge_winners,
    risk_budget,
    split_traffic,
)
from bayesopt.device import DTYPE, default_device, seeded
from bayesopt.errors import ModelFitError
from bayesopt.gp import fit_model, model_state, warm_entry
from bayesopt.policy import GPPolicy
from bayesopt.pooling import MetricData
from tests.bayesopt.bo_worlds import lattice_arms, make_spec, simulate


def _data(n: int = 30, seed: int = 0, **overrides) -> MetricData:
    rng = np.random.default_rng(seed)
    X = rng.random((n, 2))
    X[0] = 0.5
    delta = np.sin(4 * X[:, 0]) - np.sin(2.0) + 0.05 * rng.standard_normal(n)
    delta[0] = 0.0
    fields = {"metric": "obj", "arm_ids": ["control"] + [f"a{i}" for i in range(1, n)], "X": X, "delta": delta,
              "var": np.full(n, 0.0025), "baseline": 1.0, "baseline_se": 0.01, "num_rows": n}
    fields.update(overrides)
    return MetricData(**fields)


def test_device_and_dtype_come_from_one_place() -> None:
    model = fit_model(_data())
    X = model.train_inputs[0]
    assert X.dtype == DTYPE and X.device.type == default_device().type


@pytest.mark.parametrize(
    "change, message",
    [
        ({"delta": np.array([0.0, np.nan, 1.0])}, "non-finite means"),
        ({"var": np.array([1e-4, -1.0, 1.0])}, "non-positive noise"),
        ({"X": np.array([[0.5, 0.5], [np.inf, 0.1], [0.2, 0.2]])}, "non-finite inputs"),
    ],
)
def test_degenerate_inputs_raise_model_fit_error(change: dict, message: str) -> None:
    base = {"arm_ids": ["control", "a", "b"], "X": np.array([[0.5, 0.5], [0.1, 0.1], [0.2, 0.2]]),
            "delta": np.array([0.0, 1.0, 2.0]), "var": np.array([1e-4, 1.0, 1.0]), "num_rows": 3}
    with pytest.raises(ModelFitError, match=message) as info:
        fit_model(_data(**{**base, **change}))
    assert "'obj'" in str(info.value)


def test_a_single_point_is_not_a_model() -> None:
    with pytest.raises(ModelFitError, match="at least one other arm"):
        fit_model(_data(n=1))


def test_propose_refuses_non_finite_observations() -> None:
    spec = make_spec()
    arms = lattice_arms(spec, np.array([[0.1, 0.2], [0.8, 0.3]]))
    table = simulate(spec, {"obj": lambda u: u[:, 0], "guard": lambda u: u[:, 1]}, arms, windows=2, count=50,
                     rng=np.random.default_rng(0))
    table.loc[table.index[3], "mean"] = np.inf
    with pytest.raises(ModelFitError, match="non-finite"):
        GPPolicy().propose(spec, table)


def test_model_state_is_plain_json_and_warm_start_reaches_the_same_fit() -> None:
    data = _data(n=40)
    with seeded(0):
        cold = fit_model(data)
    state = json.loads(json.dumps(model_state({"obj": cold})))
    entry = warm_entry(state, "obj")
    assert entry is not None and entry["d"] == 2
    with seeded(0):
        warm = fit_model(data, entry)
    for (name, a), (_, b) in zip(cold.named_parameters(), warm.named_parameters(), strict=True):
        np.testing.assert_allclose(a.detach().cpu().numpy(), b.detach().cpu().numpy(), rtol=1e-3, atol=1e-4, err_msg=name)
    assert warm_entry({"version": 999, "metrics": state["metrics"]}, "obj") is None
    assert warm_entry(state, "other") is None


def test_merging_keeps_the_most_frequent_winners_and_absorbs_their_neighbours() -> None:
    """On a line of lattice points: g at 10 absorbs its neighbours at 11 and 12 (two steps), not 13; the next
    kept arm is the most frequent winner left (at 13: it absorbs 14); 30 is too far from both and the cap is
    full, so its mass is unrepresented and reported."""
    grid = np.array([[0], [10], [11], [12], [13], [14], [30]])
    wins = np.array([5, 40, 10, 10, 20, 5, 10])
    index, counts, merged, unrepresented = merge_winners(wins, grid, max_arms=3)
    assert index.tolist() == [0, 1, 4]
    assert counts.tolist() == [5, 60, 25]
    assert merged == pytest.approx(25 / 100) and unrepresented == pytest.approx(10 / 100)


def test_an_uncertified_winner_is_not_merged_into_the_certified_arm_next_to_it() -> None:
    """The safe set's edge: the certified arm at 10 wins most draws, the uncertified one at 11 (one step out)
    wins the rest. Merged together, 11's traffic would be served at 10 and the edge never explored; with
    classes they stay two arms, and a third certified winner at 12 still merges into 10."""
    grid = np.array([[0], [10], [11], [12]])
    wins = np.array([10, 60, 25, 5])
    certified = np.array([True, True, False, True])
    index, counts, merged, unrepresented = merge_winners(wins, grid, max_arms=3, classes=certified)
    assert index.tolist() == [0, 1, 2] and counts.tolist() == [10, 65, 25]
    assert merged == pytest.approx(5 / 100) and unrepresented == 0.0
    index, counts, _, _ = merge_winners(wins, grid, max_arms=3)
    assert index.tolist() == [0, 1] and counts.tolist() == [10, 90]


def test_control_keeps_its_share_and_its_own_wins() -> None:
    weights = split_traffic(np.array([10, 30, 60]), control_share=0.2)
    np.testing.assert_allclose(weights, [0.2 + 0.8 * 0.1, 0.8 * 0.3, 0.8 * 0.6])
    only_control = split_traffic(np.array([0]), 0.2)
    np.testing.assert_allclose(only_control, [1.0])


def test_the_risk_budget_tilts_towards_cheap_risk_and_reaches_control_last() -> None:
    weights = np.array([0.2, 0.4, 0.3, 0.1])
    risk = np.array([0.9, 0.02, 0.3, 0.5])  # control's risk is ignored: it is never capped
    out, tilt, to_control = risk_budget(weights, risk, budget=0.05)
    assert out[1:] @ risk[1:] == pytest.approx(0.05, abs=1e-9) and to_control == 0.0 and tilt > 0
    assert out[0] == pytest.approx(0.2) and out.sum() == pytest.approx(1.0)
    # The KL projection is an exponential tilt: log weight ratios move linearly in risk.
    shift = np.log(out[1:] / weights[1:])
    assert (shift[0] - shift[1]) / (risk[2] - risk[1]) == pytest.approx((shift[0] - shift[2]) / (risk[3] - risk[1]))
    unchanged, tilt, _ = risk_budget(weights, np.array([0.0, 0.01, 0.01, 0.01]), budget=0.05)
    np.testing.assert_allclose(unchanged, weights)
    assert tilt == 0.0
    out, _, to_control = risk_budget(np.array([0.2, 0.5, 0.3]), np.array([0.0, 0.9, 0.7]), budget=0.05)
    assert out[1:] @ np.array([0.9, 0.7]) == pytest.approx(0.05) and to_control == pytest.approx(out[0] - 0.2)


def test_uncertified_arms_share_at_most_twice_the_budget() -> None:
    """One arm at 14% risk with 36% of traffic meets a 5% expected budget (0.36 * 0.137 = 0.049) but breaks
    for 36% of members one hour in seven: capped at 10%, its excess goes to the certified arm (risk 0.4%, under
    the 0.5% of a 5% budget), not to control."""
    weights = np.array([0.2, 0.36, 0.44])
    risk = np.array([0.0, 0.137, 0.004])
    out, to_control = concentration_cap(weights, risk, budget=0.05)
    assert out[1] == pytest.approx(WORST_HOUR_FACTOR * 0.05) and out[2] == pytest.approx(0.44 + 0.26)
    assert out[0] == pytest.approx(0.2) and to_control == 0.0
    out, to_control = concentration_cap(np.array([0.2, 0.8]), np.array([0.0, 0.3]), budget=0.05)
    assert out.tolist() == pytest.approx([0.9, 0.1]) and to_control == pytest.approx(0.7)


def test_explore_mix_is_the_largest_that_fits_budget_and_cap() -> None:
    """Exploit on control, explore on one arm at risk 0.2, 80% of traffic to share: the budget allows
    ``0.8 rho 0.2 <= 0.05`` (rho 0.3125), the cap on uncertified arms ``0.8 rho <= 0.1`` (rho 0.125)."""
    exploit, explore = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert explore_mix(exploit, explore, np.array([0.0, 0.2]), traffic=0.8, budget=0.05) == pytest.approx(0.125)
    assert explore_mix(exploit, explore, np.array([0.0, 0.9]), traffic=0.8, budget=0.05) == pytest.approx(0.05 / 0.72)
    assert explore_mix(explore, explore, np.array([0.0, 0.9]), traffic=0.8, budget=0.05) == 1.0  # nothing to trade


def test_traffic_the_budget_refuses_goes_to_the_safe_sets_winner() -> None:
    """Every unrestricted draw picks an arm at 40% risk; among certified arms, the draws pick arm 2 (risk 0.1%)
    over arm 3 (risk 0.2%) nine times in ten. The risky arm keeps what the budget and cap allow (10%); the rest
    follows the safe set's draws, not control and not an even split."""
    spec = make_spec(max_arms=6, initial_arms=4, max_unsafe_share=0.05)
    grid = np.array([[16, 16], [0, 0], [8, 8], [30, 30]])
    p_feasible = np.array([1.0, 0.6, 0.999, 0.998])
    alloc = allocate(spec, np.array([0, 100, 0, 0]), grid, p_feasible, np.array([0, 0, 90, 10]))
    w = dict(zip(alloc.index.tolist(), alloc.weights.tolist(), strict=True))
    assert w[0] == pytest.approx(0.2) and w[1] == pytest.approx(0.1)
    assert w[2] == pytest.approx(0.7 * 0.9) and w[3] == pytest.approx(0.7 * 0.1)
    assert alloc.explore_mix == pytest.approx(0.125) and alloc.risk_after <= 0.05


def test_an_arm_far_from_every_arm_with_data_is_not_certified_whatever_its_risk() -> None:
    """Arm 3 is held at 0.999 but lies 14 steps from the nearest arm with data: it is not certifiable, so it is
    capped with the uncertified arms (twice the budget) and its excess goes to the certified arm 2 (2 steps from
    a served arm, risk 0.1%), not to it. Without the mask it would keep its 70%."""
    spec = make_spec(max_arms=6, initial_arms=4, max_unsafe_share=0.05)
    grid = np.array([[16, 16], [0, 0], [10, 10], [30, 30]])
    observed = np.array([[16, 16], [0, 0], [8, 9], [15, 16]])
    near = certifiable(grid, observed)
    assert near.tolist() == [True, True, True, False]
    assert certifiable(np.array([[16, 16], [30, 30]]), np.zeros((0, 2), dtype=int)).tolist() == [True, False]
    p_feasible = np.array([1.0, 0.6, 0.999, 0.999])
    wins, safe_wins = np.array([0, 0, 10, 90]), np.array([0, 0, 10, 90])
    plain = allocate(spec, wins, grid, p_feasible, safe_wins)
    assert plain.weights[plain.index.tolist().index(3)] == pytest.approx(0.8 * 0.9)
    alloc = allocate(spec, wins, grid, p_feasible, np.array([0, 0, 10, 0]), near)
    w = dict(zip(alloc.index.tolist(), alloc.weights.tolist(), strict=True))
    assert w[3] == pytest.approx(WORST_HOUR_FACTOR * 0.05) and w[0] == pytest.approx(0.2)
    assert w[2] == pytest.approx(0.8 - WORST_HOUR_FACTOR * 0.05)
    assert alloc.risky_share == pytest.approx(WORST_HOUR_FACTOR * 0.05)


@pytest.mark.parametrize("seed", range(20))
def test_no_allocation_exceeds_the_budget_and_control_is_never_capped(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spec = make_spec(max_arms=6, initial_arms=4, max_unsafe_share=0.05)
    n = 40
    wins = rng.integers(0, 50, size=n)
    grid = rng.integers(0, 33, size=(n, 2))
    p_feasible = rng.uniform(size=n) ** rng.uniform(0.1, 3.0)
    safe_wins = np.where(1 - p_feasible <= certified_risk(0.05), rng.integers(0, 50, size=n), 0)
    alloc = allocate(spec, wins, grid, p_feasible, safe_wins if seed % 2 else None)
    assert alloc.weights @ (1 - p_feasible[alloc.index]) - alloc.weights[0] * (1 - p_feasible[0]) <= 0.05 + 1e-9
    assert alloc.risk_after <= 0.05 + 1e-9
    risky = (1 - p_feasible[alloc.index]) > certified_risk(0.05)
    risky[0] = False
    assert alloc.weights[risky].sum() <= WORST_HOUR_FACTOR * 0.05 + 1e-9
    assert alloc.weights[0] >= spec.traffic.control_share - 1e-12 and alloc.index[0] == 0
    assert len(alloc.index) <= spec.policy.max_arms and alloc.weights.sum() == pytest.approx(1.0)


def test_allocate_respects_max_arms_and_control_share() -> None:
    spec = make_spec(max_arms=4, initial_arms=3, max_unsafe_share=1.0)
    wins = np.arange(11)
    grid = np.arange(11)[:, None] * 10  # far apart: nothing merges
    alloc = allocate(spec, wins, grid, np.ones(11))
    assert len(alloc.index) == 4 and alloc.index[0] == 0
    assert alloc.weights.sum() == pytest.approx(1.0)
    assert alloc.weights[0] >= spec.traffic.control_share
