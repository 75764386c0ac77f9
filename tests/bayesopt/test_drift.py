"""The drift signal: a change-point test on differences from control, with fixed seeds and exact null bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesopt.drift import DRIFT_ALPHA, MetricGrid, detect_drift, split_p_value, split_tests

ARMS = [f"a{i}" for i in range(8)]


def windows(effects_by_window: list[np.ndarray], *, arm_var: float = 1e-4, control_var: float = 4e-5,
            seed: int = 0) -> pd.DataFrame:
    """Rows of ``window_deltas`` for every arm in every window: true effect plus noise, control noise shared.

    Each window's control noise moves every arm's difference in that window alike, as in the real pooling.
    """
    columns = ["window", "arm_id", "metric", "delta", "var", "control_var"]
    rng = np.random.default_rng(seed)
    rows = []
    for w, effects in enumerate(effects_by_window, start=1):
        control_noise = rng.normal(0.0, np.sqrt(control_var))
        for arm, effect in zip(ARMS, effects, strict=True):
            delta = effect + rng.normal(0.0, np.sqrt(arm_var)) - control_noise
            rows.append({"window": w, "arm_id": arm, "metric": "m", "delta": delta,
                         "var": arm_var + control_var, "control_var": control_var})
    return pd.DataFrame(rows, columns=columns)


def test_the_null_p_value_is_uniform_despite_shared_control_noise() -> None:
    """With the shared control noise modelled, p-values of a stationary world are Uniform(0, 1): over 400
    worlds the share below 0.05 is 0.05 +- 3 sd (sd = sqrt(0.05 * 0.95 / 400) = 0.011). Large control noise
    makes the arms strongly correlated: a test ignoring it would reject far more often."""
    effects = np.linspace(-0.01, 0.01, len(ARMS))
    p = [split_p_value(MetricGrid.from_rows(windows([effects] * 6, control_var=4e-4, seed=s)), 4)[0] for s in range(400)]
    assert abs(np.mean(np.array(p) < 0.05) - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / 400)


def test_a_stationary_world_raises_no_alarm() -> None:
    """Bonferroni over splits keeps the family-wise rate at DRIFT_ALPHA = 0.001: 50 worlds, expected 0.05 alarms."""
    effects = np.linspace(-0.01, 0.01, len(ARMS))
    alarms = [detect_drift(windows([effects] * 24, seed=s)).detected for s in range(50)]
    assert sum(alarms) <= 1


def test_a_shift_is_found_at_the_window_it_happened() -> None:
    """At window 13 the effects reverse (the best arm becomes the worst): each arm moves by up to 0.02, 100 times
    its pooled sd, so the change point is found exactly."""
    before = np.linspace(-0.01, 0.01, len(ARMS))
    test = detect_drift(windows([before] * 12 + [-before] * 4, seed=3))
    assert test.detected and test.since_window == 13 and test.p_value < DRIFT_ALPHA


def test_a_second_shift_after_a_first_is_found_too() -> None:
    before = np.linspace(-0.01, 0.01, len(ARMS))
    test = detect_drift(windows([before] * 8 + [-before] * 8 + [before[::-1] * 3] * 4, seed=4))
    assert test.detected and test.since_window == 17


@pytest.mark.parametrize("rows", [0, 1])
def test_too_little_data_is_no_alarm(rows: int) -> None:
    frame = windows([np.zeros(len(ARMS))] * rows)
    test = detect_drift(frame)
    assert not test.detected and test.since_window is None and test.p_value == 1.0


def test_a_shift_shared_by_every_arm_is_found_by_the_common_statistic() -> None:
    """32 arms all move by 1.2 sd of their own change (12 windows each side, arm variance 1e-4, control 1e-6):
    the all-arms chi-square on 32 degrees of freedom has noncentrality 32 * 1.2^2 = 46 (p ~ 1e-5 on average),
    the common shift, estimated from all 32, is at 1.2 * sqrt(32) = 6.8 sd (p ~ 1e-11): expected six orders of
    magnitude apart; asserted two apart and below 1e-5 (4.4 sd, 2.4 sd of margin)."""
    rng = np.random.default_rng(5)
    step = 1.2 * np.sqrt(1e-4 * (1 / 12 + 1 / 12))
    rows = []
    for w in range(24):
        control_noise = rng.normal(0.0, 1e-3)
        for a in range(32):
            effect = 0.01 * a / 32 + (step if w >= 12 else 0.0)
            rows.append({"window": w, "arm_id": f"a{a}", "metric": "m", "var": 1e-4 + 1e-6, "control_var": 1e-6,
                         "delta": effect + rng.normal(0.0, 1e-2) - control_noise})
    test = split_tests(MetricGrid.from_rows(pd.DataFrame(rows)), [12])[0]
    assert test.p_values["common"] < 1e-5 and test.p_values["common"] < test.p_values["all"] / 100
