"""The drift test on the synthetic ranking world's own outcomes: calibrated in a stationary world even when some
arms are served to a handful of sessions a window (as the arm cap's smallest arms are)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesopt.drift import MetricGrid, split_tests
from bayesopt.observation_table import param_column
from bayesopt.window_differences import window_deltas
from simulations.world import make_variant_world

#: Arms (share_weight, apply_weight) and their sessions per window: three big, three tiny.
ARMS = {"control": ((1.0, 1.0), 4000), "a": ((2.0, 1.25), 4000), "b": ((3.0, 1.5), 4000), "c": ((1.5, 1.5), 4000),
        "e": ((0.5, 2.0), 8), "f": ((3.5, 3.0), 20), "g": ((1.0, 2.5), 40)}


def stationary_table(seed: int, windows: int = 30) -> tuple[object, pd.DataFrame]:
    world = make_variant_world("base", seed=0)
    spec = world.spec(name="drift")
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(windows):
        for arm, ((share, apply), n) in ARMS.items():
            for metric, y in world.sample_sessions(np.array([[share, apply]]), n, 6.0 + w, rng).items():
                rows.append({"window": w, "arm_id": arm, "metric": metric, "source": "online", "count": n,
                             "mean": y.mean(), "std_error": y.std(ddof=1) / np.sqrt(n),
                             param_column("share_weight"): share, param_column("apply_weight"): apply})
    return spec, pd.DataFrame(rows)


def test_p_values_of_a_stationary_world_are_uniform_with_tiny_arms_served() -> None:
    """6 worlds x 5 splits x 3 metrics = 90 all-arms p-values: the share below 0.05 is 0.05 +- 3 sd
    (sd = sqrt(0.05 * 0.95 / 90) = 0.023). Comparing the tiny arms too (their variance estimates are too noisy
    for a chi-square, and the hour of day moves their rates) put 16% of them below 0.05."""
    p = []
    for seed in range(6):
        spec, table = stationary_table(seed)
        deltas, _ = window_deltas(spec, table)
        for _, rows in deltas.groupby("metric"):
            tests = split_tests(MetricGrid.from_rows(rows), [5, 10, 15, 20, 25])
            assert [t.arms for t in tests][0] == 3  # a tiny arm joins only once it has 500 sessions on each side
            p += [t.p_values["all"] for t in tests]
    assert np.mean(np.array(p) < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 90)
