"""Noise floors and pooling across windows: exact numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesopt.noise import PRIOR_COUNT, pooled_rate, rate_floor, rate_variance, row_variances
from bayesopt.pooling import CONTROL_ANCHOR_RATIO, pool, window_decay
from tests.bayesopt.bo_worlds import lattice_arms, make_spec, simulate


def _table(spec, rows):
    """rows: (window, arm, metric, count, mean, se, x0, x1)."""
    frame = pd.DataFrame(rows, columns=["window", "arm_id", "metric", "count", "mean", "std_error", "x.x0", "x.x1"])
    frame.insert(3, "source", "online")
    return frame


def test_rate_floor_is_positive_for_zero_successes_and_shrinks_toward_pooled_rate() -> None:
    count, mean = np.array([3.0]), np.array([0.0])
    floor = rate_floor(count, mean, pooled_rate=0.1)
    shrunk = PRIOR_COUNT * 0.1 / (3 + PRIOR_COUNT)  # 0.04
    assert floor[0] == pytest.approx(shrunk * (1 - shrunk) / (3 + PRIOR_COUNT))
    assert floor[0] > 0


def test_rate_floor_approaches_binomial_variance_for_large_counts() -> None:
    count, mean = np.array([1e6]), np.array([0.3])
    assert rate_floor(count, mean, 0.5)[0] == pytest.approx(0.3 * 0.7 / 1e6, rel=1e-4)


def test_a_window_without_events_gets_the_binomial_variance_at_controls_rate() -> None:
    """0 events in 57 sessions while control runs at 0.09: variance 0.09 * 0.91 / 57 (the row's own rate gives
    0, the old floor at the pooled rate sd 0.0075: 25 times the weight). Control's row keeps its own rate, floored
    with PRIOR_COUNT pseudo-sessions of the pooled rate."""
    spec = make_spec(metrics=(("obj", "mean"), ("guard", "rate")))
    table = _table(spec, [(1, "control", "guard", 4000, 0.09, 0.0045, 0.5, 0.5), (1, "a", "guard", 57, 0.0, 0.0, 0.1, 0.1)])
    control, arm = row_variances(spec, table)
    assert arm == pytest.approx(0.09 * 0.91 / 57) and control == pytest.approx(0.09 * 0.91 / 4000, rel=1e-3)
    assert rate_variance(np.array([1e6]), np.array([0.3]))[0] == pytest.approx(0.3 * 0.7 / 1e6)


def test_an_arm_served_in_small_windows_pools_to_an_unbiased_effect() -> None:
    """An arm at control's applies rate (0.1), 30 sessions in each of 48 windows, control 3,000 a window. Over
    400 seeds the pooled relative effect must average 0: its per-seed sd is ``sqrt(0.09 / 30) / 0.1 / sqrt(48)``
    = 0.079, so the mean of 400 has sd 0.0040 and 4 sd is 0.016. Windows with 0 or 1 events weighed most under
    the old floor (variance from the row's own rate): mean -0.40 and mean squared z 56; shrinking the row's rate
    toward control's by 10 expected events still gave -0.06. The reported variance must also match the
    spread: the mean squared z over 400 seeds lies in [0.80, 1.22] (chi-square 400 dof, 0.1% each side)."""
    spec = make_spec(metrics=(("obj", "rate"), ("guard", "rate")), guardrails=({"metric": "guard", "lower": -0.5, "relative": True},))
    rng = np.random.default_rng(0)
    deltas, z2 = [], []
    for _ in range(400):
        rows = []
        for w in range(1, 49):
            for arm, n, x in (("control", 3000, 0.5), ("a", 30, 0.1)):
                rate = rng.binomial(n, 0.1) / n
                rows += [(w, arm, m, n, rate, np.sqrt(rate * (1 - rate) / n), x, x) for m in ("obj", "guard")]
        data = pool(spec, _table(spec, rows)).metrics["guard"]
        rel, sd = data.delta[1] / data.baseline, np.sqrt(data.var[1]) / data.baseline
        deltas.append(rel)
        z2.append((rel / sd) ** 2)
    assert abs(np.mean(deltas)) < 0.016, np.mean(deltas)
    assert 0.80 < np.mean(z2) < 1.22, np.mean(z2)


def test_pooled_rate_never_hits_zero_or_one() -> None:
    assert 0 < pooled_rate(np.array([10.0, 5.0]), np.array([0.0, 0.0])) < 1
    assert 0 < pooled_rate(np.array([10.0]), np.array([1.0])) < 1


def test_row_variances_keep_observed_errors_above_the_floor_and_fill_zero_errors() -> None:
    spec = make_spec(metrics=(("obj", "mean"), ("guard", "rate")))
    table = _table(spec, [
        (1, "control", "obj", 100, 1.0, 0.5, 0.5, 0.5),    # big observed error: kept
        (1, "control", "guard", 4, 0.0, 0.0, 0.5, 0.5),    # 0/4: zero sample variance, floored
        (1, "a", "obj", 1, 2.0, 0.0, 0.1, 0.1),            # one outcome: pooled variance / 1
        (1, "a", "guard", 1000, 0.5, np.sqrt(0.25 / 1000), 0.1, 0.1),
    ])
    var = row_variances(spec, table)
    assert var[0] == pytest.approx(0.25)
    assert var[1] > 0
    # pooled per-outcome variance of obj = 0.25 * 100 (only row with dof); shrunk with 0 dof of its own
    assert var[2] == pytest.approx(25.0)
    assert var[3] == pytest.approx(0.25 / 1000, rel=0.01)


def test_deltas_remove_the_window_effect_and_pool_by_inverse_variance() -> None:
    spec = make_spec(metrics=(("obj", "mean"), ("guard", "mean")))
    rows = []
    for w, offset, se_a in ((1, 100.0, 0.1), (2, -50.0, 0.2)):
        rows += [(w, "control", m, 1e4, offset, 0.0 + 1e-9, 0.5, 0.5) for m in ("obj", "guard")]
        rows += [(w, "a", m, 1e4, offset + (1.1 if w == 1 else 1.3), se_a, 0.1, 0.9) for m in ("obj", "guard")]
    data = pool(spec, _table(spec, rows)).metrics["obj"]
    assert data.arm_ids == ["control", "a"]
    # weights 1/0.01 and 1/0.04: (100*1.1 + 25*1.3) / 125 = 1.14; control's floored variance (a few 1e-6,
    # shrunk toward the pooled per-outcome variance) moves this by < 1e-3 relative. The windows differ by
    # 0.9 of their combined sd: no drift, both are pooled.
    assert data.delta[1] == pytest.approx(1.14, rel=1e-3)
    assert data.var[1] == pytest.approx(1 / 125, rel=1e-3)
    assert data.delta[0] == 0 and data.var[0] == pytest.approx(CONTROL_ANCHOR_RATIO / 125, rel=1e-3)
    np.testing.assert_allclose(data.X[1], [0.1, 0.9])


def test_half_life_discounts_old_windows() -> None:
    spec = make_spec(half_life_hours=1.0)
    np.testing.assert_allclose(window_decay(np.array([1, 2, 3]), 1.0), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(window_decay(np.array([1, 3]), None), [1.0, 1.0])
    rows = []
    for w, effect in ((1, 0.0), (2, 0.2)):  # 1.4 combined sd apart: no drift
        rows += [(w, "control", m, 1e4, 5.0, 1e-9, 0.5, 0.5) for m in ("obj", "guard")]
        rows += [(w, "a", m, 1e4, 5.0 + effect, 0.1, 0.2, 0.2) for m in ("obj", "guard")]
    data = pool(spec, _table(spec, rows)).metrics["obj"]
    # window 1 is one half-life old: weight 0.5/0.01 against 1/0.01 -> (0.5*0 + 1*0.2)/1.5
    assert data.delta[1] == pytest.approx(0.2 / 1.5, rel=1e-6)
    assert data.var[1] == pytest.approx(0.01 / 1.5, rel=1e-3)  # control adds a floored ~1e-6


def test_rows_without_control_and_simulation_rows_are_reported_not_used() -> None:
    spec = make_spec()
    table = _table(spec, [
        (1, "control", "obj", 100, 1.0, 0.1, 0.5, 0.5),
        (1, "a", "obj", 100, 1.5, 0.1, 0.2, 0.2),
        (2, "a", "obj", 100, 9.0, 0.1, 0.2, 0.2),  # window 2 has no control row
        (1, "control", "guard", 100, 1.0, 0.1, 0.5, 0.5),
        (1, "a", "guard", 100, 1.0, 0.1, 0.2, 0.2),
    ])
    sim = table.iloc[[1]].assign(source="simulation", mean=50.0)
    pooled = pool(spec, pd.concat([table, sim], ignore_index=True))
    assert pooled.dropped == {"simulation_rows": 1, "rows_without_control": 1}
    assert pooled.metrics["obj"].delta[1] == pytest.approx(0.5)


def test_pooling_is_exact_under_a_large_common_time_effect() -> None:
    spec = make_spec()
    arms = lattice_arms(spec, np.array([[0.1, 0.1], [0.9, 0.9]]))
    truths = {"obj": lambda u: u[:, 0], "guard": lambda u: u[:, 1]}
    table = simulate(spec, truths, arms, windows=24, count=4000, noise_sd={"obj": 0.1, "guard": 0.1},
                     time_effect=50.0, rng=np.random.default_rng(3))
    data = pool(spec, table).metrics["obj"]
    expected = {a: truths["obj"](np.array([[v["x0"], v["x1"]]]))[0] - 0.5 for a, v in arms.items()}
    for arm, delta, var in zip(data.arm_ids, data.delta, data.var, strict=True):
        # pooled se ~ 0.1 * sqrt(2 / 4000 / 24) ~ 0.0005; 6 sigma
        assert abs(delta - expected[arm]) < 6 * np.sqrt(var) + 1e-12


def test_a_shift_between_windows_drops_the_old_world() -> None:
    """The arm's effect jumps from 0 to 1 (7 combined sd, p ~ 1e-12): only the windows since the shift are
    pooled, and the drift signal says where it was found."""
    spec = make_spec()
    rows = []
    for w, effect in ((1, 0.0), (2, 0.0), (3, 1.0)):
        rows += [(w, "control", m, 1e4, 5.0, 1e-9, 0.5, 0.5) for m in ("obj", "guard")]
        rows += [(w, "a", m, 1e4, 5.0 + effect, 0.1, 0.2, 0.2) for m in ("obj", "guard")]
    pooled = pool(spec, _table(spec, rows))
    assert pooled.drift.detected and pooled.drift.since_window == 3
    assert pooled.metrics["obj"].delta[1] == pytest.approx(1.0, rel=1e-6)
    assert pooled.dropped["windows_before_drift"] == 8  # 2 windows x 2 arms x 2 metrics


def test_a_multiplicative_hour_swing_does_not_favour_arms_served_at_quiet_hours() -> None:
    """Every metric is multiplied by the hour's activity (0.5 at night, 1.5 at peak). Arms "a" (served only at
    night) and "b" (only at peak) both change the metric by +10% of control, so both pool to +10% of the
    control baseline (the count-weighted mean over both hours, 1.0). Absolute differences would give a 0.05
    and b 0.15: a threefold error that more data never removes."""
    spec = make_spec()
    rows = []
    for w, level, arm, x in ((1, 0.5, "a", 0.2), (2, 1.5, "b", 0.8)):
        for m in ("obj", "guard"):
            rows += [(w, "control", m, 1e4, level, 1e-6, 0.5, 0.5), (w, arm, m, 1e4, 1.1 * level, 1e-6, x, x)]
    data = pool(spec, _table(spec, rows)).metrics["obj"]
    assert data.baseline == pytest.approx(1.0)
    assert dict(zip(data.arm_ids, data.delta, strict=True)) == {"control": 0.0, "a": pytest.approx(0.1), "b": pytest.approx(0.1)}


def test_a_metric_whose_control_level_can_be_zero_keeps_absolute_differences() -> None:
    """A control level of 0 in one window makes a ratio meaningless: that metric pools plain differences."""
    spec = make_spec()
    rows = []
    for w, level in ((1, 0.0), (2, 2.0)):
        for m in ("obj", "guard"):
            rows += [(w, "control", m, 1e4, level, 0.1, 0.5, 0.5), (w, "a", m, 1e4, level + 0.3, 0.1, 0.2, 0.2)]
    data = pool(spec, _table(spec, rows)).metrics["obj"]
    assert data.delta[1] == pytest.approx(0.3)
